//! Sparse × dense integer GEMM for pruned int8 weights: `c = act(sx·sw·(Σ qx·qw − zx·Σqw) + Σ_o x_o·w_o
//! + bias) + residual`, the same arithmetic as [`crate::gemm_i8`] with the weight in compressed rows.
//!
//! As in [`crate::spmm`], tokens are the vector lanes: the u8 activations are transposed to `k × mp`
//! (tokens padded to a multiple of 16), each nonzero `qw[j][c]` multiplies 16 tokens of row `c` into
//! 32-bit accumulators, and the dequantised `Cᵀ` goes back through the f32 transpose with the epilogue.

use crate::aligned::AlignedVec;
use crate::dispatch::{self, Table};
use crate::gemm_f32::Epilogue;
use crate::gemm_i8::QuantRows;
use crate::par::{self, SendPtr};
use std::cell::RefCell;

/// A pruned int8 matrix `q[n][k]` (values in [−127, 127]) in compressed rows, with one scale per row.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrI8 {
    n: usize,
    k: usize,
    row_ptr: Vec<u32>,
    cols: Vec<u16>,
    vals: Vec<i8>,
    scales: Vec<f32>,
    row_sums: Vec<i32>,
    outlier_idx: Vec<u32>,
    /// `[outliers][n]`: dequantized weight of each outlier input channel.
    outlier_w: Vec<f32>,
}

impl CsrI8 {
    /// The nonzeros of row-major `q[n][k]` with per-row `scales` (`k ≤ 65 536`).
    pub fn from_dense(q: &[i8], scales: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(q.len(), n * k, "CsrI8: {} values for {n}×{k}", q.len());
        assert_eq!(scales.len(), n);
        assert!(k <= 1 << 16, "CsrI8: k={k} needs column indices wider than u16");
        let (row_ptr, cols, vals) = crate::spmm::compress_rows(q, n, k);
        Self::from_parts(n, k, row_ptr, cols, vals, scales)
    }

    /// Compressed rows as stored (as [`crate::CsrF32::from_parts`]) with per-row `scales`.
    pub fn from_parts(n: usize, k: usize, row_ptr: Vec<u32>, cols: Vec<u16>, vals: Vec<i8>, scales: &[f32]) -> Self {
        crate::spmm::check_parts(n, k, &row_ptr, &cols, vals.len());
        assert_eq!(scales.len(), n);
        let row_sums = (0..n)
            .map(|j| vals[row_ptr[j] as usize..row_ptr[j + 1] as usize].iter().map(|&v| v as i32).sum())
            .collect();
        CsrI8 {
            n,
            k,
            row_ptr,
            cols,
            vals,
            scales: scales.to_vec(),
            row_sums,
            outlier_idx: Vec::new(),
            outlier_w: Vec::new(),
        }
    }

    /// Declares outlier input channels (as [`crate::PackedI8::with_outliers`]).
    pub fn with_outliers(mut self, idx: &[u32]) -> Self {
        assert!(idx.iter().all(|&o| (o as usize) < self.k));
        let dense = self.to_rows();
        self.outlier_w = idx
            .iter()
            .flat_map(|&o| {
                (0..self.n).map(|j| dense[j * self.k + o as usize] as f32 * self.scales[j]).collect::<Vec<_>>()
            })
            .collect();
        self.outlier_idx = idx.to_vec();
        self
    }

    /// Rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Columns.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Outlier input channels.
    pub fn outliers(&self) -> &[u32] {
        &self.outlier_idx
    }

    /// Scale of each row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Row `j`: column indices and values.
    pub fn row(&self, j: usize) -> (&[u16], &[i8]) {
        let (a, b) = (self.row_ptr[j] as usize, self.row_ptr[j + 1] as usize);
        (&self.cols[a..b], &self.vals[a..b])
    }

    /// Back to row-major `q[n][k]`.
    pub fn to_rows(&self) -> Vec<i8> {
        let mut q = vec![0i8; self.n * self.k];
        for j in 0..self.n {
            let (c, v) = self.row(j);
            for (&c, &v) in c.iter().zip(v) {
                q[j * self.k + c as usize] = v;
            }
        }
        q
    }

    /// Dequantized row-major `W[n][k]`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.to_rows().iter().enumerate().map(|(i, &v)| v as f32 * self.scales[i / self.k.max(1)]).collect()
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.row_ptr.len() * 4
            + self.cols.len() * 2
            + self.vals.len()
            + self.scales.len() * 4
            + self.row_sums.len() * 4
            + self.outlier_w.len() * 4
    }
}

/// The problem as the per-ISA kernels see it: transposed activations and their per-token parameters
/// (padded tokens have scale 0).
pub(crate) struct SpmmI8Args<'a> {
    /// `qᵀ`: `k` rows of `mp` bytes.
    pub qt: &'a [u8],
    pub mp: usize,
    /// Per token: scale, zero point; `mp` each.
    pub sx: &'a [f32],
    pub zx: &'a [i32],
    /// Outlier values transposed: `[outliers][mp]`.
    pub xo: &'a [f32],
    pub w: &'a CsrI8,
    /// Dequantized `Cᵀ`: `n` rows of `mp` floats.
    pub ct: SendPtr<f32>,
}

impl SpmmI8Args<'_> {
    /// Dequantizes one accumulator of row `j`, token `i`: the definition SIMD kernels reproduce
    /// operation for operation.
    #[inline]
    pub(crate) fn finish(&self, acc: i32, j: usize, i: usize) -> f32 {
        let corr = acc - self.zx[i] * self.w.row_sums[j];
        let mut v = corr as f32 * (self.sx[i] * self.w.scales[j]);
        for t in 0..self.w.outlier_idx.len() {
            v = self.xo[t * self.mp + i].mul_add(self.w.outlier_w[t * self.w.n + j], v);
        }
        v
    }

    pub(crate) fn outlier_w(&self, t: usize, j: usize) -> f32 {
        self.w.outlier_w[t * self.w.n + j]
    }

    pub(crate) fn row_sum(&self, j: usize) -> i32 {
        self.w.row_sums[j]
    }

    pub(crate) fn scale(&self, j: usize) -> f32 {
        self.w.scales[j]
    }
}

/// Computes rows `rows` of the dequantized `Cᵀ`.
///
/// # Safety
/// `ct` holds `n · mp` floats; concurrent calls get disjoint `rows`; the CPU has the kernel's tier.
pub(crate) type SpmmI8Kernel = unsafe fn(&SpmmI8Args<'_>, std::ops::Range<usize>);

/// Per-thread buffers: transposed codes, scales, zero points, outlier values, and `Cᵀ`.
type Scratch = (Vec<u8>, Vec<f32>, Vec<i32>, Vec<f32>, AlignedVec<f32>);

thread_local! {
    static SCRATCH: RefCell<Scratch> =
        RefCell::new((Vec::new(), Vec::new(), Vec::new(), Vec::new(), AlignedVec::zeroed(0)));
}

/// The sparse integer GEMM; `parallel` splits output rows across the kernel threads.
pub fn spmm_u8s8_with(
    table: &Table,
    a: &QuantRows,
    w: &CsrI8,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    parallel: bool,
) {
    let (m, n, k) = (a.m, w.n, w.k);
    assert_eq!(a.k, k, "spmm_u8s8: activations have k={}, weights k={k}", a.k);
    assert_eq!(a.outlier_idx, w.outlier_idx, "spmm_u8s8: activations and weights disagree on outlier channels");
    assert!(ldc >= n && (m == 0 || c.len() >= (m - 1) * ldc + n), "spmm_u8s8: output too short");
    if let Some(b) = epi.bias {
        assert_eq!(b.len(), n, "spmm_u8s8: bias length");
    }
    if let Some((r, ld)) = epi.residual {
        assert!(m == 0 || (ld >= n && r.len() >= (m - 1) * ld + n), "spmm_u8s8: residual too short");
    }
    for m0 in (0..m).step_by(crate::spmm::TOKEN_BLOCK) {
        let rows = m0..(m0 + crate::spmm::TOKEN_BLOCK).min(m);
        spmm_u8s8_block(table, a, rows, w, &mut c[m0 * ldc..], ldc, &epi.rows(m0), parallel);
    }
}

/// [`spmm_u8s8_with`] on activation rows `tokens` (at most [`crate::spmm::TOKEN_BLOCK`]), writing
/// `c` from its row 0 (shapes checked by the caller).
#[allow(clippy::too_many_arguments)]
fn spmm_u8s8_block(
    table: &Table,
    a: &QuantRows,
    tokens: std::ops::Range<usize>,
    w: &CsrI8,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    parallel: bool,
) {
    let (n, k, m) = (w.n, w.k, tokens.len());
    let mp = m.div_ceil(16) * 16;
    let no = a.outlier_idx.len();
    SCRATCH.with_borrow_mut(|(qt, sx, zx, xo, ct)| {
        qt.clear();
        qt.resize(k * mp, 0);
        for (i, row) in tokens.clone().enumerate() {
            for (cc, &b) in a.q[row * a.ld..row * a.ld + k].iter().enumerate() {
                qt[cc * mp + i] = b;
            }
        }
        sx.clear();
        sx.resize(mp, 0.0);
        sx[..m].copy_from_slice(&a.scale[tokens.clone()]);
        zx.clear();
        zx.resize(mp, 0);
        zx[..m].copy_from_slice(&a.zero[tokens.clone()]);
        xo.clear();
        xo.resize(no * mp, 0.0);
        for (i, row) in tokens.clone().enumerate() {
            for t in 0..no {
                xo[t * mp + i] = a.outliers[row * no + t];
            }
        }
        if ct.len() < n * mp {
            *ct = AlignedVec::zeroed(n * mp);
        }
        let args = SpmmI8Args { qt, mp, sx, zx, xo, w, ct: SendPtr(ct.as_mut_ptr()) };
        let c_ptr = SendPtr(c.as_mut_ptr());
        let compute = |rows: std::ops::Range<usize>| {
            // SAFETY: `ct` holds n · mp floats; chunks are disjoint row ranges.
            unsafe { (table.spmm_u8s8)(&args, rows.clone()) };
            // SAFETY: rows `rows` of Cᵀ were written by this chunk and no other thread touches them;
            // C was checked to hold m rows of n ≤ ldc, and this chunk writes only its columns `rows`.
            unsafe {
                let ct = std::slice::from_raw_parts(args.ct.get().add(rows.start * mp), rows.len() * mp);
                crate::spmm::untranspose_rows(table, ct, mp, m, rows, c_ptr, ldc, epi);
            }
        };
        if parallel {
            par::for_each_chunk(n, compute);
        } else {
            compute(0..n);
        }
    });
}

/// [`spmm_u8s8_with`] with the dispatched kernels, on the kernel threads.
pub fn spmm_u8s8(a: &QuantRows, w: &CsrI8, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    spmm_u8s8_with(dispatch::table(), a, w, c, ldc, epi, true)
}
