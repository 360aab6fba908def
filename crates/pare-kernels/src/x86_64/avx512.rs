//! AVX-512 f32 kernels: an 8×32 register-blocked GEMM, LayerNorm, softmax, and the vector exp / erf
//! they need.

use crate::gemm_f32::{Activation, Epilogue, GemmF32Args, NR};
use crate::gemm_i8::{GemmI8Args, I8Layout, OutPtr};
use crate::quant::{ActQuant, row_params};
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows per GEMM tile: 8 rows × 2 vectors = 16 accumulators.
const MR: usize = 8;

/// `e^x`, Cephes polynomial after range reduction by ln 2 (≤ 2 ulp); 0 below −87.3.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp(x: __m512) -> __m512 {
    let underflow = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(-87.336_54));
    let x = _mm512_min_ps(x, _mm512_set1_ps(88.376_26));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.398_199_9e-3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.333_452e-3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166_579_6e-2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666_666_5e-1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_maskz_mov_ps(!underflow, _mm512_scalef_ps(p, n))
}

/// `erf(x)`, the rational approximation of Eigen (`x·P(x²)/Q(x²)` on [−4, 4]).
#[target_feature(enable = "avx512f")]
#[inline]
fn erf(x: __m512) -> __m512 {
    let x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(4.0)), _mm512_set1_ps(-4.0));
    let x2 = _mm512_mul_ps(x, x);
    let mut p = _mm512_set1_ps(-2.726_142_3e-10);
    for c in [2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2] {
        p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(c));
    }
    let mut q = _mm512_set1_ps(-1.456_607_2e-5);
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(c));
    }
    // 1/q from the 14-bit estimate and one Newton step (≈ 2⁻²⁸ relative), cheaper than a division.
    let r = _mm512_rcp14_ps(q);
    let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0)));
    _mm512_mul_ps(_mm512_mul_ps(x, p), r)
}

/// Exact-form GELU, `x/2 · (1 + erf(x/√2))`. Below the clamp of [`erf`] (x < −4√2), where
/// `1 + erf` is below f32 resolution, the result is 0 (|GELU(x)| < 5e-8 there).
#[target_feature(enable = "avx512f")]
#[inline]
fn gelu(x: __m512) -> __m512 {
    let e = erf(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
    let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(GELU_ZERO_BELOW));
    _mm512_maskz_mul_ps(keep, _mm512_mul_ps(x, _mm512_set1_ps(0.5)), _mm512_add_ps(e, _mm512_set1_ps(1.0)))
}

/// GELU is 0 in f32 below this input (−4√2).
pub(crate) const GELU_ZERO_BELOW: f32 = -5.656_854;

/// Mask of the first `w` lanes (w ≤ 16).
#[inline]
fn lanes(w: usize) -> __mmask16 {
    if w >= 16 { 0xffff } else { ((1u32 << w) - 1) as __mmask16 }
}

/// AVX-512 GEMM over the column panels `panels`.
///
/// # Safety
/// The CPU has AVX-512F; `args` passed `gemm_f32::check`; no other thread writes these panels of C.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
pub(crate) unsafe fn gemm_f32(args: &GemmF32Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    let last = panels.end;
    for p in panels {
        let mut i = rows.start;
        // The first row tile of each panel also pulls the next panel of B towards L2: weights are
        // streamed from memory once per call, and the hardware prefetcher alone leaves gaps.
        if i + MR <= rows.end && p + 1 < last {
            // SAFETY: rows 0..MR lie inside A and C, panels p and p + 1 inside B.
            unsafe { tile_prefetch::<MR, true>(args, i, p) };
            i += MR;
        }
        while i + MR <= rows.end {
            // SAFETY: rows i..i+MR lie inside A and C (checked shapes), panel p inside B.
            unsafe { tile::<MR>(args, i, p) };
            i += MR;
        }
        // SAFETY: as above for the remaining rows.end − i < MR rows.
        unsafe {
            match rows.end - i {
                0 => {}
                1 => tile::<1>(args, i, p),
                2 => tile::<2>(args, i, p),
                3 => tile::<3>(args, i, p),
                4 => tile::<4>(args, i, p),
                5 => tile::<5>(args, i, p),
                6 => tile::<6>(args, i, p),
                _ => tile::<7>(args, i, p),
            }
        }
    }
}

/// Rows `i0 .. i0+R` × panel `p` of C: the full-k dot products in 2R registers, then the epilogue.
///
/// # Safety
/// As [`gemm_f32`], with `i0 + R ≤ m` and `p` a panel of B.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
#[inline]
unsafe fn tile<const R: usize>(args: &GemmF32Args<'_>, i0: usize, p: usize) {
    // SAFETY: forwarded contract.
    unsafe { tile_prefetch::<R, false>(args, i0, p) }
}

/// [`tile`], optionally prefetching panel `p + 1` of B (which must then exist).
///
/// # Safety
/// As [`tile`]; with `PREFETCH`, `p + 1` is a panel of B.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
#[inline]
unsafe fn tile_prefetch<const R: usize, const PREFETCH: bool>(args: &GemmF32Args<'_>, i0: usize, p: usize) {
    let k = args.b.k();
    let ldb = args.b.ld();
    let next = if PREFETCH { args.b.panel_ptr(p + 1) } else { std::ptr::null() };
    let b = args.b.panel_ptr(p);
    let lda = args.lda;
    // SAFETY: row i0 exists in A.
    let a = unsafe { args.a.as_ptr().add(i0 * lda) };
    let mut c0 = [_mm512_setzero_ps(); R];
    let mut c1 = [_mm512_setzero_ps(); R];
    for kk in 0..k {
        // SAFETY: the panel holds k rows of NR = 32 readable floats, `ldb` apart.
        let (b0, b1) = unsafe { (_mm512_loadu_ps(b.add(kk * ldb)), _mm512_loadu_ps(b.add(kk * ldb + 16))) };
        if PREFETCH {
            // SAFETY: prefetches never fault; the address is inside panel p + 1 anyway.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(next.add(kk * ldb).cast());
                _mm_prefetch::<_MM_HINT_T1>(next.add(kk * ldb + 16).cast());
            }
        }
        for r in 0..R {
            // SAFETY: A[i0 + r][kk] is inside A (checked shapes).
            let av = _mm512_set1_ps(unsafe { *a.add(r * lda + kk) });
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }

    let j0 = p * NR;
    let w = NR.min(args.b.n() - j0);
    let scaled = args.epi.alpha != 1.0 || args.epi.row_scale.is_some();
    for r in 0..R {
        let (mut v0, mut v1) = (c0[r], c1[r]);
        if scaled {
            let s = _mm512_set1_ps(args.epi.scale(i0 + r));
            v0 = _mm512_mul_ps(v0, s);
            v1 = _mm512_mul_ps(v1, s);
        }
        // SAFETY: row i0 + r, columns j0 .. j0 + w of C are ours.
        unsafe { finish_row(&args.epi, v0, v1, i0 + r, j0, w, args.c.get().add((i0 + r) * args.ldc + j0)) };
    }
}

/// Finishes 32 values of row `i` from column `j0` (the first `w` are real): adds the bias, applies the
/// activation, adds the residual, stores to `cp`. Same operations, in the same order, as
/// [`Epilogue::apply`] after its scaling.
///
/// # Safety
/// The CPU has AVX-512F; `cp` points at C[i][j0] with `w` writable values; bias and residual (when
/// set) hold columns `j0 .. j0 + w` (and row `i`).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
#[inline]
pub(crate) unsafe fn finish_row(
    epi: &Epilogue<'_>,
    mut v0: __m512,
    mut v1: __m512,
    i: usize,
    j0: usize,
    w: usize,
    cp: *mut f32,
) {
    let (m0, m1) = (lanes(w), lanes(w.saturating_sub(16)));
    if let Some(bias) = epi.bias {
        // SAFETY: masked loads of columns j0 .. j0 + w of the n-long bias.
        unsafe {
            let bp = bias.as_ptr().add(j0);
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bp));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bp.add(16)));
        }
    }
    if epi.act == Activation::Gelu {
        v0 = gelu(v0);
        v1 = gelu(v1);
    }
    if let Some((res, ld)) = epi.residual {
        // SAFETY: masked loads of row i, columns j0 .. j0 + w, of the checked residual.
        unsafe {
            let rp = res.as_ptr().add(i * ld + j0);
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, rp));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, rp.add(16)));
        }
    }
    // SAFETY: masked stores of the w values the caller owns.
    unsafe {
        _mm512_mask_storeu_ps(cp, m0, v0);
        _mm512_mask_storeu_ps(cp.add(16), m1, v1);
    }
}

/// Mask of the first `w` lanes (w ≤ 16), for other modules of this tier.
#[inline]
pub(crate) fn lane_mask(w: usize) -> __mmask16 {
    lanes(w)
}

/// Lanes `j ..` of `s` (16, or fewer at its end; zeros past it). Requires `j < s.len()`.
#[target_feature(enable = "avx512f")]
#[inline]
fn load(s: &[f32], j: usize) -> __m512 {
    assert!(j < s.len());
    // SAFETY: the mask covers only the s.len() − j values from j on.
    unsafe { _mm512_maskz_loadu_ps(lanes(s.len() - j), s.as_ptr().add(j)) }
}

/// Stores the lanes of `v` that fall inside `s` from `j` on. Requires `j < s.len()`.
#[target_feature(enable = "avx512f")]
#[inline]
fn store(s: &mut [f32], j: usize, v: __m512) {
    assert!(j < s.len());
    // SAFETY: the mask covers only the s.len() − j values from j on.
    unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr().add(j), lanes(s.len() - j), v) }
}

/// LayerNorm over whole rows (two-pass variance).
///
/// # Safety
/// The CPU has AVX-512F; `x.len()` is a multiple of `gamma.len() == beta.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
pub(crate) unsafe fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let cols = gamma.len();
    let inv_n = 1.0 / cols as f32;
    for row in x.chunks_exact_mut(cols) {
        let mut s = _mm512_setzero_ps();
        for j in (0..cols).step_by(16) {
            s = _mm512_add_ps(s, load(row, j));
        }
        let mean = _mm512_reduce_add_ps(s) * inv_n;
        let mut q = _mm512_setzero_ps();
        for j in (0..cols).step_by(16) {
            // Lanes past the row are zero in `load` and must not count: mask the difference.
            let d = _mm512_maskz_sub_ps(lanes(cols - j), load(row, j), _mm512_set1_ps(mean));
            q = _mm512_fmadd_ps(d, d, q);
        }
        let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(q) * inv_n + eps).sqrt());
        let meanv = _mm512_set1_ps(mean);
        for j in (0..cols).step_by(16) {
            let y =
                _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(load(row, j), meanv), inv), load(gamma, j), load(beta, j));
            store(row, j, y);
        }
    }
}

/// Softmax numerator of one row (`exp(row + bias − max)`), returning the sum.
///
/// # Safety
/// The CPU has AVX-512F; `bias`, when given, has `row.len()` values.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
pub(crate) unsafe fn softmax(row: &mut [f32], bias: Option<&[f32]>) -> f32 {
    let n = row.len();
    let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
    for j in (0..n).step_by(16) {
        let mut v = load(row, j);
        if let Some(b) = bias {
            v = _mm512_add_ps(v, load(b, j));
            store(row, j, v);
        }
        // Lanes past the row must not raise the maximum.
        mx = _mm512_mask_max_ps(mx, lanes(n - j), mx, v);
    }
    let max = _mm512_reduce_max_ps(mx);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return 0.0;
    }
    let maxv = _mm512_set1_ps(max);
    let mut sum = _mm512_setzero_ps();
    for j in (0..n).step_by(16) {
        let e = _mm512_maskz_mov_ps(lanes(n - j), exp(_mm512_sub_ps(load(row, j), maxv)));
        sum = _mm512_add_ps(sum, e);
        store(row, j, e);
    }
    _mm512_reduce_add_ps(sum)
}

/// Activation quantizer for one row (see [`crate::quant`]); bit-identical to the reference. Full
/// blocks of 64 values go through saturating packs (the clamp to [0, 255] is the `packus`), the tail
/// through the scalar definition.
///
/// # Safety
/// The CPU has AVX-512F/BW; `q.len() ≥ row.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
pub(crate) unsafe fn quantize_row(row: &[f32], q: &mut [u8], mode: ActQuant, skip: &[u32]) -> (f32, i32) {
    let n = row.len();
    assert!(q.len() >= n);
    let (mut lo, mut hi) = (_mm512_set1_ps(f32::INFINITY), _mm512_set1_ps(f32::NEG_INFINITY));
    // Range pass. Skipped channels (ascending) leave the range: only the few blocks holding one take
    // the masked path.
    let mut si = 0;
    for j in (0..n).step_by(16) {
        let mut m = lanes(n - j);
        while si < skip.len() && (skip[si] as usize) < j + 16 {
            m &= !(1u16 << (skip[si] as usize - j));
            si += 1;
        }
        if m == 0xffff {
            // SAFETY: a full mask means j + 16 ≤ n.
            let v = unsafe { _mm512_loadu_ps(row.as_ptr().add(j)) };
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        } else {
            let v = load(row, j);
            lo = _mm512_mask_min_ps(lo, m, lo, v);
            hi = _mm512_mask_max_ps(hi, m, hi, v);
        }
    }
    let (scale, zero) = row_params(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), mode);
    let inv_s = 1.0 / scale;
    let inv = _mm512_set1_ps(inv_s);
    let (lim_lo, lim_hi) = (_mm512_set1_ps(-512.0), _mm512_set1_ps(512.0));
    let zv = _mm512_set1_epi32(zero);
    // packs/packus interleave 128-bit lanes; this puts the 16 dwords back in order.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let conv = |j: usize| {
        // SAFETY: callers pass j + 16 ≤ n.
        let v = unsafe { _mm512_loadu_ps(row.as_ptr().add(j)) };
        let t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), lim_lo), lim_hi);
        _mm512_add_epi32(_mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t), zv)
    };
    let full = n / 64 * 64;
    for j in (0..full).step_by(64) {
        let w01 = _mm512_packs_epi32(conv(j), conv(j + 16));
        let w23 = _mm512_packs_epi32(conv(j + 32), conv(j + 48));
        let b = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(w01, w23));
        // SAFETY: 64 bytes at j + 64 ≤ n ≤ q.len().
        unsafe { _mm512_storeu_si512(q.as_mut_ptr().add(j).cast(), b) };
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

/// Integer GEMM for AVX-512 without VNNI, on [`I8Layout::Pairs16`] weights: `vpmaddwd` of activation
/// pairs (u8 widened to i16) against weight pairs, exact; 8 rows × 32 columns per tile.
///
/// # Safety
/// The CPU has AVX-512F/BW; `args` passed `gemm_i8::check`; panels are ours alone.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
pub(crate) unsafe fn gemm_u8s8(args: &GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    assert_eq!(args.b.layout(), I8Layout::Pairs16, "gemm_u8s8_8x32_avx512 reads Pairs16 weights");
    assert!(args.a16.len() >= args.a.m * args.a.ld, "gemm_u8s8_8x32_avx512 needs widened activations");
    let m = rows.end;
    for p in panels {
        let mut i = rows.start;
        while i < m {
            // SAFETY: rows i .. i + R exist, panel p exists.
            unsafe {
                match m - i {
                    1 => tile_i16::<1>(args, i, p),
                    2 => tile_i16::<2>(args, i, p),
                    3 => tile_i16::<3>(args, i, p),
                    4 => tile_i16::<4>(args, i, p),
                    5 => tile_i16::<5>(args, i, p),
                    6 => tile_i16::<6>(args, i, p),
                    7 => tile_i16::<7>(args, i, p),
                    _ => tile_i16::<8>(args, i, p),
                }
            }
            i += 8.min(m - i);
        }
    }
}

/// # Safety
/// As [`gemm_u8s8`], with `i0 + R ≤ m`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
#[inline]
unsafe fn tile_i16<const R: usize>(args: &GemmI8Args<'_>, i0: usize, p: usize) {
    let (a, b) = (args.a, args.b);
    let ld = a.ld;
    let bp = b.panel16(p).as_ptr();
    // SAFETY: row i0 exists in the widened activations (m · ld values).
    let ap = unsafe { args.a16.as_ptr().add(i0 * ld) };
    let mut c0 = [_mm512_setzero_si512(); R];
    let mut c1 = [_mm512_setzero_si512(); R];
    for g in 0..b.k_padded() / 2 {
        // SAFETY: the 64 i16 of pair group g of the panel, 64-byte aligned.
        let (w0, w1) =
            unsafe { (_mm512_load_si512(bp.add(64 * g).cast()), _mm512_load_si512(bp.add(64 * g + 32).cast())) };
        for r in 0..R {
            // SAFETY: values 2g, 2g + 1 of row i0 + r (ld ≥ k_padded).
            let av = _mm512_set1_epi32(unsafe { std::ptr::read_unaligned(ap.add(r * ld + 2 * g).cast::<i32>()) });
            c0[r] = _mm512_add_epi32(c0[r], _mm512_madd_epi16(av, w0));
            c1[r] = _mm512_add_epi32(c1[r], _mm512_madd_epi16(av, w1));
        }
    }
    // SAFETY: forwarded contract; the activations were centred.
    unsafe { finish_i8(args, i0, p, &c0, &c1, true) }
}

/// The integer epilogue of rows `i0 .. i0 + R` × panel `p` (`c0[r]`, `c1[r]` hold columns `32p ..
/// 32p + 16` and `.. + 32` of row `i0 + r`; `centred`: sums of centred activations `Σ (qx − zx)·qw`,
/// else `Σ qx·qw`): raw accumulators `Σ qx·qw`, or dequantized in registers with the same operations,
/// in the same order, as `GemmI8Args::store_scalar` (whose zero-point correction centred sums have
/// made).
///
/// # Safety
/// The CPU has AVX-512F/BW; rows and columns lie inside the checked output and are ours.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
#[inline]
pub(crate) unsafe fn finish_i8<const R: usize>(
    args: &GemmI8Args<'_>,
    i0: usize,
    p: usize,
    c0: &[__m512i; R],
    c1: &[__m512i; R],
    centred: bool,
) {
    let (a, b) = (args.a, args.b);
    let j0 = p * NR;
    let w = NR.min(b.n() - j0);
    // Column sums and scales are padded to whole panels: full loads are in bounds.
    // SAFETY: 32 values from j0 in arrays of panels × 32.
    let (s0, s1) = unsafe {
        let cs = b.col_sums().as_ptr().add(j0);
        (_mm512_loadu_si512(cs.cast()), _mm512_loadu_si512(cs.add(16).cast()))
    };
    match args.out {
        OutPtr::I32 { c, ldc } => {
            for r in 0..R {
                let (mut v0, mut v1) = (c0[r], c1[r]);
                if centred {
                    let z = _mm512_set1_epi32(a.zero[i0 + r]);
                    v0 = _mm512_add_epi32(v0, _mm512_mullo_epi32(z, s0));
                    v1 = _mm512_add_epi32(v1, _mm512_mullo_epi32(z, s1));
                }
                // SAFETY: masked stores to row i0 + r, columns j0 .. j0 + w, which are ours.
                unsafe {
                    let cp = c.get().add((i0 + r) * ldc + j0);
                    _mm512_mask_storeu_epi32(cp.cast(), lane_mask(w), v0);
                    _mm512_mask_storeu_epi32(cp.add(16).cast(), lane_mask(w.saturating_sub(16)), v1);
                }
            }
        }
        OutPtr::F32 { c, ldc, epi } => {
            // SAFETY: 32 values from j0 in arrays of panels × 32.
            let (w0, w1) = unsafe {
                let sc = b.scales().as_ptr().add(j0);
                (_mm512_loadu_ps(sc), _mm512_loadu_ps(sc.add(16)))
            };
            let no = a.outlier_idx.len();
            let stride = b.panels() * NR;
            // With the usual four outlier channels, their weight columns for this panel stay in
            // registers across the rows of the tile.
            let cols4: Option<[[__m512; 2]; 4]> = (no == 4).then(|| {
                std::array::from_fn(|t| {
                    // SAFETY: outlier columns are contiguous, `stride` = panels × 32 floats each, so
                    // the 32 values from j0 of column t exist.
                    unsafe {
                        let c = b.outlier_column(0).as_ptr().add(t * stride + j0);
                        [_mm512_loadu_ps(c), _mm512_loadu_ps(c.add(16))]
                    }
                })
            });
            for r in 0..R {
                let i = i0 + r;
                let sx = _mm512_set1_ps(a.scale[i]);
                let (mut a0, mut a1) = (c0[r], c1[r]);
                if !centred {
                    let z = _mm512_set1_epi32(a.zero[i]);
                    a0 = _mm512_sub_epi32(a0, _mm512_mullo_epi32(z, s0));
                    a1 = _mm512_sub_epi32(a1, _mm512_mullo_epi32(z, s1));
                }
                let f0 = _mm512_cvtepi32_ps(a0);
                let f1 = _mm512_cvtepi32_ps(a1);
                let mut v0 = _mm512_mul_ps(f0, _mm512_mul_ps(sx, w0));
                let mut v1 = _mm512_mul_ps(f1, _mm512_mul_ps(sx, w1));
                let xs = &a.outliers[i * no..(i + 1) * no];
                if let Some(cols) = &cols4 {
                    for t in 0..4 {
                        let xo = _mm512_set1_ps(xs[t]);
                        v0 = _mm512_fmadd_ps(xo, cols[t][0], v0);
                        v1 = _mm512_fmadd_ps(xo, cols[t][1], v1);
                    }
                } else {
                    for (t, &x) in xs.iter().enumerate() {
                        let xo = _mm512_set1_ps(x);
                        // SAFETY: as for `cols4`.
                        let (o0, o1) = unsafe {
                            let c = b.outlier_column(0).as_ptr().add(t * stride + j0);
                            (_mm512_loadu_ps(c), _mm512_loadu_ps(c.add(16)))
                        };
                        v0 = _mm512_fmadd_ps(xo, o0, v0);
                        v1 = _mm512_fmadd_ps(xo, o1, v1);
                    }
                }
                // SAFETY: row i, columns j0 .. j0 + w of the checked output are ours.
                unsafe { finish_row(&epi, v0, v1, i, j0, w, c.get().add(i * ldc + j0)) };
            }
        }
    }
}

/// Transposes a 16 × 16 block held in 16 registers (row `i` in `r[i]`): on return `r[c]` is column `c`.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16(r: &mut [__m512; 16]) {
    // 32-bit interleave inside 128-bit lanes.
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
    });
    // 64-bit interleave: u[4g + c] holds, in lane ℓ, column 4ℓ + c of rows 4g .. 4g + 4.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, b) = (_mm512_castps_pd(t[4 * g + c / 2]), _mm512_castps_pd(t[4 * g + 2 + c / 2]));
        _mm512_castpd_ps(if c % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
    });
    // Gather lane ℓ of the four row groups.
    for c in 0..4 {
        let w0 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        let w1 = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
        let w2 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        let w3 = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
        r[c] = _mm512_shuffle_f32x4::<0x88>(w0, w2);
        r[8 + c] = _mm512_shuffle_f32x4::<0xdd>(w0, w2);
        r[4 + c] = _mm512_shuffle_f32x4::<0x88>(w1, w3);
        r[12 + c] = _mm512_shuffle_f32x4::<0xdd>(w1, w3);
    }
}

/// Packs rows `W[n][k]` (stride `ldw`) into 32-wide panels (`dst[(j/32)·k·32 + kk·32 + j%32] =
/// W[j][kk]`) by 16 × 16 transposes. Requires `n` and `k` to be multiples of 16.
///
/// # Safety
/// The CPU has AVX-512F; `w` holds the `n` rows, `dst` the `n/32` (rounded up) panels.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn pack_rows_f32(w: &[f32], ldw: usize, n: usize, k: usize, dst: &mut [f32]) {
    assert!(n.is_multiple_of(16) && k.is_multiple_of(16));
    assert!(n == 0 || w.len() >= (n - 1) * ldw + k);
    assert!(dst.len() >= n.div_ceil(NR) * k * NR);
    for jb in (0..n).step_by(16) {
        for kb in (0..k).step_by(16) {
            // SAFETY: rows jb .. jb + 16, columns kb .. kb + 16 lie inside `w` (asserted above).
            let mut r: [__m512; 16] =
                std::array::from_fn(|i| unsafe { _mm512_loadu_ps(w.as_ptr().add((jb + i) * ldw + kb)) });
            transpose16(&mut r);
            let base = (jb / NR) * k * NR + jb % NR;
            for (c, v) in r.iter().enumerate() {
                // SAFETY: 16 floats at row kb + c of panel jb / 32, inside `dst` (asserted above).
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add(base + (kb + c) * NR), *v) };
            }
        }
    }
    // A half-filled last panel gets zeros in its upper half, like the portable packing.
    if !n.is_multiple_of(NR) {
        let base = (n / NR) * k * NR;
        for kk in 0..k {
            dst[base + kk * NR + 16..base + kk * NR + NR].fill(0.0);
        }
    }
}

/// Sparse kernel: rows `rows` of `Cᵀ`. Tokens go by blocks of 64 (16 at the end); within a block,
/// columns by segments of 128 so the rows of `Aᵀ` it reads (32 KB) stay in L1; each row's nonzeros of
/// the segment feed two sets of accumulators in turn, so multiply-adds do not wait on each other.
/// Partial sums of later segments are added into `Cᵀ`.
///
/// # Safety
/// As [`crate::spmm::SpmmKernel`]; the CPU has AVX-512F.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
pub(crate) unsafe fn spmm_f32(args: &crate::spmm::SpmmArgs<'_>, rows: Range<usize>) {
    let mp = args.mp;
    let segs = args.w.segments();
    let mut m0 = 0;
    while m0 + 64 <= mp {
        for s in 0..segs.max(1) {
            for j in rows.clone() {
                // SAFETY: forwarded contract; m0 + 64 ≤ mp.
                unsafe { spmm_block::<4>(args, j, s, m0) };
            }
        }
        m0 += 64;
    }
    while m0 < mp {
        for s in 0..segs.max(1) {
            for j in rows.clone() {
                // SAFETY: forwarded contract; m0 + 16 ≤ mp.
                unsafe { spmm_block::<1>(args, j, s, m0) };
            }
        }
        m0 += 16;
    }
}

/// Segment `s` of row `j` of `Cᵀ`, tokens `m0 .. m0 + 16·L`: stored when `s == 0`, added otherwise.
///
/// # Safety
/// As [`spmm_f32`], with `m0 + 16·L ≤ mp`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
#[inline]
#[allow(clippy::needless_range_loop)] // `h` also selects the token offset 16·h
unsafe fn spmm_block<const L: usize>(args: &crate::spmm::SpmmArgs<'_>, j: usize, s: usize, m0: usize) {
    let mp = args.mp;
    // SAFETY: tokens m0 .. m0 + 16L of every row of Aᵀ exist (mp ≥ m0 + 16L, k rows).
    let at = unsafe { args.at.as_ptr().add(m0) };
    let (cols, vals) = if args.w.segments() == 0 { (&[][..], &[][..]) } else { args.w.row_segment(j, s) };
    let mut acc = [[_mm512_setzero_ps(); L]; 2];
    let (cq, vq) = (cols.chunks_exact(2), vals.chunks_exact(2));
    let (cr, vr) = (cq.remainder(), vq.remainder());
    for (c2, v2) in cq.zip(vq) {
        for u in 0..2 {
            let w = _mm512_set1_ps(v2[u]);
            // SAFETY: column index < k (CSR invariant), so the row exists in Aᵀ.
            let p = unsafe { at.add(c2[u] as usize * mp) };
            for h in 0..L {
                // SAFETY: as above.
                acc[u][h] = _mm512_fmadd_ps(w, unsafe { _mm512_loadu_ps(p.add(16 * h)) }, acc[u][h]);
            }
        }
    }
    for (&c, &v) in cr.iter().zip(vr) {
        let w = _mm512_set1_ps(v);
        // SAFETY: as above.
        let p = unsafe { at.add(c as usize * mp) };
        for h in 0..L {
            // SAFETY: as above.
            acc[0][h] = _mm512_fmadd_ps(w, unsafe { _mm512_loadu_ps(p.add(16 * h)) }, acc[0][h]);
        }
    }
    // SAFETY: row j of Cᵀ is ours; tokens m0 .. m0 + 16L ≤ mp.
    let out = unsafe { args.ct.get().add(j * mp + m0) };
    for h in 0..L {
        let mut v = _mm512_add_ps(acc[0][h], acc[1][h]);
        if s > 0 {
            // SAFETY: as above.
            v = _mm512_add_ps(v, unsafe { _mm512_loadu_ps(out.add(16 * h)) });
        }
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(out.add(16 * h), v) };
    }
}

/// `at[c][i] = a[i][c]` by 16 × 16 blocks (rows past `m` and columns past `k` read as zeros).
///
/// # Safety
/// As [`crate::spmm::TransposeKernel`].
pub(crate) unsafe fn transpose_f32(a: &[f32], lda: usize, m: usize, k: usize, at: *mut f32, mp: usize) {
    // SAFETY: only installed when the CPU has AVX-512F; the caller's contract on `at`.
    unsafe { transpose_f32_impl(a, lda, m, k, at, mp) }
}

#[target_feature(enable = "avx512f")]
unsafe fn transpose_f32_impl(a: &[f32], lda: usize, m: usize, k: usize, at: *mut f32, mp: usize) {
    assert!(mp >= m);
    assert!(m == 0 || a.len() >= (m - 1) * lda + k);
    for i0 in (0..m).step_by(16) {
        for c0 in (0..k).step_by(16) {
            let cm = lanes(k - c0);
            let mut r: [__m512; 16] = std::array::from_fn(|i| {
                if i0 + i < m {
                    // SAFETY: masked to columns < k of row i0 + i < m.
                    unsafe { _mm512_maskz_loadu_ps(cm, a.as_ptr().add((i0 + i) * lda + c0)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            transpose16(&mut r);
            let tm = lanes(m - i0);
            for (c, v) in r.iter().enumerate().take(16.min(k - c0)) {
                // SAFETY: row c0 + c < k of Aᵀ, tokens i0 .. min(i0 + 16, m) (masked), inside `at`.
                unsafe { _mm512_mask_storeu_ps(at.add((c0 + c) * mp + i0), tm, *v) };
            }
        }
    }
}

/// `c[i][j] = epi(ct[j][i])` by 16 × 16 blocks.
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
    // SAFETY: only installed when the CPU has AVX-512F; the caller's contract on `c`.
    unsafe { untranspose_f32_impl(ct, mp, n, m, c, ldc, epi) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
unsafe fn untranspose_f32_impl(ct: &[f32], mp: usize, n: usize, m: usize, c: *mut f32, ldc: usize, epi: &Epilogue) {
    assert!(ct.len() >= n * mp && mp >= m && ldc >= n);
    for j0 in (0..n).step_by(16) {
        let w = 16.min(n - j0);
        for i0 in (0..m).step_by(16) {
            let mut r: [__m512; 16] = std::array::from_fn(|jj| {
                if jj < w {
                    // SAFETY: row j0 + jj < n of Cᵀ, tokens i0 .. i0 + 16 ≤ mp.
                    unsafe { _mm512_loadu_ps(ct.as_ptr().add((j0 + jj) * mp + i0)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            transpose16(&mut r);
            for (ii, v) in r.iter().enumerate().take(16.min(m - i0)) {
                let i = i0 + ii;
                let v = _mm512_mul_ps(*v, _mm512_set1_ps(epi.scale(i)));
                // SAFETY: row i < m, columns j0 .. j0 + w < n of C.
                unsafe { finish_row(epi, v, _mm512_setzero_ps(), i, j0, w, c.add(i * ldc + j0)) };
            }
        }
    }
}

/// Sparse integer kernel: per row and block of 16 tokens, the nonzeros multiply zero-extended u8
/// activations into i32 lanes (two accumulators in turn); the epilogue dequantizes with the same
/// operations as the scalar definition.
///
/// # Safety
/// As [`crate::spmm_i8::SpmmI8Kernel`]; the CPU has AVX-512F/BW.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
pub(crate) unsafe fn spmm_u8s8(args: &crate::spmm_i8::SpmmI8Args<'_>, rows: Range<usize>) {
    let mp = args.mp;
    let no = args.w.outliers().len();
    for j in rows {
        let (cols, vals) = args.w.row(j);
        let (rs, sw) = (_mm512_set1_epi32(args.row_sum(j)), _mm512_set1_ps(args.scale(j)));
        for m0 in (0..mp).step_by(16) {
            let mut acc = [_mm512_setzero_si512(); 2];
            for (t, (&c, &v)) in cols.iter().zip(vals).enumerate() {
                // SAFETY: 16 bytes at tokens m0 .. m0 + 16 ≤ mp of row c < k of qᵀ.
                let x =
                    _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(args.qt.as_ptr().add(c as usize * mp + m0).cast()) });
                acc[t & 1] = _mm512_add_epi32(acc[t & 1], _mm512_mullo_epi32(x, _mm512_set1_epi32(v as i32)));
            }
            let acc = _mm512_add_epi32(acc[0], acc[1]);
            // SAFETY: per-token arrays hold mp values.
            let (z, sx) = unsafe {
                (_mm512_loadu_si512(args.zx.as_ptr().add(m0).cast()), _mm512_loadu_ps(args.sx.as_ptr().add(m0)))
            };
            let corr = _mm512_sub_epi32(acc, _mm512_mullo_epi32(z, rs));
            let mut f = _mm512_mul_ps(_mm512_cvtepi32_ps(corr), _mm512_mul_ps(sx, sw));
            for t in 0..no {
                // SAFETY: outlier values are `[outliers][mp]`.
                let xo = unsafe { _mm512_loadu_ps(args.xo.as_ptr().add(t * mp + m0)) };
                f = _mm512_fmadd_ps(xo, _mm512_set1_ps(args.outlier_w(t, j)), f);
            }
            // SAFETY: row j of Cᵀ is ours; tokens m0 .. m0 + 16 ≤ mp.
            unsafe { _mm512_storeu_ps(args.ct.get().add(j * mp + m0), f) };
        }
    }
}

/// f64 dot product: four accumulators of 8 lanes (FMA), then the tail in scalar.
pub(crate) fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    // SAFETY: only installed when the CPU has this tier.
    unsafe { dot_f64_impl(a, b) }
}

#[target_feature(enable = "avx512f,fma")]
fn dot_f64_impl(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let mut acc = [_mm512_setzero_pd(); 4];
    let full = n / 32 * 32;
    for i in (0..full).step_by(32) {
        for (t, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 32 ≤ full ≤ n values of both slices.
            unsafe {
                *acc = _mm512_fmadd_pd(
                    _mm512_loadu_pd(a.as_ptr().add(i + 8 * t)),
                    _mm512_loadu_pd(b.as_ptr().add(i + 8 * t)),
                    *acc,
                );
            }
        }
    }
    let head = { _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]))) };
    head + a[full..n].iter().zip(&b[full..n]).map(|(x, y)| x * y).sum::<f64>()
}

/// `y += alpha·x`, 8 lanes at a time (FMA).
pub(crate) fn axpy_f64(y: &mut [f64], alpha: f64, x: &[f64]) {
    // SAFETY: only installed when the CPU has this tier.
    unsafe { axpy_f64_impl(y, alpha, x) }
}

#[target_feature(enable = "avx512f,fma")]
fn axpy_f64_impl(y: &mut [f64], alpha: f64, x: &[f64]) {
    let n = y.len().min(x.len());
    let av = _mm512_set1_pd(alpha);
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        // SAFETY: i + 8 ≤ full ≤ n values of both slices.
        unsafe {
            let v = _mm512_fmadd_pd(av, _mm512_loadu_pd(x.as_ptr().add(i)), _mm512_loadu_pd(y.as_ptr().add(i)));
            _mm512_storeu_pd(y.as_mut_ptr().add(i), v);
        }
    }
    for (y, x) in y[full..n].iter_mut().zip(&x[full..n]) {
        *y += alpha * x;
    }
}

/// One block type as the AVX-512 kernels read it. The product of a block with 32 activations is
/// `d · Σ q·x` (+ `m · Σ x` for types with a minimum): the quants are widened to f32, their dot
/// product with `x` is accumulated per block, and the scales are applied once per block.
trait Block512 {
    const BYTES: usize;
    /// 32-weight sub-blocks per block.
    const SUBS: usize = 1;
    /// Byte offset of the f16 scale `d`.
    const SCALE_AT: usize = 0;
    /// Whether the block has a minimum `m` (f16 at byte 2; only with one sub-block).
    const MIN: bool;
    /// The quants of sub-block `c` of the block at `p` as f32 (weights 0..16, 16..32), offsets
    /// removed, multiplied by their sub-block scales (exactly).
    ///
    /// # Safety
    /// `p` points at one whole block, `c < SUBS`; the CPU has AVX-512F/BW and F16C.
    unsafe fn quants(p: *const u8, c: usize) -> (__m512, __m512);
    /// Sub-block `c`'s weights, exactly as the reference dequantizes them.
    ///
    /// # Safety
    /// As [`Block512::quants`].
    unsafe fn load(p: *const u8, c: usize) -> (__m512, __m512) {
        // SAFETY: the caller's contract.
        unsafe {
            let (lo, hi) = Self::quants(p, c);
            let d = half512(p.add(Self::SCALE_AT));
            if Self::MIN {
                let m = half512(p.add(2));
                (_mm512_add_ps(_mm512_mul_ps(lo, d), m), _mm512_add_ps(_mm512_mul_ps(hi, d), m))
            } else {
                (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
            }
        }
    }
}

/// The f16 at `p` converted and broadcast.
#[target_feature(enable = "avx512f,avx512bw,f16c")]
#[inline]
unsafe fn half512(p: *const u8) -> __m512 {
    // SAFETY: the caller's block holds two bytes at p.
    let h = unsafe { (p as *const u16).read_unaligned() };
    _mm512_cvtph_ps(_mm256_set1_epi16(h as i16))
}

/// The 16 bytes at `p` widened once to 32-bit lanes, then split into low nibbles (weights 0..16)
/// and high nibbles (weights 16..32): one widening instead of two.
#[target_feature(enable = "avx512f,avx512bw,f16c")]
#[inline]
unsafe fn nibble_lanes(p: *const u8) -> (__m512i, __m512i) {
    // SAFETY: the caller's block holds 16 bytes of nibbles at p.
    let v = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(p as *const __m128i) });
    (_mm512_and_si512(v, _mm512_set1_epi32(0x0f)), _mm512_srli_epi32::<4>(v))
}

struct Q40;
struct Q41;
struct Q80;
struct Q50;
struct Q51;
struct Q6K;

impl Block512 for Q6K {
    const BYTES: usize = 210;
    const SUBS: usize = 8;
    const SCALE_AT: usize = 208;
    const MIN: bool = false;
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, c: usize) -> (__m512, __m512) {
        // One scale per 16 weights, i.e. per register.
        let one = |g: usize| {
            // SAFETY: the caller's Q6_K block, c < 8; AVX-512 CPUs have AVX2, FMA and F16C.
            let (q, s) = unsafe { super::avx2::q6k_bytes(p, c, g) };
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(s))
        };
        (one(0), one(1))
    }
}

/// The fifth bits of a Q5 block (`qh`, u32 at `p`) as 16 in the 32-bit lanes of the weights that
/// have it: weights 0..16, then 16..32.
#[target_feature(enable = "avx512f,avx512bw,f16c")]
#[inline]
unsafe fn fifth_lanes(p: *const u8) -> (__m512i, __m512i) {
    // SAFETY: the caller's block holds four bytes of qh at p.
    let qh = _mm512_set1_epi32(unsafe { (p as *const u32).read_unaligned() } as i32);
    let idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let bit =
        |shift: __m512i| _mm512_slli_epi32::<4>(_mm512_and_si512(_mm512_srlv_epi32(qh, shift), _mm512_set1_epi32(1)));
    (bit(idx), bit(_mm512_add_epi32(idx, _mm512_set1_epi32(16))))
}

impl Block512 for Q50 {
    const BYTES: usize = 22;
    const MIN: bool = false;
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> (__m512, __m512) {
        // SAFETY: a Q5_0 block: qh at 2, nibbles at 6.
        let ((lo, hi), (h0, h1)) = unsafe { (nibble_lanes(p.add(6)), fifth_lanes(p.add(2))) };
        let sixteen = _mm512_set1_epi32(16);
        (
            _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(lo, h0), sixteen)),
            _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(hi, h1), sixteen)),
        )
    }
}

impl Block512 for Q51 {
    const BYTES: usize = 24;
    const MIN: bool = true;
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> (__m512, __m512) {
        // SAFETY: a Q5_1 block: qh at 4, nibbles at 8.
        let ((lo, hi), (h0, h1)) = unsafe { (nibble_lanes(p.add(8)), fifth_lanes(p.add(4))) };
        (_mm512_cvtepi32_ps(_mm512_or_si512(lo, h0)), _mm512_cvtepi32_ps(_mm512_or_si512(hi, h1)))
    }
}

impl Block512 for Q40 {
    const BYTES: usize = 18;
    const MIN: bool = false;
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> (__m512, __m512) {
        // SAFETY: a Q4_0 block: nibbles at 2.
        let (lo, hi) = unsafe { nibble_lanes(p.add(2)) };
        let eight = _mm512_set1_epi32(8);
        (_mm512_cvtepi32_ps(_mm512_sub_epi32(lo, eight)), _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, eight)))
    }
}

impl Block512 for Q41 {
    const BYTES: usize = 20;
    const MIN: bool = true;
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> (__m512, __m512) {
        // SAFETY: a Q4_1 block: nibbles at 4.
        let (lo, hi) = unsafe { nibble_lanes(p.add(4)) };
        (_mm512_cvtepi32_ps(lo), _mm512_cvtepi32_ps(hi))
    }
}

impl Block512 for Q80 {
    const BYTES: usize = 34;
    const MIN: bool = false;
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    #[inline]
    unsafe fn quants(p: *const u8, _: usize) -> (__m512, __m512) {
        // SAFETY: a Q8_0 block: 32 quants at 2.
        let (lo, hi) =
            unsafe { (_mm_loadu_si128(p.add(2) as *const __m128i), _mm_loadu_si128(p.add(18) as *const __m128i)) };
        (_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)))
    }
}

/// Dequantizes whole blocks, 32 weights per step.
///
/// # Safety
/// As [`crate::qblock::DequantBlocksKernel`]; installed only when the CPU has AVX-512F/BW.
pub(crate) unsafe fn dequant_blocks(ty: crate::qblock::BlockType, src: &[u8], out: &mut [f32]) {
    use crate::qblock::BlockType::*;
    assert!(crate::qblock::whole_blocks(ty, src, out));
    // SAFETY: sizes checked; the CPU has the features of this tier (f16c with avx2).
    unsafe {
        match ty {
            Q4_0 => dequant_typed::<Q40>(src, out),
            Q4_1 => dequant_typed::<Q41>(src, out),
            Q8_0 => dequant_typed::<Q80>(src, out),
            Q5_0 => dequant_typed::<Q50>(src, out),
            Q5_1 => dequant_typed::<Q51>(src, out),
            Q6_K => dequant_typed::<Q6K>(src, out),
            // The K-quants with minima run the AVX2 kernels (AVX-512 CPUs have AVX2, FMA and F16C).
            Q4_K | Q5_K => super::avx2::dequant_blocks(ty, src, out),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,f16c")]
unsafe fn dequant_typed<B: Block512>(src: &[u8], out: &mut [f32]) {
    for (s, o) in (0..out.len() / 32).zip(out.chunks_exact_mut(32)) {
        // SAFETY: sub-block s lies inside src (sizes checked); o holds 32 floats.
        unsafe {
            let (w0, w1) = B::load(src.as_ptr().add(s / B::SUBS * B::BYTES), s % B::SUBS);
            _mm512_storeu_ps(o.as_mut_ptr(), w0);
            _mm512_storeu_ps(o.as_mut_ptr().add(16), w1);
        }
    }
}

/// Block-weight product for up to 4 tokens and 2 rows at a time.
///
/// # Safety
/// As [`crate::qblock::GemvBlocksKernel`]; installed only when the CPU has AVX-512F/BW.
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
            // The K-quants with minima run the AVX2 kernels (AVX-512 CPUs have AVX2, FMA and F16C).
            Q4_K | Q5_K => super::avx2::gemv_blocks(args, rows),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,f16c")]
unsafe fn gemv_typed<B: Block512>(args: &crate::qblock::BlockGemvArgs<'_>, rows: Range<usize>) {
    let nb = args.w.k() / (32 * B::SUBS);
    // For types with a minimum: Σ x of every block of every token, so that the minima enter with one
    // fused multiply-add per 16 blocks.
    let mut sums = vec![0f32; if B::MIN { args.m * nb } else { 0 }];
    for (i, row) in sums.chunks_exact_mut(nb.max(1)).enumerate().take(if B::MIN { args.m } else { 0 }) {
        let x = &args.a[i * args.lda..i * args.lda + args.w.k()];
        for (s, xb) in row.iter_mut().zip(x.chunks_exact(32)) {
            *s = xb.iter().sum();
        }
    }
    let mut i0 = 0;
    while i0 < args.m {
        let t = (args.m - i0).min(4);
        let sums = if B::MIN { &sums[i0 * nb..] } else { &sums[..] };
        let mut j = rows.start;
        while j + 2 <= rows.end {
            // SAFETY: rows j.. < rows.end ≤ n and tokens i0..i0+t < m, inside the checked shapes.
            unsafe {
                match t {
                    1 => gemv_tile::<B, 2, 1>(args, j, i0, sums),
                    2 => gemv_tile::<B, 2, 2>(args, j, i0, sums),
                    3 => gemv_tile::<B, 2, 3>(args, j, i0, sums),
                    _ => gemv_tile::<B, 2, 4>(args, j, i0, sums),
                }
            }
            j += 2;
        }
        if j < rows.end {
            // SAFETY: rows j.. < rows.end ≤ n and tokens i0..i0+t < m, inside the checked shapes.
            unsafe {
                match t {
                    1 => gemv_tile::<B, 1, 1>(args, j, i0, sums),
                    2 => gemv_tile::<B, 1, 2>(args, j, i0, sums),
                    3 => gemv_tile::<B, 1, 3>(args, j, i0, sums),
                    _ => gemv_tile::<B, 1, 4>(args, j, i0, sums),
                }
            }
        }
        i0 += t;
    }
}

/// Bytes ahead of the block being read that each row's stream prefetches.
const BLOCK_PREFETCH: usize = 4096;

/// The f16 scales and minima of `cnt ≤ 16` consecutive blocks of `B` from `p`, converted: one
/// gather of the first four bytes of each block (`d`, then `m`). Cheaper than two broadcasts and
/// conversions per block for types with a minimum; types with a scale only convert it in place.
#[target_feature(enable = "avx512f,avx512bw,f16c")]
#[inline]
unsafe fn block_scales<B: Block512>(p: *const u8, cnt: usize) -> (__m512, __m512) {
    let idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(B::BYTES as i32),
    );
    let mask: __mmask16 = if cnt >= 16 { 0xffff } else { (1u16 << cnt) - 1 };
    // SAFETY: lanes below `cnt` read the first four bytes of blocks inside the caller's row; masked
    // lanes read nothing.
    let g = unsafe { _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), mask, idx, p as *const i32) };
    let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    let m = if B::MIN { _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(g))) } else { d };
    (d, m)
}

#[target_feature(enable = "avx512f,avx512bw,f16c")]
#[inline]
unsafe fn gemv_tile<B: Block512, const R: usize, const T: usize>(
    args: &crate::qblock::BlockGemvArgs<'_>,
    j: usize,
    i0: usize,
    sums: &[f32],
) {
    let nb = args.w.k() / (32 * B::SUBS);
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut accm = [[_mm512_setzero_ps(); T]; R];
    let w: [*const u8; R] = std::array::from_fn(|r| args.w.row(j + r).as_ptr());
    // SAFETY: token rows i0..i0+T lie inside A (checked shapes).
    let x: [*const f32; T] = std::array::from_fn(|t| unsafe { args.a.as_ptr().add((i0 + t) * args.lda) });
    #[repr(align(64))]
    struct Scales([f32; 16]);
    let mut ds = [Scales([0.0; 16]), Scales([0.0; 16])];
    for b0 in (0..nb).step_by(16) {
        let cnt = 16.min(nb - b0);
        let mask: __mmask16 = if cnt >= 16 { 0xffff } else { (1u16 << cnt) - 1 };
        for r in 0..R {
            if !B::MIN {
                break;
            }
            // SAFETY: blocks b0..b0 + cnt of row j + r; the store fills 16 floats; the masked loads
            // read the block sums b0..b0 + cnt of each token (nb per token).
            unsafe {
                let (d, m) = block_scales::<B>(w[r].add(b0 * B::BYTES), cnt);
                _mm512_store_ps(ds[r].0.as_mut_ptr(), d);
                for (t, a) in accm[r].iter_mut().enumerate() {
                    let xs = _mm512_maskz_loadu_ps(mask, sums.as_ptr().add(t * nb + b0));
                    *a = _mm512_fmadd_ps(m, xs, *a);
                }
            }
        }
        for bb in 0..cnt {
            let b = b0 + bb;
            // One scale: converted in place; scale and minimum: from the gathered table.
            // SAFETY: block b of each row; the prefetch is a hint and never faults.
            let db: [__m512; R] = std::array::from_fn(|r| unsafe {
                let p = w[r].add(b * B::BYTES);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(BLOCK_PREFETCH) as *const i8);
                if B::MIN { _mm512_set1_ps(ds[r].0[bb]) } else { half512(p.add(B::SCALE_AT)) }
            });
            for c in 0..B::SUBS {
                let at = (b * B::SUBS + c) * 32;
                // SAFETY: floats at .. at + 32 of each token row lie inside it.
                let xs: [(__m512, __m512); T] = std::array::from_fn(|t| unsafe {
                    (_mm512_loadu_ps(x[t].add(at)), _mm512_loadu_ps(x[t].add(at + 16)))
                });
                for r in 0..R {
                    // SAFETY: sub-block c of block b of row j + r.
                    unsafe {
                        let (q0, q1) = B::quants(w[r].add(b * B::BYTES), c);
                        for t in 0..T {
                            let blk = _mm512_fmadd_ps(q1, xs[t].1, _mm512_mul_ps(q0, xs[t].0));
                            acc[r][t] = _mm512_fmadd_ps(blk, db[r], acc[r][t]);
                        }
                    }
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            let v = if B::MIN { _mm512_add_ps(acc[r][t], accm[r][t]) } else { acc[r][t] };
            let s = _mm512_reduce_add_ps(v);
            let (i, jj) = (i0 + t, j + r);
            // SAFETY: element (i, jj) of C is this call's.
            unsafe { *args.c.get().add(i * args.ldc + jj) = args.epi.apply(s, i, jj) };
        }
    }
}

/// Decode attention of one query row: 16-lane dot products and weighted sums.
///
/// # Safety
/// As [`crate::attention::AttendRowKernel`]; installed only when the CPU has AVX-512F.
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

#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
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
    let full = d / 16 * 16;
    for (p, s) in scores[..n].iter_mut().enumerate() {
        let kr = &k[p * ld..p * ld + d];
        let mut acc = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 ≤ full ≤ d values of q and of the key row.
            unsafe {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(q.as_ptr().add(i)), _mm512_loadu_ps(kr.as_ptr().add(i)), acc)
            };
        }
        let tail: f32 = q[full..].iter().zip(&kr[full..]).map(|(a, b)| a * b).sum();
        *s = (_mm512_reduce_add_ps(acc) + tail) * scale;
    }
    // SAFETY: the CPU has this tier.
    let sum = unsafe { softmax(&mut scores[..n], None) };
    out.fill(0.0);
    for (p, &s) in scores[..n].iter().enumerate() {
        let vr = &v[p * ld..p * ld + d];
        let sv = _mm512_set1_ps(s);
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 ≤ full ≤ d values of out and of the value row.
            unsafe {
                let o = _mm512_fmadd_ps(sv, _mm512_loadu_ps(vr.as_ptr().add(i)), _mm512_loadu_ps(out.as_ptr().add(i)));
                _mm512_storeu_ps(out.as_mut_ptr().add(i), o);
            }
        }
        for (o, &x) in out[full..].iter_mut().zip(&vr[full..]) {
            *o += s * x;
        }
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    out.iter_mut().for_each(|o| *o *= inv);
}
