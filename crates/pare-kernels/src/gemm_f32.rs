//! Dense f32 GEMM against a pre-packed right-hand side: `C = act(alpha · A·B + bias) + residual`.
//!
//! `A` is row-major `m × k` with row stride `lda` (activations, tokens in rows). `B` is `k × n`, packed
//! once into column panels of [`NR`] = 32: panel `p` holds columns `32p .. 32p+32` as `k` rows of 32
//! contiguous floats (64-byte aligned, zero-padded past `n`). A Linear layer's weight `W[n][k]`
//! (PyTorch layout) is packed with [`PackedF32::from_rows`]; a `k × n` matrix with [`PackedF32::from_cols`].

use crate::aligned::AlignedVec;
use crate::dispatch;
use crate::par::{self, SendPtr};
use std::ops::Range;

/// Columns per packed panel.
pub const NR: usize = 32;

/// A `k × n` matrix packed in column panels of [`NR`] (see the module docs).
#[derive(Clone, Debug)]
pub struct PackedF32 {
    k: usize,
    n: usize,
    data: AlignedVec<f32>,
}

impl PackedF32 {
    /// An empty packed matrix, to be filled by the `repack_*` methods.
    pub fn empty() -> Self {
        Self { k: 0, n: 0, data: AlignedVec::zeroed(0) }
    }

    /// Packs `B = Wᵀ` from a row-major `W[n][k]` (the layout of a PyTorch Linear weight).
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> Self {
        let mut p = Self::empty();
        p.repack_rows(w, k, n, k);
        p
    }

    /// Packs a row-major `B[k][n]`.
    pub fn from_cols(b: &[f32], k: usize, n: usize) -> Self {
        let mut p = Self::empty();
        p.repack_cols(b, n, k, n);
        p
    }

    fn reshape(&mut self, k: usize, n: usize) {
        let len = n.div_ceil(NR) * k * NR;
        if self.data.len() != len {
            self.data = AlignedVec::zeroed(len);
        }
        self.k = k;
        self.n = n;
    }

    /// Re-packs in place from `W[n][k]` with row stride `ldw` (reusing the buffer when it fits).
    pub fn repack_rows(&mut self, w: &[f32], ldw: usize, n: usize, k: usize) {
        assert!(n == 0 || w.len() >= (n - 1) * ldw + k, "weight slice too short");
        self.reshape(k, n);
        if k == 0 {
            return;
        }
        if dispatch::table().pack_rows_f32(w, ldw, n, k, self.data.as_mut_slice()) {
            return;
        }
        let data = self.data.as_mut_slice();
        for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let w_here = NR.min(n - p * NR);
            if w_here < NR {
                panel.fill(0.0);
            }
            for jj in 0..w_here {
                let row = &w[(p * NR + jj) * ldw..(p * NR + jj) * ldw + k];
                for (dst, &x) in panel[jj..].iter_mut().step_by(NR).zip(row) {
                    *dst = x;
                }
            }
        }
    }

    /// Re-packs in place from a row-major `B[k][n]` with row stride `ldb`.
    pub fn repack_cols(&mut self, b: &[f32], ldb: usize, k: usize, n: usize) {
        assert!(k == 0 || b.len() >= (k - 1) * ldb + n, "matrix slice too short");
        self.reshape(k, n);
        if k == 0 {
            return;
        }
        let data = self.data.as_mut_slice();
        for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let (j0, w) = (p * NR, NR.min(n - p * NR));
            for kk in 0..k {
                let dst = &mut panel[kk * NR..(kk + 1) * NR];
                dst[..w].copy_from_slice(&b[kk * ldb + j0..kk * ldb + j0 + w]);
                dst[w..].fill(0.0);
            }
        }
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of column panels.
    pub fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Panel `p`: `k` rows of [`NR`] floats.
    pub fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * NR..(p + 1) * self.k * NR]
    }

    /// Element `B[kk][j]`.
    pub fn get(&self, kk: usize, j: usize) -> f32 {
        self.panel(j / NR)[kk * NR + j % NR]
    }

    /// Back to row-major `W[n][k]`.
    pub fn to_rows(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.n * self.k];
        for j in 0..self.n {
            for kk in 0..self.k {
                w[j * self.k + kk] = self.get(kk, j);
            }
        }
        w
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// The matrix as the kernels read it.
    pub(crate) fn view(&self) -> BView<'_> {
        BView { data: &self.data, k: self.k, n: self.n, ld: NR, panel_stride: self.k * NR }
    }
}

/// `B` as the kernels read it: panel `p` starts at `p · panel_stride`, and row `kk` of a panel is `ld`
/// floats after row `kk − 1`. Packed panels have `ld = NR`; a row-major `k × n` matrix read in place
/// has `ld` = its row stride and `panel_stride = NR` (then `n` must be a multiple of [`NR`], since
/// every panel row is read whole).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BView<'a> {
    data: &'a [f32],
    k: usize,
    n: usize,
    ld: usize,
    panel_stride: usize,
}

impl<'a> BView<'a> {
    /// One packed panel set: `data` holds `n.div_ceil(NR)` panels of `k` rows of [`NR`] floats.
    pub fn packed(data: &'a [f32], k: usize, n: usize) -> Self {
        assert!(data.len() >= n.div_ceil(NR) * k * NR, "packed B: slice too short");
        BView { data, k, n, ld: NR, panel_stride: k * NR }
    }

    /// A row-major `k × n` matrix with row stride `ld`, read in place.
    pub fn strided(data: &'a [f32], k: usize, n: usize, ld: usize) -> Self {
        assert!(n.is_multiple_of(NR), "a strided B needs n ({n}) to be a multiple of {NR}");
        assert!(k == 0 || data.len() >= (k - 1) * ld + n, "strided B: slice too short");
        BView { data, k, n, ld, panel_stride: NR }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Row stride inside a panel.
    pub fn ld(&self) -> usize {
        self.ld
    }

    /// Start of panel `p` (`k` rows of 32 floats, `ld` apart).
    pub fn panel_ptr(&self, p: usize) -> *const f32 {
        assert!(p < self.panels());
        // SAFETY: panel p < panels starts inside `data` (checked at construction).
        unsafe { self.data.as_ptr().add(p * self.panel_stride) }
    }

    /// Element `B[kk][j]`.
    pub fn get(&self, kk: usize, j: usize) -> f32 {
        self.data[(j / NR) * self.panel_stride + kk * self.ld + j % NR]
    }
}

/// Element-wise function applied after the bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// Exact GELU, `x/2 · (1 + erf(x/√2))` (PyTorch's default `gelu`).
    Gelu,
}

/// What happens to each accumulated dot product before it is stored:
/// `c[i][j] = act(alpha · acc + bias[j]) + residual[i][j]`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// Scale of the dot product.
    pub alpha: f32,
    /// Per-column bias, `n` values.
    pub bias: Option<&'a [f32]>,
    /// Activation after the bias.
    pub act: Activation,
    /// Matrix added last (`m` rows of stride `ld`), e.g. a residual connection.
    pub residual: Option<(&'a [f32], usize)>,
    /// Per-row factor multiplied into `alpha` (e.g. the softmax normalisation of attention rows).
    pub row_scale: Option<&'a [f32]>,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Self { alpha: 1.0, bias: None, act: Activation::None, residual: None, row_scale: None }
    }
}

impl<'a> Epilogue<'a> {
    /// The factor of row `i`: `alpha`, times `row_scale[i]` when set.
    #[inline]
    pub fn scale(&self, i: usize) -> f32 {
        match self.row_scale {
            Some(r) => self.alpha * r[i],
            None => self.alpha,
        }
    }

    /// Bias only.
    pub fn bias(bias: &'a [f32]) -> Self {
        Self { bias: Some(bias), ..Self::default() }
    }

    /// The epilogue seen from row `i0` on (residual and row scales shifted; bias unchanged), for
    /// kernels that process a block of rows as if it started at row 0.
    pub fn rows(&self, i0: usize) -> Epilogue<'a> {
        Epilogue {
            residual: self.residual.map(|(r, ld)| (&r[(i0 * ld).min(r.len())..], ld)),
            row_scale: self.row_scale.map(|r| &r[i0.min(r.len())..]),
            ..*self
        }
    }

    /// The epilogue seen from column `j0` on (bias shifted; residual and row scales unchanged), for
    /// kernels that write a block of columns as if it started at column 0.
    pub fn columns(&self, j0: usize) -> Epilogue<'a> {
        Epilogue { bias: self.bias.map(|b| &b[j0..]), residual: self.residual.map(|(r, ld)| (&r[j0..], ld)), ..*self }
    }

    /// Scalar definition, used by the reference kernel and by the tails of SIMD kernels.
    #[inline]
    pub fn apply(&self, acc: f32, i: usize, j: usize) -> f32 {
        let mut v = acc * self.scale(i);
        if let Some(b) = self.bias {
            v += b[j];
        }
        if self.act == Activation::Gelu {
            v = crate::reference::gelu(v);
        }
        if let Some((r, ld)) = self.residual {
            v += r[i * ld + j];
        }
        v
    }
}

/// One GEMM problem as the per-ISA kernels see it. `c` is raw because threads write disjoint column
/// panels of it concurrently.
#[derive(Clone, Copy)]
pub(crate) struct GemmF32Args<'a> {
    pub a: &'a [f32],
    pub lda: usize,
    pub b: BView<'a>,
    pub c: SendPtr<f32>,
    pub ldc: usize,
    pub epi: Epilogue<'a>,
}

/// A per-ISA GEMM kernel: computes rows `rows` × column panels `panels` of `C`.
///
/// # Safety
/// `args` must have passed [`check`], `rows ⊆ 0..m`, `panels ⊆ 0..b.panels()`; concurrent calls on the
/// same `C` must get disjoint blocks.
pub(crate) type GemmF32Kernel = unsafe fn(&GemmF32Args<'_>, Range<usize>, Range<usize>);

fn check(a: &[f32], lda: usize, m: usize, b: &PackedF32, c: &[f32], ldc: usize, epi: &Epilogue) {
    let (k, n) = (b.k(), b.n());
    assert!(lda >= k && ldc >= n, "gemm_f32: strides lda={lda} ldc={ldc} smaller than k={k} n={n}");
    if m > 0 {
        assert!(a.len() >= (m - 1) * lda + k, "gemm_f32: A holds {} values, needs {m}×{k} at stride {lda}", a.len());
        assert!(c.len() >= (m - 1) * ldc + n, "gemm_f32: C holds {} values, needs {m}×{n} at stride {ldc}", c.len());
        if let Some((r, ld)) = epi.residual {
            assert!(ld >= n && r.len() >= (m - 1) * ld + n, "gemm_f32: residual too short");
        }
        if let Some(r) = epi.row_scale {
            assert!(r.len() >= m, "gemm_f32: row_scale too short");
        }
    }
    if let Some(bias) = epi.bias {
        assert_eq!(bias.len(), n, "gemm_f32: bias has {} values for n={n}", bias.len());
    }
}

/// `C = act(alpha · A·B + bias) + residual` on the current rayon pool, with the dispatched kernel.
/// Column panels are split across threads.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(a: &[f32], lda: usize, m: usize, b: &PackedF32, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    check(a, lda, m, b, c, ldc, epi);
    let args = GemmF32Args { a, lda, b: b.view(), c: SendPtr(c.as_mut_ptr()), ldc, epi: *epi };
    let kernel = dispatch::table().gemm_f32;
    par::for_each_chunk(b.panels(), |panels| {
        // SAFETY: `check` validated the shapes; chunks of `for_each_chunk` are disjoint panel ranges.
        unsafe { kernel(&args, panels, 0..m) }
    });
}

/// Several GEMMs reading the same `A` (e.g. query, key and value) in one parallel section: thread `t`
/// computes the `t`-th share of every output's column panels.
pub fn gemm_f32_group(a: &[f32], lda: usize, m: usize, jobs: Vec<(&PackedF32, &mut [f32], usize, Epilogue)>) {
    for (b, c, ldc, epi) in &jobs {
        check(a, lda, m, b, c, *ldc, epi);
    }
    let kernel = dispatch::table().gemm_f32;
    let args: Vec<GemmF32Args> = jobs
        .into_iter()
        .map(|(b, c, ldc, epi)| GemmF32Args { a, lda, b: b.view(), c: SendPtr(c.as_mut_ptr()), ldc, epi })
        .collect();
    let parts = par::threads().min(args.iter().map(|g| g.b.panels()).max().unwrap_or(0)).max(1);
    par::for_each_chunk(parts, |ts| {
        for t in ts {
            for g in &args {
                let panels = par::chunk(g.b.panels(), parts, t);
                // SAFETY: each job was checked; shares of one job's panels are disjoint across threads.
                unsafe { kernel(g, panels, 0..m) };
            }
        }
    });
}

/// Single-threaded GEMM with the kernel of a given table (tests, benchmarks, nested use).
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_with(
    table: &dispatch::Table,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedF32,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
) {
    check(a, lda, m, b, c, ldc, epi);
    let args = GemmF32Args { a, lda, b: b.view(), c: SendPtr(c.as_mut_ptr()), ldc, epi: *epi };
    // SAFETY: `check` validated the shapes; a single call covers all panels.
    unsafe { (table.gemm_f32)(&args, 0..b.panels(), 0..m) }
}

/// Tolerance of an f32 dot product of length `k` against the scalar reference, relative to
/// `Σ|a·b|`: the reference rounds after every multiply and add, SIMD kernels fuse them and may
/// reorder. Two roundings per term bound the difference by `2k·ε·Σ|a·b|`.
pub fn dot_tolerance(k: usize, abs_sum: f32) -> f32 {
    2.0 * (k.max(1) as f32) * f32::EPSILON * abs_sum + 1e-30
}
