//! x86-64 kernels, one module per tier, and their installation into the dispatch table.

pub(crate) mod amx;
mod avx2;
mod avx512;
mod avxvnni;
mod qdot;
mod qdot_avx2;
mod vnni;

use crate::dispatch::Table;
use crate::gemm_i8::I8Layout;
use crate::isa::Isa;

/// Overwrites the slots of `t` that tier `cap` and the tiers it builds on improve, lowest first:
/// `AvxVnni` builds on `Avx2`; `Avx512` on `Avx2` (not on `AvxVnni`, so that each tier's table runs
/// that tier's own kernels); `Vnni` on `Avx512`; `Amx` on `Vnni`. The caller has checked that the CPU
/// offers `cap`.
pub(crate) fn install(t: &mut Table, cap: Isa) {
    use Isa::*;
    let chain: &[Isa] = match cap {
        Scalar => &[],
        Avx2 => &[Avx2],
        AvxVnni => &[Avx2, AvxVnni],
        Avx512 => &[Avx2, Avx512],
        Vnni => &[Avx2, Avx512, Vnni],
        Amx => &[Avx2, Avx512, Vnni, Amx],
    };
    let tier = |isa: Isa| chain.contains(&isa);
    if tier(Isa::Avx2) {
        t.gemm_f32 = avx2::gemm_f32;
        t.gemm_f32_name = "gemm_f32_6x16_avx2";
        t.layer_norm = avx2::layer_norm;
        t.layer_norm_name = "layernorm_f32_avx2";
        t.softmax = avx2::softmax;
        t.softmax_name = "softmax_f32_avx2";
        t.gemm_u8s8 = avx2::gemm_u8s8;
        t.gemm_u8s8_name = "gemm_u8s8_6x16_avx2";
        t.i8_layout = I8Layout::Pairs16;
        t.quantize_row = avx2::quantize_row;
        t.quantize_row_name = "quantize_u8_avx2";
        t.spmm_f32 = avx2::spmm_f32;
        t.spmm_f32_name = "spmm_f32_csr32t_avx2";
        t.spmm_u8s8 = avx2::spmm_u8s8;
        t.spmm_u8s8_name = "spmm_u8s8_csr16t_avx2";
        t.transpose_f32 = avx2::transpose_f32;
        t.untranspose_f32 = avx2::untranspose_f32;
        t.dot_f64 = avx2::dot_f64;
        t.axpy_f64 = avx2::axpy_f64;
        t.dequant_blocks = avx2::dequant_blocks;
        t.dequant_blocks_name = "dequant_qblocks_avx2";
        t.gemv_blocks = avx2::gemv_blocks;
        t.gemv_blocks_name = "gemv_qblocks_f32_2x2_avx2";
        t.gemv_blocks_q8 = qdot_avx2::gemv_blocks_q8;
        t.dequant_x8 = qdot_avx2::dequant_x8;
        t.gemv_blocks_q8_x8_name = "gemv_qblocks_q8_8rows_avx2";
        t.attend_row = avx2::attend_row;
        t.gemv_blocks_q8_name = "gemv_qblocks_q8_avx2";
    }
    if tier(Isa::AvxVnni) {
        t.gemm_u8s8 = avxvnni::gemm_u8s8;
        t.gemm_u8s8_name = "gemm_u8s8_6x16_avxvnni";
        t.gemv_blocks_q8 = qdot::avxvnni::gemv_blocks_q8;
        t.gemv_blocks_q8_name = "gemv_qblocks_q8_2x1_avxvnni";
        t.i8_layout = I8Layout::Quads;
    }
    if tier(Isa::Avx512) {
        t.gemm_f32 = avx512::gemm_f32;
        t.gemm_f32_name = "gemm_f32_8x32_avx512";
        t.layer_norm = avx512::layer_norm;
        t.layer_norm_name = "layernorm_f32_avx512";
        t.softmax = avx512::softmax;
        t.softmax_name = "softmax_f32_avx512";
        t.gemm_u8s8 = avx512::gemm_u8s8;
        t.gemm_u8s8_name = "gemm_u8s8_8x32_avx512";
        t.i8_layout = I8Layout::Pairs16;
        t.quantize_row = avx512::quantize_row;
        t.pack_rows = Some(avx512::pack_rows_f32);
        t.spmm_f32 = avx512::spmm_f32;
        t.spmm_f32_name = "spmm_f32_csr64t_avx512";
        t.spmm_u8s8 = avx512::spmm_u8s8;
        t.spmm_u8s8_name = "spmm_u8s8_csr16t_avx512";
        t.transpose_f32 = avx512::transpose_f32;
        t.untranspose_f32 = avx512::untranspose_f32;
        t.dot_f64 = avx512::dot_f64;
        t.axpy_f64 = avx512::axpy_f64;
        t.quantize_row_name = "quantize_u8_avx512";
        t.dequant_blocks = avx512::dequant_blocks;
        t.attend_row = avx512::attend_row;
        t.dequant_blocks_name = "dequant_qblocks_avx512";
        t.gemv_blocks = avx512::gemv_blocks;
        t.gemv_blocks_name = "gemv_qblocks_f32_2x4_avx512";
    }
    if tier(Isa::Vnni) {
        t.gemm_u8s8 = vnni::gemm_u8s8;
        t.gemm_u8s8_name = "gemm_u8s8_8x32_vnni";
        t.gemv_blocks_q8 = qdot::vnni::gemv_blocks_q8;
        t.gemv_blocks_q8_name = "gemv_qblocks_q8_2x1_vnni";
        t.i8_layout = I8Layout::Quads;
    }
    if tier(Isa::Amx) {
        t.gemm_u8s8 = amx::gemm_u8s8;
        t.gemm_u8s8_name = "gemm_u8s8_32x32_amx";
        t.i8_layout = I8Layout::Quads;
    }
}
