//! The kernel table: one function pointer per kernel family, filled once. It starts from the scalar
//! references; each ISA tier the CPU offers (up to the `PARE_ISA` cap) overwrites the slots it improves.

use crate::gemm_f32::GemmF32Kernel;
use crate::gemm_i8::{GemmI8Kernel, I8Layout};
use crate::isa::{self, Isa};
use crate::quant::QuantizeRowKernel;
use crate::{norm, reference};
use std::sync::OnceLock;

/// Kernels of one tier, with the name of each (`{op}_{types}_{tile}_{isa}`).
#[derive(Clone, Copy)]
pub struct Table {
    /// Tier this table was built for.
    pub isa: Isa,
    pub(crate) gemm_f32: GemmF32Kernel,
    /// Name of the f32 GEMM kernel.
    pub gemm_f32_name: &'static str,
    pub(crate) gemm_u8s8: GemmI8Kernel,
    /// Name of the integer GEMM kernel.
    pub gemm_u8s8_name: &'static str,
    /// Layout the integer GEMM kernel reads (the reference reads both).
    pub i8_layout: I8Layout,
    pub(crate) quantize_row: QuantizeRowKernel,
    /// Name of the activation quantizer.
    pub quantize_row_name: &'static str,
    pub(crate) layer_norm: norm::LayerNormKernel,
    /// Name of the layer-norm kernel.
    pub layer_norm_name: &'static str,
    pub(crate) softmax: norm::SoftmaxKernel,
    pub(crate) spmm_f32: crate::spmm::SpmmKernel,
    /// Name of the sparse f32 kernel.
    pub spmm_f32_name: &'static str,
    pub(crate) spmm_u8s8: crate::spmm_i8::SpmmI8Kernel,
    /// Name of the sparse integer kernel.
    pub spmm_u8s8_name: &'static str,
    pub(crate) transpose_f32: crate::spmm::TransposeKernel,
    pub(crate) untranspose_f32: crate::spmm::UntransposeKernel,
    /// Fast path of row packing (16 × 16 transposes) when the CPU has one.
    pub(crate) pack_rows: Option<PackRowsKernel>,
    /// Name of the softmax kernel.
    pub softmax_name: &'static str,
    pub(crate) dot_f64: crate::blas::DotF64Kernel,
    pub(crate) axpy_f64: crate::blas::AxpyF64Kernel,
    pub(crate) dequant_blocks: crate::qblock::DequantBlocksKernel,
    /// Name of the block dequantizer.
    pub dequant_blocks_name: &'static str,
    pub(crate) dequant_x8: crate::qblock::DequantX8Kernel,
    pub(crate) gemv_blocks: crate::qblock::GemvBlocksKernel,
    /// Name of the block-weight row kernel.
    pub gemv_blocks_name: &'static str,
    pub(crate) gemv_blocks_q8: crate::qblock::GemvBlocksQ8Kernel,
    /// Name of the block-weight × Q8-activation kernel.
    pub gemv_blocks_q8_name: &'static str,
    /// Name of the kernel it runs on rows interleaved by eight ([`crate::qblock::interleave8`]).
    pub gemv_blocks_q8_x8_name: &'static str,
    pub(crate) attend_row: crate::attention::AttendRowKernel,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("isa", &self.isa)
            .field("gemm_f32", &self.gemm_f32_name)
            .field("gemm_u8s8", &self.gemm_u8s8_name)
            .field("quantize_row", &self.quantize_row_name)
            .field("layer_norm", &self.layer_norm_name)
            .field("softmax", &self.softmax_name)
            .field("spmm_f32", &self.spmm_f32_name)
            .finish()
    }
}

impl Table {
    /// The scalar reference kernels.
    pub fn reference() -> Self {
        Table {
            isa: Isa::Scalar,
            gemm_f32: reference::gemm_f32_kernel,
            gemm_f32_name: "gemm_f32_ref_scalar",
            gemm_u8s8: reference::gemm_u8s8_kernel,
            gemm_u8s8_name: "gemm_u8s8_ref_scalar",
            i8_layout: I8Layout::Quads,
            quantize_row: reference::quantize_row_kernel,
            quantize_row_name: "quantize_u8_ref_scalar",
            layer_norm: reference::layer_norm_kernel,
            layer_norm_name: "layernorm_f32_ref_scalar",
            softmax: reference::softmax_kernel,
            pack_rows: None,
            spmm_f32: reference::spmm_f32_kernel,
            spmm_f32_name: "spmm_f32_csr_ref_scalar",
            spmm_u8s8: reference::spmm_u8s8_kernel,
            spmm_u8s8_name: "spmm_u8s8_csr_ref_scalar",
            transpose_f32: reference::transpose_f32,
            untranspose_f32: reference::untranspose_f32,
            softmax_name: "softmax_f32_ref_scalar",
            dot_f64: reference::dot_f64,
            axpy_f64: reference::axpy_f64,
            dequant_blocks: reference::dequant_blocks_kernel,
            dequant_blocks_name: "dequant_qblocks_ref_scalar",
            dequant_x8: reference::dequant_x8_kernel,
            gemv_blocks: reference::gemv_blocks_kernel,
            gemv_blocks_name: "gemv_qblocks_f32_ref_scalar",
            gemv_blocks_q8: reference::gemv_blocks_q8_kernel,
            gemv_blocks_q8_name: "gemv_qblocks_q8_ref_scalar",
            gemv_blocks_q8_x8_name: "gemv_qblocks_q8_8rows_ref_scalar",
            attend_row: reference::attend_row,
        }
    }

    /// The kernels of tier `cap` (with those of the tiers it builds on where `cap` has none of its own),
    /// or `None` when this CPU lacks `cap`.
    pub fn for_isa(cap: Isa) -> Option<Self> {
        if !cap.is_available() {
            return None;
        }
        let mut t = Table::reference();
        #[cfg(target_arch = "x86_64")]
        crate::x86_64::install(&mut t, cap);
        t.isa = cap;
        Some(t)
    }

    /// `Σ a·b` with this table's kernel.
    pub fn dot_f64(&self, a: &[f64], b: &[f64]) -> f64 {
        (self.dot_f64)(a, b)
    }

    /// `y += alpha·x` with this table's kernel.
    pub fn axpy_f64(&self, y: &mut [f64], alpha: f64, x: &[f64]) {
        (self.axpy_f64)(y, alpha, x)
    }

    /// The tables of every tier this CPU can run, lowest first.
    pub fn available() -> Vec<Self> {
        Isa::ALL.into_iter().filter_map(Table::for_isa).collect()
    }
}

/// Packs `W[n][k]` rows into 32-wide panels; needs `n`, `k` multiples of 16.
///
/// # Safety
/// The CPU has the features of the tier that provided the kernel; slices as the kernel documents.
pub(crate) type PackRowsKernel = unsafe fn(w: &[f32], ldw: usize, n: usize, k: usize, dst: &mut [f32]);

impl Table {
    /// Packs with the fast kernel when this table has one and the shape suits it; false otherwise
    /// (the caller packs in portable code).
    pub(crate) fn pack_rows_f32(&self, w: &[f32], ldw: usize, n: usize, k: usize, dst: &mut [f32]) -> bool {
        match self.pack_rows {
            Some(f) if n.is_multiple_of(16) && k.is_multiple_of(16) => {
                // SAFETY: tables are only built for tiers this CPU has; the kernel checks the slices.
                unsafe { f(w, ldw, n, k, dst) };
                true
            }
            _ => false,
        }
    }
}

/// The table for [`isa::active`], built on first use.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::for_isa(isa::active()).unwrap_or_else(Table::reference))
}
