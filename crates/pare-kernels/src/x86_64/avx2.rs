//! AVX2 + FMA f32 kernels: a 6×16 register-blocked GEMM over half panels, LayerNorm, softmax.

use crate::gemm_f32::{Activation, GemmF32Args, NR};
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

/// AVX2 GEMM over the column panels `panels`, each done as two halves of 16 columns.
///
/// # Safety
/// The CPU has AVX2 and FMA; `args` passed `gemm_f32::check`; no other thread writes these panels.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_f32(args: &GemmF32Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    let n = args.b.n();
    for p in panels {
        for half in 0..2 {
            let j0 = p * NR + half * 16;
            if j0 >= n {
                break;
            }
            let mut i = rows.start;
            while i + MR <= rows.end {
                // SAFETY: rows i..i+MR lie inside A and C, columns j0.. inside panel p.
                unsafe { tile::<MR>(args, i, p, half) };
                i += MR;
            }
            // SAFETY: as above for the rows.end − i < MR remaining rows.
            unsafe {
                match rows.end - i {
                    0 => {}
                    1 => tile::<1>(args, i, p, half),
                    2 => tile::<2>(args, i, p, half),
                    3 => tile::<3>(args, i, p, half),
                    4 => tile::<4>(args, i, p, half),
                    _ => tile::<5>(args, i, p, half),
                }
            }
        }
    }
}

/// Rows `i0 .. i0+R` × columns `32p + 16·half ..+16` of C.
///
/// # Safety
/// As [`gemm_f32`], with `i0 + R ≤ m` and column `32p + 16·half < n`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(args: &GemmF32Args<'_>, i0: usize, p: usize, half: usize) {
    let k = args.b.k();
    // SAFETY: offset 16·half stays inside each 32-float row of the panel.
    let b = unsafe { args.b.panel_ptr(p).add(half * 16) };
    let ldb = args.b.ld();
    let lda = args.lda;
    // SAFETY: row i0 exists in A.
    let a = unsafe { args.a.as_ptr().add(i0 * lda) };
    let mut c0 = [_mm256_setzero_ps(); R];
    let mut c1 = [_mm256_setzero_ps(); R];
    for kk in 0..k {
        // SAFETY: 16 floats at row kk of the panel (rows `ldb` apart, each with 32 readable floats).
        let (b0, b1) = unsafe { (_mm256_loadu_ps(b.add(kk * ldb)), _mm256_loadu_ps(b.add(kk * ldb + 8))) };
        for r in 0..R {
            // SAFETY: A[i0 + r][kk] is inside A.
            let av = _mm256_set1_ps(unsafe { *a.add(r * lda + kk) });
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
        }
    }
    let j0 = p * NR + half * 16;
    let w = 16.min(args.b.n() - j0);
    let epi = &args.epi;
    for r in 0..R {
        let mut out = [0f32; 16];
        // SAFETY: `out` holds 16 floats.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), c0[r]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), c1[r]);
        }
        if w == 16 && epi.act == Activation::Gelu {
            // Vector GELU for full tiles; the scalar epilogue handles the rest.
            let alpha = _mm256_set1_ps(epi.scale(i0 + r));
            for h in 0..2 {
                // SAFETY: 8 floats of `out`; bias (n values) read at columns < n.
                unsafe {
                    let mut v = _mm256_mul_ps(_mm256_loadu_ps(out.as_ptr().add(8 * h)), alpha);
                    if let Some(bias) = epi.bias {
                        v = _mm256_add_ps(v, _mm256_loadu_ps(bias.as_ptr().add(j0 + 8 * h)));
                    }
                    _mm256_storeu_ps(out.as_mut_ptr().add(8 * h), gelu(v));
                }
            }
            for (jj, v) in out.iter_mut().enumerate() {
                if let Some((res, ld)) = epi.residual {
                    *v += res[(i0 + r) * ld + j0 + jj];
                }
            }
        } else {
            for (jj, v) in out.iter_mut().enumerate().take(w) {
                *v = epi.apply(*v, i0 + r, j0 + jj);
            }
        }
        // SAFETY: columns j0 .. j0 + w < n of row i0 + r of C; this panel is ours.
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), args.c.get().add((i0 + r) * args.ldc + j0), w) };
    }
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

/// Integer GEMM for AVX2: weights widened to s16, `vpmaddwd` (exact), scalar epilogue; 2 rows ×
/// 16 columns per tile.
///
/// # Safety
/// The CPU has AVX2; `args` passed `gemm_i8::check`; panels are ours alone.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_u8s8(args: &crate::gemm_i8::GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    let (m, n) = (rows.end, args.b.n());
    for p in panels {
        for half in 0..2 {
            if p * NR + 16 * half >= n {
                break;
            }
            let mut i = rows.start;
            while i < m {
                // SAFETY: rows i .. i + R exist, panel p exists.
                unsafe { if m - i >= 2 { tile_i8::<2>(args, i, p, half) } else { tile_i8::<1>(args, i, p, half) } }
                i += 2.min(m - i);
            }
        }
    }
}

/// # Safety
/// As [`gemm_u8s8`], with `i0 + R ≤ m` and column `32p + 16·half < n`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_i8<const R: usize>(args: &crate::gemm_i8::GemmI8Args<'_>, i0: usize, p: usize, half: usize) {
    let (a, b) = (args.a, args.b);
    let bp = b.panel(p).as_ptr();
    let mut acc = [[_mm256_setzero_si256(); 4]; R];
    for g in 0..b.k_padded() / 4 {
        let base = g * 128 + 64 * half;
        let w: [__m256i; 4] = std::array::from_fn(|q| {
            // SAFETY: 16 bytes of group g, half `half`, of the panel.
            _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(bp.add(base + 16 * q).cast()) })
        });
        for (r, acc) in acc.iter_mut().enumerate() {
            let at = (i0 + r) * a.ld + 4 * g;
            let x = u32::from_le_bytes([a.q[at], a.q[at + 1], a.q[at + 2], a.q[at + 3]]);
            let av = _mm256_set1_epi64x(super::avx512::widen4(x));
            for q in 0..4 {
                acc[q] = _mm256_add_epi32(acc[q], _mm256_madd_epi16(av, w[q]));
            }
        }
    }
    let j0 = p * NR + 16 * half;
    let w = 16.min(b.n() - j0);
    for (r, acc) in acc.iter().enumerate() {
        let mut out = [0i32; 16];
        for h in 0..2 {
            let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(acc[2 * h], acc[2 * h + 1]));
            // SAFETY: 8 i32 into `out`.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * h).cast(), s) };
        }
        for (jj, &v) in out.iter().enumerate().take(w) {
            // SAFETY: (i0 + r, j0 + jj) inside the checked output, in our panel.
            unsafe { args.store_scalar(v, i0 + r, j0 + jj) };
        }
    }
}
