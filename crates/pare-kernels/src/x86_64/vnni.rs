//! AVX-512 VNNI integer GEMM: `vpdpbusd` (u8 × s8, four products summed into each i32 lane),
//! 8 rows × 32 columns of accumulators, dequantising epilogue in registers.

use super::avx512::finish_i8;
use crate::gemm_i8::{GemmI8Args, I8Layout};
use std::arch::x86_64::*;
use std::ops::Range;

const MR: usize = 8;

/// VNNI GEMM over the column panels `panels`.
///
/// # Safety
/// The CPU has AVX-512F/BW/VNNI; `args` passed `gemm_i8::check`; panels are ours alone.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")]
pub(crate) unsafe fn gemm_u8s8(args: &GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    assert_eq!(args.b.layout(), I8Layout::Quads, "gemm_u8s8_8x32_vnni reads Quads weights");
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
    // SAFETY: forwarded contract; the activations are the u8 codes.
    unsafe { finish_i8(args, i0, p, &c0, &c1, false) }
}
