//! Integer GEMM: u8 activations × s8 weights → i32, with a dequantising epilogue.
//!
//! Activations are quantized per row (token) asymmetrically: `x ≈ sx·(qx − zx)`, `qx ∈ [0, 255]`.
//! Weights are quantized per output column symmetrically: `w ≈ sw·qw`, `qw ∈ [−127, 127]`. Then
//! `Σ x·w ≈ sx·sw·(Σ qx·qw − zx·Σ qw)`; the column sums `Σ_k qw` are computed once at packing.
//!
//! Outlier input channels (LLM.int8(), Dettmers et al. 2022): a few input channels whose activations
//! are far larger than the rest would dominate every row's quantization range. They are left out of
//! the u8 activations (quantized to the zero point, contributing nothing) and added back in f32 in the
//! epilogue, against the dequantized weight columns: `c += Σ_o x[i][o] · sw[j]·qw[j][o]`. The
//! channel set is fixed per weight (calibrated) and shared with the activations that feed it.
//!
//! Packed layouts, column panels of [`NR`] = 32, `K` padded to a multiple of 4 with zero weights; which
//! one a weight gets is the kernel table's choice ([`I8Layout`]):
//! - [`I8Layout::Quads`] (8 bits per weight): panel `p` holds, for each group of four consecutive `k`,
//!   the 32 columns × 4 bytes (`[K/4][32][4]`, 128 bytes per group), so one 512-bit load feeds
//!   `vpdpbusd` for 16 columns (a 256-bit load, 8 columns).
//! - [`I8Layout::Pairs16`] (16 bits per weight in memory, 8 on disk): the weights widened to i16,
//!   `[K/2][32][2]` (128 bytes per pair of `k`), for `vpmaddwd` against activation pairs widened to
//!   i16. Tiers without `vpdpbusd` use it: `vpmaddwd` multiplies u8 × s8 exactly at 16 products per
//!   256-bit instruction, while `vpmaddubsw` saturates its i16 pair sums for full-range u8
//!   activations (255·127·2 > 32767) and needs either 7-bit activations (measured on MiniLM: min
//!   cosine 0.9942, under the 0.995 floor) or a `vpsignb` per product vector (slower than this).

use crate::aligned::AlignedVec;
use crate::dispatch;
use crate::gemm_f32::Epilogue;
use crate::par::{self, SendPtr};
use std::cell::RefCell;
use std::ops::Range;

/// Columns per packed panel.
pub const NR: usize = 32;

/// How a [`PackedI8`] stores its codes (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum I8Layout {
    /// `[K/4][32][4]` bytes per panel.
    Quads,
    /// `[K/2][32][2]` i16 per panel.
    Pairs16,
}

/// A quantized weight matrix `W[n][k]` (s8, per-column scales) packed for the integer kernels.
#[derive(Clone, Debug)]
pub struct PackedI8 {
    k: usize,
    n: usize,
    layout: I8Layout,
    /// Codes in [`I8Layout::Quads`] (empty otherwise).
    data: AlignedVec<i8>,
    /// Codes in [`I8Layout::Pairs16`] (empty otherwise).
    wide: AlignedVec<i16>,
    col_sums: Vec<i32>,
    scales: Vec<f32>,
    outlier_idx: Vec<u32>,
    /// `[outliers][panels · NR]`: dequantized weight column of each outlier channel, zero-padded.
    outlier_w: Vec<f32>,
}

impl PackedI8 {
    /// Packs row-major `q[n][k]` (values in [−127, 127]) with one scale per row of `q` (output column),
    /// in the layout of the dispatched kernels.
    pub fn from_rows(q: &[i8], scales: &[f32], n: usize, k: usize) -> Self {
        Self::from_rows_for(dispatch::table().i8_layout, q, scales, n, k)
    }

    /// [`PackedI8::from_rows`] in a given layout (that of the table whose kernels will run it).
    pub fn from_rows_for(layout: I8Layout, q: &[i8], scales: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(q.len(), n * k, "PackedI8: {} values for {n}×{k}", q.len());
        assert_eq!(scales.len(), n, "PackedI8: {} scales for n={n}", scales.len());
        let kp = k.div_ceil(4) * 4;
        let panels = n.div_ceil(NR);
        let (mut data, mut wide) = match layout {
            I8Layout::Quads => (AlignedVec::<i8>::zeroed(panels * kp * NR), AlignedVec::<i16>::zeroed(0)),
            I8Layout::Pairs16 => (AlignedVec::<i8>::zeroed(0), AlignedVec::<i16>::zeroed(panels * kp * NR)),
        };
        let mut col_sums = vec![0i32; panels * NR];
        let mut sc = vec![0f32; panels * NR];
        for j in 0..n {
            let (p, jj) = (j / NR, j % NR);
            let row = &q[j * k..(j + 1) * k];
            for (kk, &v) in row.iter().enumerate() {
                match layout {
                    I8Layout::Quads => data[p * kp * NR + (kk / 4) * NR * 4 + jj * 4 + kk % 4] = v,
                    I8Layout::Pairs16 => wide[p * kp * NR + (kk / 2) * NR * 2 + jj * 2 + kk % 2] = v as i16,
                }
            }
            col_sums[j] = row.iter().map(|&v| v as i32).sum();
            sc[j] = scales[j];
        }
        PackedI8 { k, n, layout, data, wide, col_sums, scales: sc, outlier_idx: Vec::new(), outlier_w: Vec::new() }
    }

    /// How the codes are stored.
    pub fn layout(&self) -> I8Layout {
        self.layout
    }

    /// Declares input channels `idx` (distinct, `< k`) as outliers: activations feeding this weight
    /// must be quantized with the same set, and the epilogue adds them back in f32.
    pub fn with_outliers(mut self, idx: &[u32]) -> Self {
        let np = self.panels() * NR;
        assert!(idx.iter().all(|&o| (o as usize) < self.k), "outlier channel past k={}", self.k);
        let mut w = vec![0f32; idx.len() * np];
        for (t, &o) in idx.iter().enumerate() {
            for j in 0..self.n {
                w[t * np + j] = self.get(o as usize, j) as f32 * self.scales[j];
            }
        }
        self.outlier_idx = idx.to_vec();
        self.outlier_w = w;
        self
    }

    /// Outlier input channels (see the module docs).
    pub fn outliers(&self) -> &[u32] {
        &self.outlier_idx
    }

    /// Dequantized weight of outlier `t` (position in [`PackedI8::outliers`]) for every column,
    /// padded to whole panels.
    pub fn outlier_column(&self, t: usize) -> &[f32] {
        let np = self.panels() * NR;
        &self.outlier_w[t * np..(t + 1) * np]
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Inner dimension padded to a multiple of 4 (the row stride activations need at least).
    pub fn k_padded(&self) -> usize {
        self.k.div_ceil(4) * 4
    }

    /// Columns (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of column panels.
    pub fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Panel `p` of a [`I8Layout::Quads`] matrix: `k_padded / 4` groups of 32 columns × 4 bytes.
    pub fn panel(&self, p: usize) -> &[i8] {
        assert_eq!(self.layout, I8Layout::Quads, "PackedI8::panel on a {:?} matrix", self.layout);
        let len = self.k_padded() * NR;
        &self.data[p * len..(p + 1) * len]
    }

    /// Panel `p` of a [`I8Layout::Pairs16`] matrix: `k_padded / 2` pairs of 32 columns × 2 i16.
    pub fn panel16(&self, p: usize) -> &[i16] {
        assert_eq!(self.layout, I8Layout::Pairs16, "PackedI8::panel16 on a {:?} matrix", self.layout);
        let len = self.k_padded() * NR;
        &self.wide[p * len..(p + 1) * len]
    }

    /// `Σ_k q[j][k]` for every column, padded to whole panels with zeros.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Per-column scales, padded to whole panels with zeros.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Element `q[j][kk]`.
    pub fn get(&self, kk: usize, j: usize) -> i8 {
        match self.layout {
            I8Layout::Quads => self.panel(j / NR)[(kk / 4) * NR * 4 + (j % NR) * 4 + kk % 4],
            I8Layout::Pairs16 => self.panel16(j / NR)[(kk / 2) * NR * 2 + (j % NR) * 2 + kk % 2] as i8,
        }
    }

    /// Back to row-major `q[n][k]`.
    pub fn to_rows(&self) -> Vec<i8> {
        let mut q = vec![0i8; self.n * self.k];
        for j in 0..self.n {
            for kk in 0..self.k {
                q[j * self.k + kk] = self.get(kk, j);
            }
        }
        q
    }

    /// Dequantized row-major `W[n][k]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let q = self.to_rows();
        q.iter().enumerate().map(|(i, &v)| v as f32 * self.scales[i / self.k.max(1)]).collect()
    }

    /// Bytes held in memory (weights, sums, scales).
    pub fn bytes(&self) -> usize {
        self.data.len()
            + self.wide.len() * 2
            + self.col_sums.len() * 4
            + self.scales.len() * 4
            + self.outlier_w.len() * 4
    }
}

/// Activations quantized per row: `x[i][k] ≈ scale[i] · (q[i][k] − zero[i])`.
#[derive(Clone, Debug, Default)]
pub struct QuantRows {
    /// Rows.
    pub m: usize,
    /// Columns (the inner dimension `k`).
    pub k: usize,
    /// Row stride of `q`, a multiple of 4 and ≥ `k`; padding bytes hold the zero point.
    pub ld: usize,
    /// Quantized values, `m · ld`.
    pub q: Vec<u8>,
    /// Scale per row.
    pub scale: Vec<f32>,
    /// Zero point per row, in [0, 255].
    pub zero: Vec<i32>,
    /// Outlier channels left out of `q` (their bytes hold the zero point).
    pub outlier_idx: Vec<u32>,
    /// Their f32 values, `m · outlier_idx.len()`.
    pub outliers: Vec<f32>,
}

/// Where the integer GEMM writes.
#[derive(Debug)]
pub enum I8Out<'a> {
    /// `c[i][j] = act(sx[i]·sw[j]·(acc − zx[i]·Σqw[j]) + bias[j]) + residual[i][j]` (the epilogue's
    /// `alpha` is ignored; the scales take its place).
    F32 {
        /// Output, `m` rows of stride `ldc`.
        c: &'a mut [f32],
        /// Row stride.
        ldc: usize,
        /// Bias, activation and residual.
        epi: Epilogue<'a>,
    },
    /// The raw accumulators `Σ_k qx·qw` (tests and benchmarks).
    I32 {
        /// Output, `m` rows of stride `ldc`.
        c: &'a mut [i32],
        /// Row stride.
        ldc: usize,
    },
}

/// The problem as per-ISA kernels see it. `c` is raw because threads write disjoint panels.
#[derive(Clone, Copy)]
pub(crate) struct GemmI8Args<'a> {
    pub a: &'a QuantRows,
    /// `a.q − a.zero` widened to i16 (same row stride; padding 0) when the weights are
    /// [`I8Layout::Pairs16`], else empty. Centred codes make the zero-point correction unnecessary:
    /// `Σ (qx − zx)·qw` is the corrected sum itself, exact in i32.
    pub a16: &'a [i16],
    pub b: &'a PackedI8,
    pub out: OutPtr<'a>,
}

/// Raw output pointer and how to finish each value.
#[derive(Clone, Copy)]
pub(crate) enum OutPtr<'a> {
    F32 { c: SendPtr<f32>, ldc: usize, epi: Epilogue<'a> },
    I32 { c: SendPtr<i32>, ldc: usize },
}

/// A per-ISA integer GEMM kernel over rows `rows` × column panels `panels`.
///
/// # Safety
/// `args` passed [`check`], `rows ⊆ 0..m`, `panels ⊆ 0..b.panels()`; concurrent calls on the same
/// output get disjoint blocks.
pub(crate) type GemmI8Kernel = unsafe fn(&GemmI8Args<'_>, Range<usize>, Range<usize>);

fn check(a: &QuantRows, b: &PackedI8, out: &I8Out) {
    let (m, n) = (a.m, b.n());
    assert_eq!(a.k, b.k(), "gemm_u8s8: activations have k={}, weights k={}", a.k, b.k());
    assert!(a.ld >= b.k_padded() && a.ld.is_multiple_of(4), "gemm_u8s8: activation stride {} for k={}", a.ld, a.k);
    assert!(a.q.len() >= m * a.ld && a.scale.len() >= m && a.zero.len() >= m, "gemm_u8s8: activations too short");
    assert_eq!(a.outlier_idx, b.outlier_idx, "gemm_u8s8: activations and weights disagree on outlier channels");
    assert!(a.outliers.len() >= m * a.outlier_idx.len(), "gemm_u8s8: outlier values too short");
    let (len, ldc) = match out {
        I8Out::F32 { c, ldc, epi } => {
            if let Some(bias) = epi.bias {
                assert_eq!(bias.len(), n, "gemm_u8s8: bias length");
            }
            if let Some((r, ld)) = epi.residual {
                assert!(m == 0 || (ld >= n && r.len() >= (m - 1) * ld + n), "gemm_u8s8: residual too short");
            }
            (c.len(), *ldc)
        }
        I8Out::I32 { c, ldc } => (c.len(), *ldc),
    };
    assert!(ldc >= n && (m == 0 || len >= (m - 1) * ldc + n), "gemm_u8s8: output too short");
}

fn args<'a>(a: &'a QuantRows, a16: &'a [i16], b: &'a PackedI8, out: I8Out<'a>) -> GemmI8Args<'a> {
    let out = match out {
        I8Out::F32 { c, ldc, epi } => OutPtr::F32 { c: SendPtr(c.as_mut_ptr()), ldc, epi },
        I8Out::I32 { c, ldc } => OutPtr::I32 { c: SendPtr(c.as_mut_ptr()), ldc },
    };
    GemmI8Args { a, a16, b, out }
}

thread_local! {
    static WIDE: RefCell<AlignedVec<i16>> = RefCell::new(AlignedVec::zeroed(0));
}

/// Runs `f` with the centred activation codes `q − zero` widened to i16 when `layout` needs them
/// (else an empty slice).
fn with_wide<R>(a: &QuantRows, layout: I8Layout, f: impl FnOnce(&[i16]) -> R) -> R {
    if layout != I8Layout::Pairs16 {
        return f(&[]);
    }
    WIDE.with_borrow_mut(|w| {
        let len = a.m * a.ld;
        if w.len() < len {
            *w = AlignedVec::zeroed(len);
        }
        for i in 0..a.m {
            let z = a.zero[i] as i16;
            let (src, dst) = (&a.q[i * a.ld..(i + 1) * a.ld], &mut w[i * a.ld..(i + 1) * a.ld]);
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v as i16 - z;
            }
        }
        f(&w[..len])
    })
}

/// How a GEMM is shared among the kernel threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Split {
    /// Each thread computes a block of rows (tokens) for all columns: what a thread writes, it reads
    /// next (LayerNorm, quantization, the next GEMM) from its own cache. Falls back to columns when
    /// there are too few rows.
    #[default]
    Rows,
    /// Each thread computes a block of column panels for all rows (e.g. whole attention heads).
    Columns,
}

/// Rows per tile of the integer kernels; row blocks are multiples of it.
const ROW_TILE: usize = 8;

/// The integer GEMM on the kernel threads.
pub fn gemm_u8s8<'a>(a: &'a QuantRows, b: &'a PackedI8, out: I8Out<'a>, split: Split) {
    check(a, b, &out);
    let kernel = dispatch::table().gemm_u8s8;
    let m = a.m;
    with_wide(a, b.layout(), |a16| {
        let args = args(a, a16, b, out);
        let tiles = m.div_ceil(ROW_TILE);
        if split == Split::Rows && tiles >= 2 * par::threads() {
            par::for_each_chunk(tiles, |t| {
                let rows = t.start * ROW_TILE..(t.end * ROW_TILE).min(m);
                // SAFETY: `check` validated the shapes; chunks are disjoint row blocks.
                unsafe { kernel(&args, 0..b.panels(), rows) }
            });
        } else {
            par::for_each_chunk(b.panels(), |panels| {
                // SAFETY: `check` validated the shapes; chunks are disjoint panel ranges.
                unsafe { kernel(&args, panels, 0..m) }
            });
        }
    })
}

/// Several integer GEMMs reading the same activations (e.g. query, key and value) in one parallel
/// section: thread `t` computes the `t`-th share of every output's column panels, so with equal
/// shapes each thread owns the same columns (whole heads) of every output.
pub fn gemm_u8s8_group<'a>(a: &'a QuantRows, jobs: Vec<(&'a PackedI8, I8Out<'a>)>) {
    for (b, out) in &jobs {
        check(a, b, out);
    }
    let kernel = dispatch::table().gemm_u8s8;
    let Some(layout) = jobs.first().map(|(b, _)| b.layout()) else { return };
    assert!(jobs.iter().all(|(b, _)| b.layout() == layout), "gemm_u8s8_group: weights in different layouts");
    with_wide(a, layout, |a16| {
        let args: Vec<GemmI8Args<'_>> = jobs.into_iter().map(|(b, out)| args(a, a16, b, out)).collect();
        let parts = par::threads().min(args.iter().map(|g| g.b.panels()).max().unwrap_or(0)).max(1);
        par::for_each_chunk(parts, |ts| {
            for t in ts {
                for g in &args {
                    let panels = par::chunk(g.b.panels(), parts, t);
                    // SAFETY: each job was checked; shares of one job's panels are disjoint across threads.
                    unsafe { kernel(g, panels, 0..a.m) };
                }
            }
        });
    })
}

/// Single-threaded integer GEMM with the kernel of a given table.
pub fn gemm_u8s8_with<'a>(table: &dispatch::Table, a: &'a QuantRows, b: &'a PackedI8, out: I8Out<'a>) {
    check(a, b, &out);
    let m = a.m;
    with_wide(a, b.layout(), |a16| {
        let args = args(a, a16, b, out);
        // SAFETY: `check` validated the shapes; one call covers the whole output.
        unsafe { (table.gemm_u8s8)(&args, 0..b.panels(), 0..m) }
    })
}

impl GemmI8Args<'_> {
    /// Finishes one accumulator in scalar code: the definition every SIMD epilogue reproduces
    /// operation for operation (so results are bit-identical without GELU).
    ///
    /// # Safety
    /// `(i, j)` lies inside the checked output; no other thread writes it.
    #[inline]
    pub(crate) unsafe fn store_scalar(&self, acc: i32, i: usize, j: usize) {
        match self.out {
            OutPtr::I32 { c, ldc } => {
                // SAFETY: forwarded contract.
                unsafe { *c.get().add(i * ldc + j) = acc };
            }
            OutPtr::F32 { c, ldc, epi } => {
                let corr = acc - self.a.zero[i] * self.b.col_sums[j];
                let mut v = corr as f32 * (self.a.scale[i] * self.b.scales[j]);
                let no = self.a.outlier_idx.len();
                for t in 0..no {
                    v = self.a.outliers[i * no + t].mul_add(self.b.outlier_column(t)[j], v);
                }
                let v = Epilogue { alpha: 1.0, ..epi }.apply(v, i, j);
                // SAFETY: forwarded contract.
                unsafe { *c.get().add(i * ldc + j) = v };
            }
        }
    }
}
