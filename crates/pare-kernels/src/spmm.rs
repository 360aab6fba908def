//! Sparse × dense f32 GEMM for pruned weights: `C = act(A · Wᵀ + bias) + residual`, `W` stored as
//! CSR rows (one per output feature) with u16 column indices.
//!
//! The kernels vectorise over tokens: `A` (`m × k`, row-major) is first transposed to `Aᵀ` (`k × m`,
//! padded to a multiple of 16 tokens), so each nonzero `W[j][c]` is one broadcast multiply-add of
//! `Aᵀ[c][tokens]`. Outputs are computed transposed (`Cᵀ[j][tokens]`) and written back through
//! 16 × 16 transposes, where the epilogue is applied. Work per call ∝ nonzeros, not `n · k`.

use crate::aligned::AlignedVec;
use crate::dispatch::{self, Table};
use crate::gemm_f32::Epilogue;
use crate::par::{self, SendPtr};
use std::cell::RefCell;

/// Columns per segment: the kernels walk `Aᵀ` one segment at a time so the rows they read stay in L1
/// (128 columns × 64 tokens × 4 bytes = 32 KB).
pub const SEGMENT: usize = 128;

/// A sparse `n × k` matrix (`W[out][in]`) in compressed rows, each row's nonzeros also split by column
/// segment of [`SEGMENT`].
#[derive(Clone, Debug, PartialEq)]
pub struct CsrF32 {
    n: usize,
    k: usize,
    row_ptr: Vec<u32>,
    /// `n × (segments + 1)`: start of each segment of each row in `cols` / `vals`.
    seg_ptr: Vec<u32>,
    cols: Vec<u16>,
    vals: Vec<f32>,
}

/// The nonzeros of row-major `w[n][k]` (entries equal to `T::default()` are the zeros): row starts
/// (`n + 1`), column indices and values.
pub(crate) fn compress_rows<T: Copy + PartialEq + Default>(
    w: &[T],
    n: usize,
    k: usize,
) -> (Vec<u32>, Vec<u16>, Vec<T>) {
    // Counted first, so the arrays are allocated once at their final size.
    let nnz = w[..n * k].iter().filter(|&&v| v != T::default()).count();
    let mut row_ptr = Vec::with_capacity(n + 1);
    let (mut cols, mut vals) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    row_ptr.push(0);
    for j in 0..n {
        for (c, &v) in w[j * k..(j + 1) * k].iter().enumerate() {
            if v != T::default() {
                cols.push(c as u16);
                vals.push(v);
            }
        }
        row_ptr.push(vals.len() as u32);
    }
    (row_ptr, cols, vals)
}

impl CsrF32 {
    /// The nonzeros of row-major `w[n][k]` (`k ≤ 65 536`).
    pub fn from_dense(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "CsrF32: {} values for {n}×{k}", w.len());
        assert!(k <= 1 << 16, "CsrF32: k={k} needs column indices wider than u16");
        let (row_ptr, cols, vals) = compress_rows(w, n, k);
        Self::from_parts(n, k, row_ptr, cols, vals)
    }

    /// Compressed rows as stored: row starts (`n + 1`), then per row its ascending column indices
    /// (`< k ≤ 65 536`) and values.
    pub fn from_parts(n: usize, k: usize, row_ptr: Vec<u32>, cols: Vec<u16>, vals: Vec<f32>) -> Self {
        check_parts(n, k, &row_ptr, &cols, vals.len());
        let segs = k.div_ceil(SEGMENT);
        let mut seg_ptr = Vec::with_capacity(n * (segs + 1));
        for j in 0..n {
            let (a, b) = (row_ptr[j] as usize, row_ptr[j + 1] as usize);
            let mut p = a;
            for sgm in 0..=segs {
                while p < b && (cols[p] as usize) < sgm * SEGMENT {
                    p += 1;
                }
                seg_ptr.push(p as u32);
            }
        }
        CsrF32 { n, k, row_ptr, seg_ptr, cols, vals }
    }

    /// Column segments per row.
    pub fn segments(&self) -> usize {
        self.k.div_ceil(SEGMENT)
    }

    /// The nonzeros of row `j` whose columns lie in segment `s`.
    pub fn row_segment(&self, j: usize, s: usize) -> (&[u16], &[f32]) {
        let base = j * (self.segments() + 1);
        let (a, b) = (self.seg_ptr[base + s] as usize, self.seg_ptr[base + s + 1] as usize);
        (&self.cols[a..b], &self.vals[a..b])
    }

    /// Rows (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Columns (input features).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Fraction of nonzeros.
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.n * self.k).max(1) as f64
    }

    /// Row `j`: its column indices and values.
    pub fn row(&self, j: usize) -> (&[u16], &[f32]) {
        let (a, b) = (self.row_ptr[j] as usize, self.row_ptr[j + 1] as usize);
        (&self.cols[a..b], &self.vals[a..b])
    }

    /// Back to row-major `W[n][k]`.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for j in 0..self.n {
            let (c, v) = self.row(j);
            for (&c, &v) in c.iter().zip(v) {
                w[j * self.k + c as usize] = v;
            }
        }
        w
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.row_ptr.len() * 4 + self.seg_ptr.len() * 4 + self.cols.len() * 2 + self.vals.len() * 4
    }
}

/// Checks compressed rows: `n + 1` non-decreasing row starts ending at `nnz`, column indices ascending
/// within each row and below `k`.
pub(crate) fn check_parts(n: usize, k: usize, row_ptr: &[u32], cols: &[u16], nnz: usize) {
    assert!(k <= 1 << 16, "compressed rows: k={k} needs column indices wider than u16");
    assert!(row_ptr.len() == n + 1 && row_ptr[0] == 0, "compressed rows: {} row starts for n={n}", row_ptr.len());
    assert!(row_ptr.windows(2).all(|w| w[0] <= w[1]), "compressed rows: row starts decrease");
    assert!(row_ptr[n] as usize == nnz && cols.len() == nnz, "compressed rows: {nnz} values, {} indices", cols.len());
    for j in 0..n {
        let r = &cols[row_ptr[j] as usize..row_ptr[j + 1] as usize];
        assert!(
            r.windows(2).all(|w| w[0] < w[1]) && r.last().is_none_or(|&c| (c as usize) < k),
            "row {j}: bad columns"
        );
    }
}

/// The problem as the per-ISA kernels see it.
pub(crate) struct SpmmArgs<'a> {
    /// `Aᵀ`: `k` rows of `mp` floats (tokens padded to a multiple of 16 with zeros).
    pub at: &'a [f32],
    pub mp: usize,
    pub w: &'a CsrF32,
    /// `Cᵀ` scratch: `n` rows of `mp` floats.
    pub ct: SendPtr<f32>,
}

/// Computes rows `rows` of `Cᵀ` (no epilogue).
///
/// # Safety
/// `ct` holds `n · mp` floats; concurrent calls get disjoint `rows`; the CPU has the kernel's tier.
pub(crate) type SpmmKernel = unsafe fn(&SpmmArgs<'_>, std::ops::Range<usize>);

thread_local! {
    /// `Aᵀ` and `Cᵀ`, 64-byte aligned so every 16-token vector sits in one cache line.
    static SCRATCH: RefCell<(AlignedVec<f32>, AlignedVec<f32>)> =
        RefCell::new((AlignedVec::zeroed(0), AlignedVec::zeroed(0)));
}

fn check(a: &[f32], lda: usize, m: usize, w: &CsrF32, c: &[f32], ldc: usize, epi: &Epilogue) {
    let (n, k) = (w.n, w.k);
    assert!(lda >= k && ldc >= n, "spmm: strides lda={lda} ldc={ldc} smaller than k={k} n={n}");
    if m > 0 {
        assert!(a.len() >= (m - 1) * lda + k, "spmm: A too short");
        assert!(c.len() >= (m - 1) * ldc + n, "spmm: C too short");
        if let Some((r, ld)) = epi.residual {
            assert!(ld >= n && r.len() >= (m - 1) * ld + n, "spmm: residual too short");
        }
        if let Some(r) = epi.row_scale {
            assert!(r.len() >= m, "spmm: row_scale too short");
        }
    }
    if let Some(b) = epi.bias {
        assert_eq!(b.len(), n, "spmm: bias length");
    }
}

/// `C = act(alpha · A·Wᵀ + bias) + residual` for a sparse `W`, on the kernel threads (`parallel`) or
/// the calling thread only.
#[allow(clippy::too_many_arguments)]
pub fn spmm_f32_with(
    table: &Table,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &CsrF32,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    parallel: bool,
) {
    check(a, lda, m, w, c, ldc, epi);
    for m0 in (0..m).step_by(TOKEN_BLOCK) {
        let mb = TOKEN_BLOCK.min(m - m0);
        spmm_f32_block(table, &a[m0 * lda..], lda, mb, w, &mut c[m0 * ldc..], ldc, &epi.rows(m0), parallel);
    }
}

/// Tokens per pass of the sparse kernels: `Aᵀ` and `Cᵀ` scratch stay within `(k + n) × 128` floats per
/// thread however large the batch.
pub const TOKEN_BLOCK: usize = 128;

/// [`spmm_f32_with`] on at most [`TOKEN_BLOCK`] rows (shapes checked by the caller).
#[allow(clippy::too_many_arguments)]
fn spmm_f32_block(
    table: &Table,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &CsrF32,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    parallel: bool,
) {
    let (n, k) = (w.n, w.k);
    let mp = m.div_ceil(16) * 16;
    SCRATCH.with_borrow_mut(|(at, ct)| {
        let at = transpose_a(table, a, lda, m, k, mp, at, parallel);
        if ct.len() < n * mp {
            *ct = AlignedVec::zeroed(n * mp);
        }
        let ct = &mut ct[..n * mp];
        let c_ptr = SendPtr(c.as_mut_ptr());
        let args = SpmmArgs { at, mp, w, ct: SendPtr(ct.as_mut_ptr()) };
        // Rows of Cᵀ, then the same columns of C (with the epilogue).
        let compute = |rows: std::ops::Range<usize>| {
            // SAFETY: `ct` holds n · mp floats; chunks are disjoint row ranges.
            unsafe { (table.spmm_f32)(&args, rows.clone()) };
            // SAFETY: C was checked to hold m rows of n ≤ ldc; this chunk writes only its columns
            // `rows`, from rows of Cᵀ it wrote.
            unsafe { untranspose_rows(table, ct_rows(&args, rows.clone()), mp, m, rows, c_ptr, ldc, epi) };
        };
        if parallel {
            par::for_each_chunk(n, compute);
        } else {
            compute(0..n);
        }
    });
}

/// One output of [`spmm_f32_group`]: the weight, `C` (`m × n`, row stride `ldc`) and its epilogue.
pub type SpmmJob<'a> = (&'a CsrF32, &'a mut [f32], usize, Epilogue<'a>);

/// Several sparse products of the same `A` in one parallel section (query, key and value): `Aᵀ` is
/// made once, and the rows of all outputs are shared out among the kernel threads. Each output is
/// bit-identical to its own [`spmm_f32`].
pub fn spmm_f32_group(a: &[f32], lda: usize, m: usize, mut jobs: Vec<SpmmJob<'_>>) {
    let table = dispatch::table();
    for (w, c, ldc, epi) in &jobs {
        check(a, lda, m, w, c, *ldc, epi);
    }
    let Some(k) = jobs.first().map(|j| j.0.k) else { return };
    assert!(jobs.iter().all(|j| j.0.k == k), "spmm_f32_group: the weights disagree on k");
    for m0 in (0..m).step_by(TOKEN_BLOCK) {
        let mb = TOKEN_BLOCK.min(m - m0);
        let block = jobs.iter_mut().map(|(w, c, ldc, epi)| (*w, &mut c[m0 * *ldc..], *ldc, epi.rows(m0))).collect();
        spmm_f32_group_block(table, &a[m0 * lda..], lda, mb, k, block);
    }
}

/// [`spmm_f32_group`] on at most [`TOKEN_BLOCK`] rows (shapes checked by the caller).
fn spmm_f32_group_block(table: &Table, a: &[f32], lda: usize, m: usize, k: usize, jobs: Vec<SpmmJob<'_>>) {
    let mp = m.div_ceil(16) * 16;
    let total: usize = jobs.iter().map(|j| j.0.n).sum();
    SCRATCH.with_borrow_mut(|(at, ct)| {
        let at: &[f32] = transpose_a(table, a, lda, m, k, mp, at, true);
        if ct.len() < total * mp {
            *ct = AlignedVec::zeroed(total * mp);
        }
        // One base pointer for every job (each later `as_mut_ptr` would invalidate the earlier ones).
        let base = ct[..total * mp].as_mut_ptr();
        // Each job's rows of Cᵀ start at its offset in the shared scratch.
        let mut offset = 0;
        let outs: Vec<(SpmmArgs<'_>, usize, SendPtr<f32>, usize, Epilogue<'_>)> = jobs
            .into_iter()
            .map(|(w, c, ldc, epi)| {
                // SAFETY: `offset + w.n ≤ total`: each job gets its own `n · mp` floats of `ct`.
                let ctp = SendPtr(unsafe { base.add(offset * mp) });
                let start = offset;
                offset += w.n;
                (SpmmArgs { at, mp, w, ct: ctp }, start, SendPtr(c.as_mut_ptr()), ldc, epi)
            })
            .collect();
        par::for_each_chunk(total, |rows: std::ops::Range<usize>| {
            for (args, start, c_ptr, ldc, epi) in &outs {
                let start = *start;
                let (lo, hi) = (rows.start.max(start), rows.end.min(start + args.w.n));
                if lo >= hi {
                    continue;
                }
                let r = lo - start..hi - start;
                // SAFETY: this job's scratch holds n · mp floats; chunks are disjoint row ranges.
                unsafe { (table.spmm_f32)(args, r.clone()) };
                // SAFETY: this job's C was checked to hold m rows of n ≤ ldc; this chunk writes only its
                // columns `r`, from rows of Cᵀ it wrote.
                unsafe { untranspose_rows(table, ct_rows(args, r.clone()), mp, m, r, *c_ptr, *ldc, epi) };
            }
        });
    });
}

/// [`spmm_f32_with`] with the dispatched kernels, on the kernel threads.
#[allow(clippy::too_many_arguments)]
pub fn spmm_f32(a: &[f32], lda: usize, m: usize, w: &CsrF32, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    spmm_f32_with(dispatch::table(), a, lda, m, w, c, ldc, epi, true)
}

/// `Cᵀ` as a slice (read after the rows it holds were written by this thread).
/// `Aᵀ` of `a` (`m × k`, row stride `lda`) into `at` (grown as needed): `k` rows of `mp` floats, the
/// padding tokens past `m` zero; by blocks of 16 tokens, on the kernel threads when `parallel`.
#[allow(clippy::too_many_arguments)]
fn transpose_a<'s>(
    table: &Table,
    a: &[f32],
    lda: usize,
    m: usize,
    k: usize,
    mp: usize,
    at: &'s mut AlignedVec<f32>,
    parallel: bool,
) -> &'s mut [f32] {
    if at.len() < k * mp {
        *at = AlignedVec::zeroed(k * mp);
    }
    let at = &mut at[..k * mp];
    if mp > m {
        for row in at.chunks_exact_mut(mp) {
            row[m..].fill(0.0);
        }
    }
    let at_ptr = SendPtr(at.as_mut_ptr());
    // Each block writes its own 16 tokens of every row of Aᵀ, through the raw pointer only.
    let transpose = |blocks: std::ops::Range<usize>| {
        for bl in blocks {
            let i0 = bl * 16;
            // SAFETY: token i0 < m ≤ mp of row 0 lies inside `at`; block `bl` writes only tokens
            // i0 .. i0 + 16 of each of the k rows (mp ≥ i0 + 16 apart), and concurrent blocks are
            // disjoint; nothing else touches `at` during the parallel section.
            unsafe { (table.transpose_f32)(&a[i0 * lda..], lda, 16.min(m - i0), k, at_ptr.get().add(i0), mp) };
        }
    };
    if parallel {
        par::for_each_chunk(m.div_ceil(16), transpose);
    } else {
        transpose(0..m.div_ceil(16));
    }
    at
}

/// Columns `rows` of `C` (`m` rows of stride `ldc` at `c`) from `ct_rows`, rows `rows` of `Cᵀ` (`mp`
/// floats each), with the epilogue: the second half of every sparse product.
///
/// # Safety
/// `c` points at `(m − 1)·ldc + n` floats (`n ≥ rows.end`) whose columns `rows` no other thread
/// accesses meanwhile (other threads may write other columns of the same rows).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn untranspose_rows(
    table: &Table,
    ct_rows: &[f32],
    mp: usize,
    m: usize,
    rows: std::ops::Range<usize>,
    c: SendPtr<f32>,
    ldc: usize,
    epi: &Epilogue,
) {
    assert!(ct_rows.len() >= rows.len() * mp, "untranspose_rows: Cᵀ rows too short");
    // SAFETY: column rows.start < n ≤ ldc of row 0 lies inside C; the kernel writes only columns
    // rows.start .. rows.end of the m rows (forwarded contract).
    unsafe {
        (table.untranspose_f32)(ct_rows, mp, rows.len(), m, c.get().add(rows.start), ldc, &epi.columns(rows.start))
    };
}

/// Rows `rows` of `Cᵀ` as a slice: only rows the calling thread has finished writing, so no other
/// thread writes inside it.
fn ct_rows<'a>(args: &'a SpmmArgs<'_>, rows: std::ops::Range<usize>) -> &'a [f32] {
    assert!(rows.end <= args.w.n());
    // SAFETY: `ct` points at `n · mp` floats that live as long as `args`; rows ⊆ 0..n.
    unsafe { std::slice::from_raw_parts(args.ct.get().add(rows.start * args.mp), rows.len() * args.mp) }
}

/// `at[c·mp + i] = a[i·lda + c]` for `i < m`, `c < k`, written through `at` (the padding past `m`
/// is zeroed by the caller).
///
/// # Safety
/// `at` points at `(k − 1)·mp + m` floats (`mp ≥ m`) whose elements `(c, i < m)` no other thread
/// accesses meanwhile.
pub(crate) type TransposeKernel = unsafe fn(a: &[f32], lda: usize, m: usize, k: usize, at: *mut f32, mp: usize);

/// `c[i·ldc + j] = epi(ct[j·mp + i])` for `i < m`, `j < n`, written through `c`.
///
/// # Safety
/// `c` points at `(m − 1)·ldc + n` floats (`ldc ≥ n`) whose elements `(i, j < n)` no other thread
/// accesses meanwhile; `ct` holds `n` rows of `mp ≥ m` floats.
pub(crate) type UntransposeKernel =
    unsafe fn(ct: &[f32], mp: usize, n: usize, m: usize, c: *mut f32, ldc: usize, epi: &Epilogue);
