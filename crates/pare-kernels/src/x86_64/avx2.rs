//! AVX2 + FMA f32 kernels: a 6×16 register-blocked GEMM over half panels, LayerNorm, softmax.

use crate::gemm_f32::{Activation, Epilogue, GemmF32Args, NR};
use crate::gemm_i8::{GemmI8Args, I8Layout, OutPtr};
use crate::quant::{ActQuant, row_params};
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows per GEMM tile: 6 rows × 2 vectors = 12 accumulators of the 16 ymm registers.
const MR: usize = 6;

/// `e^x` (Cephes, ≤ 2 ulp); 0 below −87.3.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp(x: __m256) -> __m256 {
    let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.336_54));
    let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.376_26)), _mm256_set1_ps(-87.336_54));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_9e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    // 2^n through the exponent field; n ∈ [−126, 127] after the clamps above.
    let pow2 =
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127))));
    _mm256_and_ps(_mm256_mul_ps(p, pow2), keep)
}

/// `erf(x)`, Eigen's rational approximation on [−4, 4].
#[target_feature(enable = "avx2,fma")]
#[inline]
fn erf(x: __m256) -> __m256 {
    let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(4.0)), _mm256_set1_ps(-4.0));
    let x2 = _mm256_mul_ps(x, x);
    let mut p = _mm256_set1_ps(-2.726_142_3e-10);
    for c in [2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2] {
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(c));
    }
    let mut q = _mm256_set1_ps(-1.456_607_2e-5);
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(c));
    }
    _mm256_div_ps(_mm256_mul_ps(x, p), q)
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn gelu(x: __m256) -> __m256 {
    let e = erf(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
    let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(super::avx512::GELU_ZERO_BELOW));
    let g = _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5)), _mm256_add_ps(e, _mm256_set1_ps(1.0)));
    _mm256_and_ps(g, keep)
}

/// Inner-dimension block: a 16-column slice of B (`KC` × 16 floats, 24 KB) stays in L1 (32 KB on the
/// smallest AVX2 cores) while the row tiles of a row block pass over it.
const KC: usize = 384;
/// Rows per row block: their slice of A (`MC` × `KC` floats, 216 KB) stays in L2 while every column
/// panel passes over it.
const MC: usize = 144;

/// AVX2 GEMM over the column panels `panels`, each done as two halves of 16 columns. `K` goes in
/// blocks of [`KC`] (partial sums of earlier blocks wait in C; the epilogue runs with the last block)
/// and rows in blocks of [`MC`].
///
/// # Safety
/// The CPU has AVX2 and FMA; `args` passed `gemm_f32::check`; no other thread writes these panels.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_f32(args: &GemmF32Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    let (n, k) = (args.b.n(), args.b.k());
    let mut k0 = 0;
    loop {
        let kb = KC.min(k - k0);
        let (first, last) = (k0 == 0, k0 + kb == k);
        let mut i0 = rows.start;
        while i0 < rows.end {
            let mb = MC.min(rows.end - i0);
            // Row tiles of balanced sizes (MR or MR − 1 rows), so no tile is left with one or two rows.
            let tiles = mb.div_ceil(MR);
            for p in panels.clone() {
                for half in 0..2 {
                    let j0 = p * NR + half * 16;
                    if j0 >= n {
                        break;
                    }
                    // The first row tile of a panel also pulls the next panel's rows of this inner block
                    // towards L1: without it, every panel starts with misses on B.
                    let next = (half == 0 && p + 1 < panels.end)
                        // SAFETY: panel p + 1 exists; rows k0.. are inside it.
                        .then(|| unsafe { args.b.panel_ptr(p + 1).add(k0 * args.b.ld()) });
                    for t in 0..tiles {
                        let blk = Block { p, half, k0, kb, first, last, prefetch: if t == 0 { next } else { None } };
                        let r = crate::par::chunk(mb, tiles, t);
                        let i = i0 + r.start;
                        // SAFETY: row i, column k0 lie inside A (k0 ≤ k).
                        let at = ATile { a: unsafe { args.a.as_ptr().add(i * args.lda + k0) }, rs: args.lda, ks: 1 };
                        // SAFETY: rows i .. i + r.len() lie inside A and C, columns j0.. inside panel p,
                        // inner indices k0 .. k0 + kb inside k; `at` covers the tile.
                        unsafe {
                            match r.len() {
                                6 => tile::<6>(args, &at, i, &blk),
                                5 => tile::<5>(args, &at, i, &blk),
                                4 => tile::<4>(args, &at, i, &blk),
                                3 => tile::<3>(args, &at, i, &blk),
                                2 => tile::<2>(args, &at, i, &blk),
                                _ => tile::<1>(args, &at, i, &blk),
                            }
                        }
                    }
                }
            }
            i0 += mb;
        }
        k0 += kb;
        if k0 >= k {
            break;
        }
    }
}

/// Where a tile reads A: element (row `r`, inner index `kk`) of the tile at `a + r·rs + kk·ks`.
struct ATile {
    a: *const f32,
    rs: usize,
    ks: usize,
}

/// One block of the f32 GEMM: half `half` of panel `p`, inner indices `k0 .. k0 + kb`.
struct Block {
    p: usize,
    half: usize,
    k0: usize,
    kb: usize,
    /// The first inner block: C is overwritten, not accumulated.
    first: bool,
    /// The last inner block: the epilogue runs.
    last: bool,
    /// Rows of B (the same inner block of the next panel) to prefetch while this tile runs.
    prefetch: Option<*const f32>,
}

/// Lanes `0 .. w` of an AVX2 mask (`w ≤ 8`).
#[target_feature(enable = "avx2")]
#[inline]
fn mask8(w: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(w.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Rows `i0 .. i0+R` × the 16 columns of `blk` of C, reading A through `at`.
///
/// # Safety
/// As [`gemm_f32`], with `i0 + R ≤ m`, the block's first column `< n`, and `at` covering R rows ×
/// `blk.kb` inner indices.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(args: &GemmF32Args<'_>, at: &ATile, i0: usize, blk: &Block) {
    let ldb = args.b.ld();
    // SAFETY: offset 16·half and rows k0.. stay inside the panel (k rows of 32 readable floats).
    let b = unsafe { args.b.panel_ptr(blk.p).add(blk.half * 16 + blk.k0 * ldb) };
    let (a, rs, ks) = (at.a, at.rs, at.ks);
    let mut c0 = [_mm256_setzero_ps(); R];
    let mut c1 = [_mm256_setzero_ps(); R];
    for kk in 0..blk.kb {
        // SAFETY: 16 floats at row k0 + kk of the panel (rows `ldb` apart, each with 32 readable floats).
        let (b0, b1) = unsafe { (_mm256_loadu_ps(b.add(kk * ldb)), _mm256_loadu_ps(b.add(kk * ldb + 8))) };
        if let Some(pf) = blk.prefetch {
            // SAFETY: prefetches never fault; the address is inside the next panel anyway.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(pf.add(kk * ldb).cast());
                _mm_prefetch::<_MM_HINT_T0>(pf.add(kk * ldb + 16).cast());
            }
        }
        for r in 0..R {
            // SAFETY: element (r, kk) of the tile (caller's contract on `at`).
            let av = _mm256_broadcast_ss(unsafe { &*a.add(r * rs + kk * ks) });
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
        }
    }
    let j0 = blk.p * NR + blk.half * 16;
    let w = 16.min(args.b.n() - j0);
    let (m0, m1) = (mask8(w), mask8(w.saturating_sub(8)));
    let full = w == 16;
    for r in 0..R {
        let i = i0 + r;
        // SAFETY: row i, columns j0 .. j0 + w of C are ours.
        let cp = unsafe { args.c.get().add(i * args.ldc + j0) };
        let (mut v0, mut v1) = (c0[r], c1[r]);
        if !blk.first {
            // SAFETY: as above; the partial sums of the earlier inner blocks.
            unsafe {
                (v0, v1) = (_mm256_add_ps(v0, load8(cp, m0, full)), _mm256_add_ps(v1, load8(cp.add(8), m1, full)))
            };
        }
        if blk.last {
            let s = _mm256_set1_ps(args.epi.scale(i));
            // SAFETY: bias and residual hold columns j0 .. j0 + w (and row i), checked shapes.
            unsafe {
                (v0, v1) = finish16(&args.epi, _mm256_mul_ps(v0, s), _mm256_mul_ps(v1, s), i, j0, (m0, m1), full)
            };
        }
        // SAFETY: as above.
        unsafe {
            store8(cp, v0, m0, full);
            store8(cp.add(8), v1, m1, full);
        }
    }
}

/// 8 floats from `p`, only the lanes of `mask` unless `full`.
///
/// # Safety
/// The lanes read are inside one allocation.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load8(p: *const f32, mask: __m256i, full: bool) -> __m256 {
    // SAFETY: forwarded contract.
    unsafe { if full { _mm256_loadu_ps(p) } else { _mm256_maskload_ps(p, mask) } }
}

/// Stores the lanes of `mask` (all when `full`) of `v` at `p`.
///
/// # Safety
/// The lanes written are inside one allocation that the caller may write.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store8(p: *mut f32, v: __m256, mask: __m256i, full: bool) {
    // SAFETY: forwarded contract.
    unsafe { if full { _mm256_storeu_ps(p, v) } else { _mm256_maskstore_ps(p, mask, v) } }
}

/// The epilogue after scaling, on 16 values of row `i` from column `j0` (lanes of `masks` real, all
/// when `full`): bias, activation, residual, in the order of [`Epilogue::apply`].
///
/// # Safety
/// The CPU has AVX2 and FMA; bias and residual (when set) hold the masked columns (and row `i`).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn finish16(
    epi: &Epilogue<'_>,
    v0: __m256,
    v1: __m256,
    i: usize,
    j0: usize,
    masks: (__m256i, __m256i),
    full: bool,
) -> (__m256, __m256) {
    // SAFETY: forwarded contract, columns j0 .. j0 + 8 and j0 + 8 .. j0 + 16.
    unsafe { (finish8(epi, v0, i, j0, masks.0, full), finish8(epi, v1, i, j0 + 8, masks.1, full)) }
}

/// [`finish16`] on 8 values from column `j0`.
///
/// # Safety
/// As [`finish16`].
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn finish8(
    epi: &Epilogue<'_>,
    mut v: __m256,
    i: usize,
    j0: usize,
    mask: __m256i,
    full: bool,
) -> __m256 {
    if let Some(bias) = epi.bias {
        // SAFETY: masked load of columns j0 .. of the n-long bias.
        v = _mm256_add_ps(v, unsafe { load8(bias.as_ptr().add(j0), mask, full) });
    }
    if epi.act == Activation::Gelu {
        v = gelu(v);
    }
    if let Some((res, ld)) = epi.residual {
        // SAFETY: masked load of row i, columns j0 .., of the checked residual.
        v = _mm256_add_ps(v, unsafe { load8(res.as_ptr().add(i * ld + j0), mask, full) });
    }
    v
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// LayerNorm over whole rows (two-pass variance); columns past the last multiple of 8 in scalar.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x.len()` is a multiple of `gamma.len() == beta.len()`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let cols = gamma.len();
    let full = cols / 8 * 8;
    let inv_n = 1.0 / cols as f32;
    for row in x.chunks_exact_mut(cols) {
        let p = row.as_mut_ptr();
        let mut s = _mm256_setzero_ps();
        for j in (0..full).step_by(8) {
            // SAFETY: j + 8 ≤ full ≤ cols.
            s = _mm256_add_ps(s, unsafe { _mm256_loadu_ps(p.add(j)) });
        }
        let mean = (hsum(s) + row[full..].iter().sum::<f32>()) * inv_n;
        let meanv = _mm256_set1_ps(mean);
        let mut q = _mm256_setzero_ps();
        for j in (0..full).step_by(8) {
            // SAFETY: j + 8 ≤ full ≤ cols.
            let d = _mm256_sub_ps(unsafe { _mm256_loadu_ps(p.add(j)) }, meanv);
            q = _mm256_fmadd_ps(d, d, q);
        }
        let var = (hsum(q) + row[full..].iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()) * inv_n;
        let inv = 1.0 / (var + eps).sqrt();
        let invv = _mm256_set1_ps(inv);
        for j in (0..full).step_by(8) {
            // SAFETY: j + 8 ≤ full ≤ cols for the row, gamma and beta.
            unsafe {
                let v = _mm256_sub_ps(_mm256_loadu_ps(p.add(j)), meanv);
                let y = _mm256_fmadd_ps(
                    _mm256_mul_ps(v, invv),
                    _mm256_loadu_ps(gamma.as_ptr().add(j)),
                    _mm256_loadu_ps(beta.as_ptr().add(j)),
                );
                _mm256_storeu_ps(p.add(j), y);
            }
        }
        for j in full..cols {
            row[j] = (row[j] - mean) * inv * gamma[j] + beta[j];
        }
    }
}

/// Softmax numerator of one row (`exp(row + bias − max)`), returning the sum.
///
/// # Safety
/// The CPU has AVX2 and FMA; `bias`, when given, has `row.len()` values.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn softmax(row: &mut [f32], bias: Option<&[f32]>) -> f32 {
    if let Some(b) = bias {
        for (v, b) in row.iter_mut().zip(b) {
            *v += b;
        }
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return 0.0;
    }
    let n = row.len();
    let full = n / 8 * 8;
    let p = row.as_mut_ptr();
    let maxv = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    for j in (0..full).step_by(8) {
        // SAFETY: j + 8 ≤ full ≤ n.
        unsafe {
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(p.add(j)), maxv));
            sum = _mm256_add_ps(sum, e);
            _mm256_storeu_ps(p.add(j), e);
        }
    }
    let mut total = hsum(sum);
    for v in &mut row[full..] {
        *v = (*v - max).exp();
        total += *v;
    }
    total
}

/// Integer GEMM for AVX2 on [`I8Layout::Pairs16`] weights: `vpmaddwd` of activation pairs (u8
/// widened to i16) against weight pairs (s8 widened to i16), exact for every u8 × s8 product; 6 rows ×
/// 16 columns per tile (12 accumulators), the dequantising epilogue in registers.
///
/// # Safety
/// The CPU has AVX2 and FMA; `args` passed `gemm_i8::check`; panels are ours alone.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_u8s8(args: &GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    assert_eq!(args.b.layout(), I8Layout::Pairs16, "gemm_u8s8_6x16_avx2 reads Pairs16 weights");
    assert!(args.a16.len() >= args.a.m * args.a.ld, "gemm_u8s8_6x16_avx2 needs widened activations");
    // SAFETY: forwarded contract; the tile kernel matches the layout.
    unsafe {
        for_tiles(
            args,
            panels,
            rows,
            tile_i16::<6>,
            tile_i16::<5>,
            tile_i16::<4>,
            tile_i16::<3>,
            tile_i16::<2>,
            tile_i16::<1>,
        )
    }
}

/// An integer tile kernel: rows `i0 .. i0 + R` × columns `32p + 16·half .. + 16`.
pub(crate) type I8Tile = unsafe fn(&GemmI8Args<'_>, usize, usize, usize);

/// Runs the tiles of rows `rows` × panels `panels` in halves of 16 columns, with row tiles of 5 or 6
/// rows (balanced, so none is left with one or two rows).
///
/// # Safety
/// The CPU has AVX2; `args` passed `gemm_i8::check`; the tile kernels suit the weights' layout.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn for_tiles(
    args: &GemmI8Args<'_>,
    panels: Range<usize>,
    rows: Range<usize>,
    t6: I8Tile,
    t5: I8Tile,
    t4: I8Tile,
    t3: I8Tile,
    t2: I8Tile,
    t1: I8Tile,
) {
    let n = args.b.n();
    let m = rows.len();
    let tiles = m.div_ceil(6);
    for p in panels {
        for half in 0..2 {
            if p * NR + 16 * half >= n {
                break;
            }
            for t in 0..tiles {
                let r = crate::par::chunk(m, tiles, t);
                let i = rows.start + r.start;
                let f = match r.len() {
                    6 => t6,
                    5 => t5,
                    4 => t4,
                    3 => t3,
                    2 => t2,
                    _ => t1,
                };
                // SAFETY: rows i .. i + r.len() exist, column 32p + 16·half < n.
                unsafe { f(args, i, p, half) };
            }
        }
    }
}

/// # Safety
/// As [`gemm_u8s8`], with `i0 + R ≤ m` and column `32p + 16·half < n`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_i16<const R: usize>(args: &GemmI8Args<'_>, i0: usize, p: usize, half: usize) {
    let (a, b) = (args.a, args.b);
    let ld = a.ld;
    // Per pair of k the panel holds 32 columns × 2 i16; this half starts 16 columns in.
    // SAFETY: offset 32·half stays inside each 64-value group of the panel.
    let bp = unsafe { b.panel16(p).as_ptr().add(32 * half) };
    // SAFETY: row i0 exists in the widened activations (m · ld values).
    let ap = unsafe { args.a16.as_ptr().add(i0 * ld) };
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for g in 0..b.k_padded() / 2 {
        // SAFETY: 16 + 16 i16 of group g of the panel.
        let (w0, w1) =
            unsafe { (_mm256_load_si256(bp.add(64 * g).cast()), _mm256_load_si256(bp.add(64 * g + 16).cast())) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: values 2g, 2g + 1 of row i0 + r (ld ≥ k_padded).
            let av = _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(ap.add(r * ld + 2 * g).cast::<i32>()) });
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, w0));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, w1));
        }
    }
    // SAFETY: forwarded contract; the activations were centred.
    unsafe { finish_i8(args, i0, p * NR + 16 * half, &acc, true) }
}

/// The integer epilogue of a tile of rows `i0 ..` × 16 columns from `j0` (`acc[r]` holds row
/// `i0 + r`; `centred`: the sums of centred activations `Σ (qx − zx)·qw`, else `Σ qx·qw`): raw
/// accumulators `Σ qx·qw`, or dequantized with the same operations, in the same order, as
/// `GemmI8Args::store_scalar` (whose first step, the zero-point correction, centred sums have made).
///
/// # Safety
/// The CPU has AVX2 and FMA; rows and columns lie inside the checked output and are ours.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn finish_i8(args: &GemmI8Args<'_>, i0: usize, j0: usize, acc: &[[__m256i; 2]], centred: bool) {
    let (a, b) = (args.a, args.b);
    let w = 16.min(b.n() - j0);
    let (m0, m1) = (mask8(w), mask8(w.saturating_sub(8)));
    let full = w == 16;
    // SAFETY: column sums are padded to whole panels: 16 values from j0 exist.
    let (s0, s1) = unsafe {
        let cs = b.col_sums().as_ptr().add(j0);
        (_mm256_loadu_si256(cs.cast()), _mm256_loadu_si256(cs.add(8).cast()))
    };
    match args.out {
        OutPtr::I32 { c, ldc } => {
            for (r, v) in acc.iter().enumerate() {
                let (mut v0, mut v1) = (v[0], v[1]);
                if centred {
                    let z = _mm256_set1_epi32(a.zero[i0 + r]);
                    v0 = _mm256_add_epi32(v0, _mm256_mullo_epi32(z, s0));
                    v1 = _mm256_add_epi32(v1, _mm256_mullo_epi32(z, s1));
                }
                // SAFETY: row i0 + r, columns j0 .. j0 + w are ours.
                unsafe {
                    let cp = c.get().add((i0 + r) * ldc + j0).cast::<f32>();
                    store8(cp, _mm256_castsi256_ps(v0), m0, full);
                    store8(cp.add(8), _mm256_castsi256_ps(v1), m1, full);
                }
            }
        }
        OutPtr::F32 { c, ldc, epi } => {
            // Scales and outlier columns are padded to whole panels: full loads are in bounds.
            // SAFETY: 16 values from j0 in arrays of panels × 32.
            let (w0, w1) = unsafe {
                let sc = b.scales().as_ptr().add(j0);
                (_mm256_loadu_ps(sc), _mm256_loadu_ps(sc.add(8)))
            };
            let no = a.outlier_idx.len();
            // With the usual four outlier channels, their weight columns stay in registers across rows.
            let cols4: Option<[[__m256; 2]; 4]> = (no == 4).then(|| {
                std::array::from_fn(|t| {
                    // SAFETY: outlier column t holds panels × 32 floats.
                    unsafe {
                        let oc = b.outlier_column(t).as_ptr().add(j0);
                        [_mm256_loadu_ps(oc), _mm256_loadu_ps(oc.add(8))]
                    }
                })
            });
            let epi = Epilogue { alpha: 1.0, row_scale: None, ..epi };
            for (r, v) in acc.iter().enumerate() {
                let i = i0 + r;
                let sx = _mm256_set1_ps(a.scale[i]);
                let (mut c0, mut c1) = (v[0], v[1]);
                if !centred {
                    let z = _mm256_set1_epi32(a.zero[i]);
                    c0 = _mm256_sub_epi32(c0, _mm256_mullo_epi32(z, s0));
                    c1 = _mm256_sub_epi32(c1, _mm256_mullo_epi32(z, s1));
                }
                let mut v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(c0), _mm256_mul_ps(sx, w0));
                let mut v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(c1), _mm256_mul_ps(sx, w1));
                let xs = &a.outliers[i * no..(i + 1) * no];
                if let Some(cols) = &cols4 {
                    for t in 0..4 {
                        let xo = _mm256_set1_ps(xs[t]);
                        v0 = _mm256_fmadd_ps(xo, cols[t][0], v0);
                        v1 = _mm256_fmadd_ps(xo, cols[t][1], v1);
                    }
                } else {
                    for (t, &x) in xs.iter().enumerate() {
                        let xo = _mm256_set1_ps(x);
                        // SAFETY: outlier column t holds panels × 32 floats.
                        let (o0, o1) = unsafe {
                            let oc = b.outlier_column(t).as_ptr().add(j0);
                            (_mm256_loadu_ps(oc), _mm256_loadu_ps(oc.add(8)))
                        };
                        v0 = _mm256_fmadd_ps(xo, o0, v0);
                        v1 = _mm256_fmadd_ps(xo, o1, v1);
                    }
                }
                // SAFETY: row i, columns j0 .. j0 + w of the checked output (and of bias / residual).
                unsafe {
                    let (v0, v1) = finish16(&epi, v0, v1, i, j0, (m0, m1), full);
                    let cp = c.get().add(i * ldc + j0);
                    store8(cp, v0, m0, full);
                    store8(cp.add(8), v1, m1, full);
                }
            }
        }
    }
}

/// Activation quantizer for one row (see [`crate::quant`]); bit-identical to the reference. Full
/// blocks of 32 values go through saturating packs (the clamp to [0, 255] is the `packus`), the rest
/// through the scalar definition.
///
/// # Safety
/// The CPU has AVX2 and FMA; `q.len() ≥ row.len()`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_row(row: &[f32], q: &mut [u8], mode: ActQuant, skip: &[u32]) -> (f32, i32) {
    let n = row.len();
    assert!(q.len() >= n);
    // Range pass: whole vectors where no skipped channel falls, the rest value by value.
    let (mut lo, mut hi) = (_mm256_set1_ps(f32::INFINITY), _mm256_set1_ps(f32::NEG_INFINITY));
    let (mut slo, mut shi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut si = 0;
    let full = n / 8 * 8;
    for j in (0..n).step_by(8) {
        if j < full && (si >= skip.len() || skip[si] as usize >= j + 8) {
            // SAFETY: j + 8 ≤ full ≤ n.
            let v = unsafe { _mm256_loadu_ps(row.as_ptr().add(j)) };
            lo = _mm256_min_ps(lo, v);
            hi = _mm256_max_ps(hi, v);
            continue;
        }
        for (c, &v) in row.iter().enumerate().take((j + 8).min(n)).skip(j) {
            if si < skip.len() && skip[si] as usize == c {
                si += 1;
                continue;
            }
            slo = slo.min(v);
            shi = shi.max(v);
        }
    }
    let mut l = [0f32; 8];
    let mut h = [0f32; 8];
    // SAFETY: 8 floats each.
    unsafe {
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(h.as_mut_ptr(), hi);
    }
    let lo = l.iter().fold(slo, |a, &b| a.min(b));
    let hi = h.iter().fold(shi, |a, &b| a.max(b));
    let (scale, zero) = row_params(lo, hi, mode);
    let inv_s = 1.0 / scale;
    let inv = _mm256_set1_ps(inv_s);
    let (lim_lo, lim_hi) = (_mm256_set1_ps(-512.0), _mm256_set1_ps(512.0));
    let zv = _mm256_set1_epi32(zero);
    // packs/packus interleave 128-bit lanes; this puts the eight dwords of bytes back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let conv = |j: usize| {
        // SAFETY: callers pass j + 8 ≤ n.
        let v = unsafe { _mm256_loadu_ps(row.as_ptr().add(j)) };
        let t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, inv), lim_lo), lim_hi);
        _mm256_add_epi32(_mm256_cvtps_epi32(t), zv)
    };
    let full = n / 32 * 32;
    for j in (0..full).step_by(32) {
        let w01 = _mm256_packs_epi32(conv(j), conv(j + 8));
        let w23 = _mm256_packs_epi32(conv(j + 16), conv(j + 24));
        let b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), order);
        // SAFETY: 32 bytes at j + 32 ≤ n ≤ q.len().
        unsafe { _mm256_storeu_si256(q.as_mut_ptr().add(j).cast(), b) };
    }
    for j in full..n {
        q[j] = crate::quant::quantize_value(row[j], inv_s, zero);
    }
    q[n..].fill(zero as u8);
    for &c in skip {
        q[c as usize] = zero as u8;
    }
    (scale, zero)
}

/// Transposes the 8 × 8 block held in `r` (row `i` in `r[i]`): on return `r[c]` is column `c`.
#[target_feature(enable = "avx2")]
#[inline]
fn transpose8(r: &mut [__m256; 8]) {
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 { _mm256_unpacklo_ps(a, b) } else { _mm256_unpackhi_ps(a, b) }
    });
    // u[4g + c] holds, in each 128-bit lane, column c (of that lane's four) of rows 4g .. 4g + 4.
    let u: [__m256; 8] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, b) = (_mm256_castps_pd(t[4 * g + c / 2]), _mm256_castps_pd(t[4 * g + 2 + c / 2]));
        _mm256_castpd_ps(if c % 2 == 0 { _mm256_unpacklo_pd(a, b) } else { _mm256_unpackhi_pd(a, b) })
    });
    for c in 0..4 {
        r[c] = _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c]);
        r[4 + c] = _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c]);
    }
}

/// `at[c][i] = a[i][c]` by 8 × 8 blocks (rows past `m` and columns past `k` read as zeros).
///
/// # Safety
/// As [`crate::spmm::TransposeKernel`].
pub(crate) unsafe fn transpose_f32(a: &[f32], lda: usize, m: usize, k: usize, at: *mut f32, mp: usize) {
    // SAFETY: only installed when the CPU has AVX2; the caller's contract on `at`.
    unsafe { transpose_f32_impl(a, lda, m, k, at, mp) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_f32_impl(a: &[f32], lda: usize, m: usize, k: usize, at: *mut f32, mp: usize) {
    assert!(mp >= m);
    assert!(m == 0 || a.len() >= (m - 1) * lda + k);
    for i0 in (0..m).step_by(8) {
        for c0 in (0..k).step_by(8) {
            let cm = mask8(k - c0);
            let mut r: [__m256; 8] = std::array::from_fn(|i| {
                if i0 + i < m {
                    // SAFETY: masked to columns < k of row i0 + i < m.
                    unsafe { _mm256_maskload_ps(a.as_ptr().add((i0 + i) * lda + c0), cm) }
                } else {
                    _mm256_setzero_ps()
                }
            });
            transpose8(&mut r);
            let (tm, full) = (mask8(m - i0), m - i0 >= 8);
            for (c, v) in r.iter().enumerate().take(8.min(k - c0)) {
                // SAFETY: row c0 + c < k of Aᵀ, tokens i0 .. min(i0 + 8, m) (masked), inside `at`.
                unsafe { store8(at.add((c0 + c) * mp + i0), *v, tm, full) };
            }
        }
    }
}

/// `c[i][j] = epi(ct[j][i])` by 8 × 8 blocks.
///
/// # Safety
/// As [`crate::spmm::UntransposeKernel`].
pub(crate) unsafe fn untranspose_f32(
    ct: &[f32],
    mp: usize,
    n: usize,
    m: usize,
    c: *mut f32,
    ldc: usize,
    epi: &Epilogue,
) {
    // SAFETY: only installed when the CPU has AVX2 and FMA; the caller's contract on `c`.
    unsafe { untranspose_f32_impl(ct, mp, n, m, c, ldc, epi) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn untranspose_f32_impl(ct: &[f32], mp: usize, n: usize, m: usize, c: *mut f32, ldc: usize, epi: &Epilogue) {
    assert!(ct.len() >= n * mp && mp >= m && ldc >= n);
    let zero = _mm256_setzero_ps();
    for j0 in (0..n).step_by(8) {
        let w = 8.min(n - j0);
        let (mask, full) = (mask8(w), w == 8);
        for i0 in (0..m).step_by(8) {
            let mut r: [__m256; 8] = std::array::from_fn(|jj| {
                if jj < w && i0 + 8 <= mp {
                    // SAFETY: row j0 + jj < n of Cᵀ, tokens i0 .. i0 + 8 ≤ mp.
                    unsafe { _mm256_loadu_ps(ct.as_ptr().add((j0 + jj) * mp + i0)) }
                } else {
                    zero
                }
            });
            transpose8(&mut r);
            for (ii, v) in r.iter().enumerate().take(8.min(m - i0)) {
                let i = i0 + ii;
                let v = _mm256_mul_ps(*v, _mm256_set1_ps(epi.scale(i)));
                // SAFETY: row i < m, columns j0 .. j0 + w < n of C (and of bias / residual).
                unsafe {
                    let v = finish8(epi, v, i, j0, mask, full);
                    store8(c.add(i * ldc + j0), v, mask, full);
                }
            }
        }
    }
}

/// Sparse kernel: rows `rows` of `Cᵀ`. Tokens go by blocks of 32 (16 at the end); within a block,
/// columns by segments of 128 so the rows of `Aᵀ` it reads (16 KB) stay in L1; each row's nonzeros of
/// the segment feed two sets of accumulators in turn, so multiply-adds do not wait on each other.
/// Partial sums of later segments are added into `Cᵀ`.
///
/// # Safety
/// As [`crate::spmm::SpmmKernel`]; the CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn spmm_f32(args: &crate::spmm::SpmmArgs<'_>, rows: Range<usize>) {
    let mp = args.mp;
    let segs = args.w.segments();
    let mut m0 = 0;
    while m0 < mp {
        let wide = m0 + 32 <= mp;
        for s in 0..segs.max(1) {
            for j in rows.clone() {
                // SAFETY: forwarded contract; m0 + 32 ≤ mp, or m0 + 16 ≤ mp (mp is a multiple of 16).
                unsafe { if wide { spmm_block::<4>(args, j, s, m0) } else { spmm_block::<2>(args, j, s, m0) } };
            }
        }
        m0 += if wide { 32 } else { 16 };
    }
}

/// Segment `s` of row `j` of `Cᵀ`, tokens `m0 .. m0 + 8·L`: stored when `s == 0`, added otherwise.
///
/// # Safety
/// As [`spmm_f32`], with `m0 + 8·L ≤ mp`.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::needless_range_loop)] // `h` also selects the token offset 8·h
unsafe fn spmm_block<const L: usize>(args: &crate::spmm::SpmmArgs<'_>, j: usize, s: usize, m0: usize) {
    let mp = args.mp;
    // SAFETY: tokens m0 .. m0 + 8L of every row of Aᵀ exist (mp ≥ m0 + 8L, k rows).
    let at = unsafe { args.at.as_ptr().add(m0) };
    let (cols, vals) = if args.w.segments() == 0 { (&[][..], &[][..]) } else { args.w.row_segment(j, s) };
    let mut acc = [[_mm256_setzero_ps(); L]; 2];
    let (cq, vq) = (cols.chunks_exact(2), vals.chunks_exact(2));
    let (cr, vr) = (cq.remainder(), vq.remainder());
    for (c2, v2) in cq.zip(vq) {
        for u in 0..2 {
            let w = _mm256_set1_ps(v2[u]);
            // SAFETY: column index < k (CSR invariant), so the row exists in Aᵀ.
            let p = unsafe { at.add(c2[u] as usize * mp) };
            for h in 0..L {
                // SAFETY: as above.
                acc[u][h] = _mm256_fmadd_ps(w, unsafe { _mm256_loadu_ps(p.add(8 * h)) }, acc[u][h]);
            }
        }
    }
    for (&c, &v) in cr.iter().zip(vr) {
        let w = _mm256_set1_ps(v);
        // SAFETY: as above.
        let p = unsafe { at.add(c as usize * mp) };
        for h in 0..L {
            // SAFETY: as above.
            acc[0][h] = _mm256_fmadd_ps(w, unsafe { _mm256_loadu_ps(p.add(8 * h)) }, acc[0][h]);
        }
    }
    // SAFETY: row j of Cᵀ is ours; tokens m0 .. m0 + 8L ≤ mp.
    let out = unsafe { args.ct.get().add(j * mp + m0) };
    for h in 0..L {
        let mut v = _mm256_add_ps(acc[0][h], acc[1][h]);
        if s > 0 {
            // SAFETY: as above.
            v = _mm256_add_ps(v, unsafe { _mm256_loadu_ps(out.add(8 * h)) });
        }
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(out.add(8 * h), v) };
    }
}

/// Sparse integer kernel: per row and block of 16 tokens, each nonzero multiplies the block's u8
/// activations (widened to i16) with `vpmaddwd` against (v, 0) and (0, v) pairs, giving the even and
/// odd tokens' products exactly in i32 lanes; the epilogue dequantizes with the same operations as
/// the scalar definition.
///
/// # Safety
/// As [`crate::spmm_i8::SpmmI8Kernel`]; the CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn spmm_u8s8(args: &crate::spmm_i8::SpmmI8Args<'_>, rows: Range<usize>) {
    let mp = args.mp;
    let no = args.w.outliers().len();
    for j in rows {
        let (cols, vals) = args.w.row(j);
        let (rs, sw) = (_mm256_set1_epi32(args.row_sum(j)), _mm256_set1_ps(args.scale(j)));
        for m0 in (0..mp).step_by(16) {
            let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for (&c, &v) in cols.iter().zip(vals) {
                // SAFETY: 16 bytes at tokens m0 .. m0 + 16 ≤ mp of row c < k of qᵀ.
                let x =
                    _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(args.qt.as_ptr().add(c as usize * mp + m0).cast()) });
                let v = v as i16 as u16 as i32;
                even = _mm256_add_epi32(even, _mm256_madd_epi16(x, _mm256_set1_epi32(v)));
                odd = _mm256_add_epi32(odd, _mm256_madd_epi16(x, _mm256_set1_epi32(v << 16)));
            }
            // Lane t of `even` is token 2t, of `odd` token 2t + 1: interleave back to token order.
            let (lo, hi) = (_mm256_unpacklo_epi32(even, odd), _mm256_unpackhi_epi32(even, odd));
            let acc = [_mm256_permute2x128_si256::<0x20>(lo, hi), _mm256_permute2x128_si256::<0x31>(lo, hi)];
            for (h, acc) in acc.into_iter().enumerate() {
                let i = m0 + 8 * h;
                // SAFETY: per-token arrays hold mp values; i + 8 ≤ mp.
                let (z, sx) = unsafe {
                    (_mm256_loadu_si256(args.zx.as_ptr().add(i).cast()), _mm256_loadu_ps(args.sx.as_ptr().add(i)))
                };
                let corr = _mm256_sub_epi32(acc, _mm256_mullo_epi32(z, rs));
                let mut f = _mm256_mul_ps(_mm256_cvtepi32_ps(corr), _mm256_mul_ps(sx, sw));
                for t in 0..no {
                    // SAFETY: outlier values are `[outliers][mp]`.
                    let xo = unsafe { _mm256_loadu_ps(args.xo.as_ptr().add(t * mp + i)) };
                    f = _mm256_fmadd_ps(xo, _mm256_set1_ps(args.outlier_w(t, j)), f);
                }
                // SAFETY: row j of Cᵀ is ours; tokens i .. i + 8 ≤ mp.
                unsafe { _mm256_storeu_ps(args.ct.get().add(j * mp + i), f) };
            }
        }
    }
}

/// f64 dot product: four accumulators of 4 lanes (FMA), then the tail in scalar.
pub(crate) fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    // SAFETY: only installed when the CPU has this tier.
    unsafe { dot_f64_impl(a, b) }
}

#[target_feature(enable = "avx2,fma")]
fn dot_f64_impl(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let mut acc = [_mm256_setzero_pd(); 4];
    let full = n / 16 * 16;
    for i in (0..full).step_by(16) {
        for (t, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16 ≤ full ≤ n values of both slices.
            unsafe {
                *acc = _mm256_fmadd_pd(
                    _mm256_loadu_pd(a.as_ptr().add(i + 4 * t)),
                    _mm256_loadu_pd(b.as_ptr().add(i + 4 * t)),
                    *acc,
                );
            }
        }
    }
    let head = {
        let s = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
        let h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
        _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)))
    };
    head + a[full..n].iter().zip(&b[full..n]).map(|(x, y)| x * y).sum::<f64>()
}

/// `y += alpha·x`, 4 lanes at a time (FMA).
pub(crate) fn axpy_f64(y: &mut [f64], alpha: f64, x: &[f64]) {
    // SAFETY: only installed when the CPU has this tier.
    unsafe { axpy_f64_impl(y, alpha, x) }
}

#[target_feature(enable = "avx2,fma")]
fn axpy_f64_impl(y: &mut [f64], alpha: f64, x: &[f64]) {
    let n = y.len().min(x.len());
    let av = _mm256_set1_pd(alpha);
    let full = n / 4 * 4;
    for i in (0..full).step_by(4) {
        // SAFETY: i + 4 ≤ full ≤ n values of both slices.
        unsafe {
            let v = _mm256_fmadd_pd(av, _mm256_loadu_pd(x.as_ptr().add(i)), _mm256_loadu_pd(y.as_ptr().add(i)));
            _mm256_storeu_pd(y.as_mut_ptr().add(i), v);
        }
    }
    for (y, x) in y[full..n].iter_mut().zip(&x[full..n]) {
        *y += alpha * x;
    }
}

/// One block type as the AVX2 kernels read it, 32 weights (one block, or one sub-block of a
/// super-block) at a time: quants widened to f32 with offsets removed (and multiplied by their
/// sub-block scales, which stays exact); the product with 32 activations is `d · Σ q·x`
/// (+ `m · Σ x` for types with a minimum).
trait Block256 {
    const BYTES: usize;
    /// 32-weight sub-blocks per block.
    const SUBS: usize = 1;
    /// Byte offset of the f16 scale `d`.
    const SCALE_AT: usize = 0;
    /// Whether the block has a minimum `m` ([`Block256::min`]).
    const MIN: bool;
    /// Sub-block `c`'s quants.
    ///
    /// # Safety
    /// `p` points at one whole block, `c < SUBS`; the CPU has AVX2, FMA and F16C.
    unsafe fn quants(p: *const u8, c: usize) -> [__m256; 4];
    /// Sub-block `c`'s minimum, added to every weight: the f16 at byte 2 by default.
    ///
    /// # Safety
    /// As [`Block256::quants`].
    unsafe fn min(p: *const u8, _c: usize) -> __m256 {
        // SAFETY: the caller's block holds its minimum at byte 2.
        unsafe { half256(p.add(2)) }
    }
    /// Sub-block `c`'s weights, exactly as the reference dequantizes them.
    ///
    /// # Safety
    /// As [`Block256::quants`].
    unsafe fn load(p: *const u8, c: usize) -> [__m256; 4] {
        // SAFETY: the caller's contract.
        unsafe {
            let q = Self::quants(p, c);
            let d = half256(p.add(Self::SCALE_AT));
            if Self::MIN {
                let m = Self::min(p, c);
                q.map(|v| _mm256_add_ps(_mm256_mul_ps(v, d), m))
            } else {
                q.map(|v| _mm256_mul_ps(v, d))
            }
        }
    }
}

/// The f16 at `p` converted and broadcast. Converting a broadcast (rather than one lane) keeps every
/// lane meaningful: with a single live lane the compiler inserts the value into whatever register is
/// at hand, often a live accumulator, and chains each block behind the previous one.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn half256(p: *const u8) -> __m256 {
    // SAFETY: the caller's block holds two bytes at p.
    let h = unsafe { (p as *const u16).read_unaligned() };
    _mm256_cvtph_ps(_mm_set1_epi16(h as i16))
}

/// 16 bytes as two sets of 8 widened to i32 and converted: signed when `SIGNED`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn widen16<const SIGNED: bool>(v: __m128i) -> [__m256; 2] {
    let hi = _mm_unpackhi_epi64(v, v);
    if SIGNED {
        [_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))]
    } else {
        [_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi))]
    }
}

struct Q40;
struct Q41;
struct Q80;
struct Q50;
struct Q51;
struct Q6K;
struct Q4K;
struct Q5K;

/// Sub-block `c` of a Q4_K/Q5_K super-block at `p`: its 32 nibbles (low ones of the run `c / 2` for
/// even `c`, high ones for odd) as two sets of 16 bytes, and its scale and minimum `-dmin · m`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn k_sub(p: *const u8, qs: usize, c: usize) -> ([__m128i; 2], f32) {
    let m4 = _mm_set1_epi8(0x0f);
    // SAFETY: a Q4_K/Q5_K block: scales at 4..16, 32 bytes of quants at qs + 32 · (c / 2).
    unsafe {
        let run = p.add(qs + 32 * (c / 2));
        let nib = |v: __m128i| {
            if c.is_multiple_of(2) { _mm_and_si128(v, m4) } else { _mm_and_si128(_mm_srli_epi16::<4>(v), m4) }
        };
        let (s, _) = crate::qblock::scale_min_k4(c, std::slice::from_raw_parts(p.add(4), 12));
        ([nib(_mm_loadu_si128(run as *const __m128i)), nib(_mm_loadu_si128(run.add(16) as *const __m128i))], s as f32)
    }
}

/// `-dmin · m` of sub-block `c` of a Q4_K/Q5_K super-block, broadcast (exact: an f16 times 6 bits).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn k_min(p: *const u8, c: usize) -> __m256 {
    // SAFETY: a Q4_K/Q5_K block: dmin at 2, scales at 4..16.
    unsafe {
        let (_, m) = crate::qblock::scale_min_k4(c, std::slice::from_raw_parts(p.add(4), 12));
        let dmin = crate::qblock::f16_to_f32([*p.add(2), *p.add(3)]);
        _mm256_set1_ps(-(dmin * m as f32))
    }
}

impl Block256 for Q4K {
    const BYTES: usize = 144;
    const SUBS: usize = 8;
    const MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, c: usize) -> [__m256; 4] {
        // SAFETY: a Q4_K block: quants at 16.
        let ([lo, hi], s) = unsafe { k_sub(p, 16, c) };
        let s = _mm256_set1_ps(s);
        let [a, b] = widen16::<false>(lo);
        let [e, f] = widen16::<false>(hi);
        [a, b, e, f].map(|v| _mm256_mul_ps(v, s))
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn min(p: *const u8, c: usize) -> __m256 {
        // SAFETY: the caller's Q4_K block.
        unsafe { k_min(p, c) }
    }
}

impl Block256 for Q5K {
    const BYTES: usize = 176;
    const SUBS: usize = 8;
    const MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, c: usize) -> [__m256; 4] {
        // SAFETY: a Q5_K block: qh at 16 (bit c of byte l: the fifth bit of weight 32c + l), quants at 48.
        let ([lo, hi], s) = unsafe { k_sub(p, 48, c) };
        let bit = _mm_set1_epi8(1u8.wrapping_shl(c as u32) as i8);
        let fifth = |v: __m128i| _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(v, bit), bit), _mm_set1_epi8(16));
        // SAFETY: 32 bytes of qh at 16.
        let (h0, h1) =
            unsafe { (_mm_loadu_si128(p.add(16) as *const __m128i), _mm_loadu_si128(p.add(32) as *const __m128i)) };
        let s = _mm256_set1_ps(s);
        let [a, b] = widen16::<false>(_mm_or_si128(lo, fifth(h0)));
        let [e, f] = widen16::<false>(_mm_or_si128(hi, fifth(h1)));
        [a, b, e, f].map(|v| _mm256_mul_ps(v, s))
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn min(p: *const u8, c: usize) -> __m256 {
        // SAFETY: the caller's Q5_K block.
        unsafe { k_min(p, c) }
    }
}

/// Weights `16g .. 16g + 16` of sub-block `c` of a Q6_K super-block at `p`, as signed bytes `q − 32`,
/// and their 16-weight scale. Sub-block `c`: half `c / 4`, part `c % 4` (the low or high nibbles of
/// the half's first or second 32 bytes of `ql`; bits `2 · part` of its `qh`). Shared with AVX-512.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn q6k_bytes(p: *const u8, c: usize, g: usize) -> (__m128i, f32) {
    let (h, part) = (c / 4, c % 4);
    let m4 = _mm_set1_epi8(0x0f);
    // SAFETY: a Q6_K block: ql at 0, qh at 128, scales at 192; 16 bytes of each from these offsets
    // lie inside it.
    unsafe {
        let ql = _mm_loadu_si128(p.add(64 * h + 32 * (part & 1) + 16 * g) as *const __m128i);
        let low = if part < 2 { _mm_and_si128(ql, m4) } else { _mm_and_si128(_mm_srli_epi16::<4>(ql), m4) };
        let qh = _mm_loadu_si128(p.add(128 + 32 * h + 16 * g) as *const __m128i);
        let high = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(2 * part as i32)), _mm_set1_epi8(3));
        let q = _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16::<4>(high)), _mm_set1_epi8(32));
        (q, *(p.add(192 + 8 * h + 2 * part + g) as *const i8) as f32)
    }
}

impl Block256 for Q6K {
    const BYTES: usize = 210;
    const SUBS: usize = 8;
    const SCALE_AT: usize = 208;
    const MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, c: usize) -> [__m256; 4] {
        let mut out = [_mm256_setzero_ps(); 4];
        for g in 0..2 {
            // SAFETY: the caller's Q6_K block, c < 8.
            let (q, s) = unsafe { q6k_bytes(p, c, g) };
            let s = _mm256_set1_ps(s);
            let [a, b] = widen16::<true>(q);
            out[2 * g] = _mm256_mul_ps(a, s);
            out[2 * g + 1] = _mm256_mul_ps(b, s);
        }
        out
    }
}

/// The fifth bits of a Q5 block (`qh`, u32 at `p`) as 16 in the 32-bit lanes of the weights that
/// have it, in the sets of 8 of [`nibble_lanes`]: bit `8g + i` shifted down to 0 by `vpsrlvd`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn fifth_lanes(p: *const u8) -> [__m256i; 4] {
    // SAFETY: the caller's block holds four bytes of qh at p.
    let qh = _mm256_set1_epi32(unsafe { (p as *const u32).read_unaligned() } as i32);
    let one = _mm256_set1_epi32(1);
    std::array::from_fn(|g| {
        let b = 8 * g as i32;
        let shift = _mm256_setr_epi32(b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7);
        _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srlv_epi32(qh, shift), one))
    })
}

impl Block256 for Q50 {
    const BYTES: usize = 22;
    const MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> [__m256; 4] {
        // SAFETY: a Q5_0 block: qh at 2, nibbles at 6.
        let (q, h) = unsafe { (nibble_lanes(p.add(6)), fifth_lanes(p.add(2))) };
        std::array::from_fn(|g| {
            _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(q[g], h[g]), _mm256_set1_epi32(16)))
        })
    }
}

impl Block256 for Q51 {
    const BYTES: usize = 24;
    const MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> [__m256; 4] {
        // SAFETY: a Q5_1 block: qh at 4, nibbles at 8.
        let (q, h) = unsafe { (nibble_lanes(p.add(8)), fifth_lanes(p.add(4))) };
        std::array::from_fn(|g| _mm256_cvtepi32_ps(_mm256_or_si256(q[g], h[g])))
    }
}

/// The 16 bytes of nibbles at `p` as four sets of 8 weights in 32-bit lanes (0..8, 8..16, 16..24,
/// 24..32): each half of the bytes widened once, then split into its low and high nibbles.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibble_lanes(p: *const u8) -> [__m256i; 4] {
    // SAFETY: the caller's block holds 16 bytes of nibbles at p.
    let (v0, v1) = unsafe {
        (
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)),
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(8) as *const __m128i)),
        )
    };
    let m4 = _mm256_set1_epi32(0x0f);
    [_mm256_and_si256(v0, m4), _mm256_and_si256(v1, m4), _mm256_srli_epi32::<4>(v0), _mm256_srli_epi32::<4>(v1)]
}

impl Block256 for Q40 {
    const BYTES: usize = 18;
    const MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> [__m256; 4] {
        // SAFETY: a Q4_0 block: nibbles at 2.
        let q = unsafe { nibble_lanes(p.add(2)) };
        q.map(|v| _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8))))
    }
}

impl Block256 for Q41 {
    const BYTES: usize = 20;
    const MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> [__m256; 4] {
        // SAFETY: a Q4_1 block: nibbles at 4.
        let q = unsafe { nibble_lanes(p.add(4)) };
        q.map(|v| _mm256_cvtepi32_ps(v))
    }
}

impl Block256 for Q80 {
    const BYTES: usize = 34;
    const MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> [__m256; 4] {
        // SAFETY: a Q8_0 block: 32 quants at 2.
        let (lo, hi) =
            unsafe { (_mm_loadu_si128(p.add(2) as *const __m128i), _mm_loadu_si128(p.add(18) as *const __m128i)) };
        let [a, b] = widen16::<true>(lo);
        let [c, e] = widen16::<true>(hi);
        [a, b, c, e]
    }
}

/// Dequantizes whole blocks, 32 weights per step.
///
/// # Safety
/// As [`crate::qblock::DequantBlocksKernel`]; installed only when the CPU has AVX2, FMA and F16C.
pub(crate) unsafe fn dequant_blocks(ty: crate::qblock::BlockType, src: &[u8], out: &mut [f32]) {
    use crate::qblock::BlockType::*;
    assert!(crate::qblock::whole_blocks(ty, src, out));
    // SAFETY: sizes checked; the CPU has the features of this tier.
    unsafe {
        match ty {
            Q4_0 => dequant_typed::<Q40>(src, out),
            Q4_1 => dequant_typed::<Q41>(src, out),
            Q8_0 => dequant_typed::<Q80>(src, out),
            Q5_0 => dequant_typed::<Q50>(src, out),
            Q5_1 => dequant_typed::<Q51>(src, out),
            Q6_K => dequant_typed::<Q6K>(src, out),
            Q4_K => dequant_typed::<Q4K>(src, out),
            Q5_K => dequant_typed::<Q5K>(src, out),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequant_typed<B: Block256>(src: &[u8], out: &mut [f32]) {
    for (s, o) in (0..out.len() / 32).zip(out.chunks_exact_mut(32)) {
        // SAFETY: sub-block s lies inside src (sizes checked); o holds 32 floats.
        unsafe {
            let w = B::load(src.as_ptr().add(s / B::SUBS * B::BYTES), s % B::SUBS);
            for (q, v) in w.into_iter().enumerate() {
                _mm256_storeu_ps(o.as_mut_ptr().add(8 * q), v);
            }
        }
    }
}

/// Block-weight product for up to 2 tokens and 2 rows at a time.
///
/// # Safety
/// As [`crate::qblock::GemvBlocksKernel`]; installed only when the CPU has AVX2, FMA and F16C.
pub(crate) unsafe fn gemv_blocks(args: &crate::qblock::BlockGemvArgs<'_>, rows: Range<usize>) {
    use crate::qblock::BlockType::*;
    assert!(rows.end <= args.w.n());
    // SAFETY: the caller's contract; the CPU has this tier's features.
    unsafe {
        match args.w.ty() {
            Q4_0 => gemv_typed::<Q40>(args, rows),
            Q4_1 => gemv_typed::<Q41>(args, rows),
            Q8_0 => gemv_typed::<Q80>(args, rows),
            Q5_0 => gemv_typed::<Q50>(args, rows),
            Q5_1 => gemv_typed::<Q51>(args, rows),
            Q6_K => gemv_typed::<Q6K>(args, rows),
            Q4_K => gemv_typed::<Q4K>(args, rows),
            Q5_K => gemv_typed::<Q5K>(args, rows),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_typed<B: Block256>(args: &crate::qblock::BlockGemvArgs<'_>, rows: Range<usize>) {
    let mut i0 = 0;
    while i0 < args.m {
        let t = (args.m - i0).min(2);
        let mut j = rows.start;
        while j + 2 <= rows.end {
            // SAFETY: rows j.. < rows.end ≤ n and tokens i0..i0+t < m, inside the checked shapes.
            unsafe {
                match t {
                    1 => gemv_tile::<B, 2, 1>(args, j, i0),
                    _ => gemv_tile::<B, 2, 2>(args, j, i0),
                }
            }
            j += 2;
        }
        if j < rows.end {
            // SAFETY: rows j.. < rows.end ≤ n and tokens i0..i0+t < m, inside the checked shapes.
            unsafe {
                match t {
                    1 => gemv_tile::<B, 1, 1>(args, j, i0),
                    _ => gemv_tile::<B, 1, 2>(args, j, i0),
                }
            }
        }
        i0 += t;
    }
}

/// Bytes ahead of the block being read that each row's stream prefetches.
const BLOCK_PREFETCH: usize = 4096;

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn gemv_tile<B: Block256, const R: usize, const T: usize>(
    args: &crate::qblock::BlockGemvArgs<'_>,
    j: usize,
    i0: usize,
) {
    let nb = args.w.k() / (32 * B::SUBS);
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut accm = [[_mm256_setzero_ps(); T]; R];
    let w: [*const u8; R] = std::array::from_fn(|r| args.w.row(j + r).as_ptr());
    // SAFETY: token rows i0..i0+T lie inside A (checked shapes).
    let x: [*const f32; T] = std::array::from_fn(|t| unsafe { args.a.as_ptr().add((i0 + t) * args.lda) });
    for b in 0..nb {
        // SAFETY: block b of each row (k = 32·SUBS·nb); the prefetch is a hint and never faults.
        let db: [__m256; R] = std::array::from_fn(|r| unsafe {
            let p = w[r].add(b * B::BYTES);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(BLOCK_PREFETCH) as *const i8);
            half256(p.add(B::SCALE_AT))
        });
        for c in 0..B::SUBS {
            let at = (b * B::SUBS + c) * 32;
            // SAFETY: floats at .. at + 32 of each token row lie inside it.
            let xs: [[__m256; 4]; T] =
                std::array::from_fn(|t| std::array::from_fn(|q| unsafe { _mm256_loadu_ps(x[t].add(at + 8 * q)) }));
            let xsum: [__m256; T] = std::array::from_fn(|t| {
                if B::MIN {
                    _mm256_add_ps(_mm256_add_ps(xs[t][0], xs[t][1]), _mm256_add_ps(xs[t][2], xs[t][3]))
                } else {
                    xs[t][0]
                }
            });
            for r in 0..R {
                // SAFETY: sub-block c of block b of row j + r.
                unsafe {
                    let p = w[r].add(b * B::BYTES);
                    let q = B::quants(p, c);
                    // The sub-block's minimum is read once for all tokens.
                    let m = if B::MIN { B::min(p, c) } else { _mm256_setzero_ps() };
                    for t in 0..T {
                        let blk = _mm256_fmadd_ps(q[1], xs[t][1], _mm256_mul_ps(q[0], xs[t][0]));
                        let blk = _mm256_fmadd_ps(q[2], xs[t][2], blk);
                        let blk = _mm256_fmadd_ps(q[3], xs[t][3], blk);
                        acc[r][t] = _mm256_fmadd_ps(blk, db[r], acc[r][t]);
                        if B::MIN {
                            accm[r][t] = _mm256_fmadd_ps(xsum[t], m, accm[r][t]);
                        }
                    }
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            let v = if B::MIN { _mm256_add_ps(acc[r][t], accm[r][t]) } else { acc[r][t] };
            let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let s = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
            let (i, jj) = (i0 + t, j + r);
            // SAFETY: element (i, jj) of C is this call's.
            unsafe { *args.c.get().add(i * args.ldc + jj) = args.epi.apply(s, i, jj) };
        }
    }
}

/// Decode attention of one query row: 8-lane dot products and weighted sums.
///
/// # Safety
/// As [`crate::attention::AttendRowKernel`]; installed only when the CPU has AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn attend_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ld: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    // SAFETY: the caller checked the shapes; the CPU has this tier.
    unsafe { attend_row_impl(q, k, v, ld, n, scale, scores, out) }
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_row_impl(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ld: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = q.len();
    let full = d / 8 * 8;
    for (p, s) in scores[..n].iter_mut().enumerate() {
        let kr = &k[p * ld..p * ld + d];
        let mut acc = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ full ≤ d values of q and of the key row.
            unsafe {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(kr.as_ptr().add(i)), acc)
            };
        }
        let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let tail: f32 = q[full..].iter().zip(&kr[full..]).map(|(a, b)| a * b).sum();
        *s = (_mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h))) + tail) * scale;
    }
    // SAFETY: the CPU has this tier.
    let sum = unsafe { softmax(&mut scores[..n], None) };
    out.fill(0.0);
    for (p, &s) in scores[..n].iter().enumerate() {
        let vr = &v[p * ld..p * ld + d];
        let sv = _mm256_set1_ps(s);
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ full ≤ d values of out and of the value row.
            unsafe {
                let o = _mm256_fmadd_ps(sv, _mm256_loadu_ps(vr.as_ptr().add(i)), _mm256_loadu_ps(out.as_ptr().add(i)));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), o);
            }
        }
        for (o, &x) in out[full..].iter_mut().zip(&vr[full..]) {
            *o += s * x;
        }
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    out.iter_mut().for_each(|o| *o *= inv);
}
