//! Block weights (Q4_0, Q4_1, Q8_0) × Q8 activations in 256-bit integer arithmetic with `vpdpbusd`
//! (u8 × s8 summed by four into i32), one module per way of reaching it: AVX-512 VNNI/VL and
//! AVX-VNNI. The other types run the AVX2 kernels of `qdot_avx2`. Each block's integer dot
//! product is converted once and scaled by `d_w · d_x`; minima and offsets enter through `d_x · Σ q_x`.

macro_rules! q8_kernels {
    ($module:ident, $features:literal, |$u:ident, $s:ident| $dot:expr) => {
        pub(crate) mod $module {
            use super::super::avx2::half256;
            use crate::qblock::{BlockQ8Args, BlockType};
            use std::arch::x86_64::*;
            use std::ops::Range;

            /// Eight i32 sums of four u8 × s8 products each.
            #[target_feature(enable = $features)]
            #[inline]
            fn dot($u: __m256i, $s: __m256i) -> __m256i {
                $dot
            }

            /// Block weights × Q8 activations.
            ///
            /// # Safety
            /// As [`crate::qblock::GemvBlocksQ8Kernel`]; installed only on CPUs with this module's features.
            pub(crate) unsafe fn gemv_blocks_q8(args: &BlockQ8Args<'_>, rows: Range<usize>) {
                assert!(rows.end <= args.w.n());
                // SAFETY: the caller's contract; the CPU has this module's features.
                unsafe {
                    if args.w.is_interleaved() {
                        // Rows interleaved by eight: the AVX2 kernel (every tier here has AVX2).
                        return super::super::qdot_avx2::gemv_blocks_q8(args, rows);
                    }
                    match args.w.ty() {
                        BlockType::Q4_0 => typed::<0>(args, rows),
                        BlockType::Q4_1 => typed::<1>(args, rows),
                        BlockType::Q8_0 => typed::<2>(args, rows),
                        // The 5- and 6-bit types: the AVX2 kernels (every tier here has AVX2).
                        BlockType::Q5_0 | BlockType::Q5_1 | BlockType::Q6_K | BlockType::Q4_K | BlockType::Q5_K => {
                            super::super::qdot_avx2::gemv_blocks_q8(args, rows)
                        }
                    }
                }
            }

            /// `TY`: 0 = Q4_0, 1 = Q4_1, 2 = Q8_0.
            #[target_feature(enable = $features)]
            unsafe fn typed<const TY: u8>(args: &BlockQ8Args<'_>, rows: Range<usize>) {
                for i in 0..args.x.rows {
                    let mut j = rows.start;
                    while j + 2 <= rows.end {
                        // SAFETY: rows j, j + 1 < n; token i < m (checked shapes).
                        unsafe { tile::<TY, 2>(args, j, i) };
                        j += 2;
                    }
                    if j < rows.end {
                        // SAFETY: as above, one row.
                        unsafe { tile::<TY, 1>(args, j, i) };
                    }
                }
            }

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn tile<const TY: u8, const R: usize>(args: &BlockQ8Args<'_>, j: usize, i: usize) {
                let bytes = args.w.ty().block_bytes();
                let nb = args.w.k() / 32;
                let (xq, xd, xs) = args.x.row(i);
                let w: [*const u8; R] = std::array::from_fn(|r| args.w.row(j + r).as_ptr());
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
                let mut mins = [_mm256_setzero_ps(); R];
                let m4 = _mm256_set1_epi8(0x0f);
                for b in 0..nb {
                    // SAFETY: 32 quants of block b of the activation row.
                    let xv = unsafe { _mm256_loadu_si256(xq.as_ptr().add(32 * b) as *const __m256i) };
                    for r in 0..R {
                        // SAFETY: block b of row j + r; the prefetch is a hint and never faults.
                        unsafe {
                            let p = w[r].add(b * bytes);
                            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(4096) as *const i8);
                            let d = half256(p);
                            let prod = if TY == 2 {
                                let q = _mm256_loadu_si256(p.add(2) as *const __m256i);
                                dot(_mm256_abs_epi8(q), _mm256_sign_epi8(xv, q))
                            } else {
                                let qs = _mm_loadu_si128(p.add(if TY == 1 { 4 } else { 2 }) as *const __m128i);
                                let y = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(qs), qs), m4);
                                dot(y, xv)
                            };
                            let f = _mm256_cvtepi32_ps(prod);
                            acc[r][b & 1] = _mm256_fmadd_ps(f, _mm256_mul_ps(d, _mm256_set1_ps(xd[b])), acc[r][b & 1]);
                            match TY {
                                0 => mins[r] = _mm256_fmadd_ps(d, _mm256_set1_ps(-8.0 * xs[b]), mins[r]),
                                1 => mins[r] = _mm256_fmadd_ps(half256(p.add(2)), _mm256_set1_ps(xs[b]), mins[r]),
                                _ => {}
                            }
                        }
                    }
                }
                for r in 0..R {
                    let v = _mm256_add_ps(acc[r][0], acc[r][1]);
                    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                    let s = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h))) + _mm256_cvtss_f32(mins[r]);
                    let jj = j + r;
                    // SAFETY: element (i, jj) of C is this call's.
                    unsafe { *args.c.get().add(i * args.ldc + jj) = args.epi.apply(s, i, jj) };
                }
            }
        }
    };
}

q8_kernels!(vnni, "avx2,fma,f16c,avx512f,avx512vl,avx512vnni", |u, s| _mm256_dpbusd_epi32(
    _mm256_setzero_si256(),
    u,
    s
));
q8_kernels!(avxvnni, "avx2,fma,f16c,avxvnni", |u, s| _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s));
