//! AVX-512 VNNI integer GEMM: `vpdpbusd` (u8 × s8, four products summed into each i32 lane),
//! 8 rows × 32 columns of accumulators, dequantising epilogue in registers.

use super::avx512::{finish_row, lane_mask};
use crate::gemm_i8::{GemmI8Args, NR, OutPtr};
use std::arch::x86_64::*;
use std::ops::Range;

const MR: usize = 8;

/// VNNI GEMM over the column panels `panels`.
///
/// # Safety
/// The CPU has AVX-512F/BW/VNNI; `args` passed `gemm_i8::check`; panels are ours alone.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")]
pub(crate) unsafe fn gemm_u8s8(args: &GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    let m = rows.end;
    for p in panels {
        let mut i = rows.start;
        while i + MR <= m {
            // SAFETY: rows i..i+MR exist, panel p exists.
            unsafe { tile::<MR>(args, i, p) };
            i += MR;
        }
        // SAFETY: as above for the last m − i < MR rows.
        unsafe {
            match m - i {
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

/// Rows `i0 .. i0+R` × panel `p`.
///
/// # Safety
/// As [`gemm_u8s8`], with `i0 + R ≤ m`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")]
#[inline]
unsafe fn tile<const R: usize>(args: &GemmI8Args<'_>, i0: usize, p: usize) {
    let (a, b) = (args.a, args.b);
    let ld = a.ld;
    let groups = b.k_padded() / 4;
    let bp = b.panel(p).as_ptr();
    // SAFETY: row i0 exists in the activations.
    let ap = unsafe { a.q.as_ptr().add(i0 * ld) };
    let mut c0 = [_mm512_setzero_si512(); R];
    let mut c1 = [_mm512_setzero_si512(); R];
    for g in 0..groups {
        // SAFETY: group g of the panel: 128 bytes, 64-byte aligned.
        let (b0, b1) =
            unsafe { (_mm512_load_si512(bp.add(g * 128).cast()), _mm512_load_si512(bp.add(g * 128 + 64).cast())) };
        for r in 0..R {
            // SAFETY: bytes 4g .. 4g+4 of row i0 + r lie inside the row (ld ≥ k_padded).
            let av = _mm512_set1_epi32(unsafe { std::ptr::read_unaligned(ap.add(r * ld + 4 * g).cast::<i32>()) });
            c0[r] = _mm512_dpbusd_epi32(c0[r], av, b0);
            c1[r] = _mm512_dpbusd_epi32(c1[r], av, b1);
        }
    }
    let j0 = p * NR;
    let w = NR.min(b.n() - j0);
    match args.out {
        OutPtr::I32 { c, ldc } => {
            for r in 0..R {
                // SAFETY: masked stores to row i0 + r, columns j0 .. j0 + w, which are ours.
                unsafe {
                    let cp = c.get().add((i0 + r) * ldc + j0);
                    _mm512_mask_storeu_epi32(cp.cast(), lane_mask(w), c0[r]);
                    _mm512_mask_storeu_epi32(cp.add(16).cast(), lane_mask(w.saturating_sub(16)), c1[r]);
                }
            }
        }
        OutPtr::F32 { c, ldc, epi } => {
            // Column sums and scales are padded to whole panels: full loads are in bounds.
            // SAFETY: 32 values from j0 in arrays of panels × 32.
            let (s0, s1, w0, w1) = unsafe {
                let (cs, sc) = (b.col_sums().as_ptr().add(j0), b.scales().as_ptr().add(j0));
                (
                    _mm512_loadu_si512(cs.cast()),
                    _mm512_loadu_si512(cs.add(16).cast()),
                    _mm512_loadu_ps(sc),
                    _mm512_loadu_ps(sc.add(16)),
                )
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
                let z = _mm512_set1_epi32(a.zero[i]);
                let sx = _mm512_set1_ps(a.scale[i]);
                let f0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(c0[r], _mm512_mullo_epi32(z, s0)));
                let f1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(c1[r], _mm512_mullo_epi32(z, s1)));
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
