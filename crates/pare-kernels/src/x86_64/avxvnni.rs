//! AVX-VNNI integer GEMM: VEX-encoded 256-bit `vpdpbusd` (u8 × s8, four products summed into each
//! i32 lane), for CPUs that have it with or without AVX-512. 6 rows × 16 columns per tile; the
//! epilogue is the AVX2 one.

use super::avx2::{finish_i8, for_tiles};
use crate::gemm_i8::{GemmI8Args, I8Layout, NR};
use std::arch::x86_64::*;
use std::ops::Range;

/// AVX-VNNI GEMM over the column panels `panels` of [`I8Layout::Quads`] weights.
///
/// # Safety
/// The CPU has AVX2, FMA and AVX-VNNI; `args` passed `gemm_i8::check`; panels are ours alone.
#[target_feature(enable = "avx2,fma,avxvnni")]
pub(crate) unsafe fn gemm_u8s8(args: &GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    assert_eq!(args.b.layout(), I8Layout::Quads, "gemm_u8s8_6x16_avxvnni reads Quads weights");
    // SAFETY: forwarded contract; the tile kernel matches the layout.
    unsafe { for_tiles(args, panels, rows, tile::<6>, tile::<5>, tile::<4>, tile::<3>, tile::<2>, tile::<1>) }
}

/// Rows `i0 .. i0 + R` × columns `32p + 16·half .. + 16`.
///
/// # Safety
/// As [`gemm_u8s8`], with `i0 + R ≤ m` and column `32p + 16·half < n`.
#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn tile<const R: usize>(args: &GemmI8Args<'_>, i0: usize, p: usize, half: usize) {
    let (a, b) = (args.a, args.b);
    let ld = a.ld;
    // Per group of four k the panel holds 32 columns × 4 bytes; this half starts 16 columns in.
    // SAFETY: offset 64·half stays inside each 128-byte group of the panel.
    let bp = unsafe { b.panel(p).as_ptr().add(64 * half) };
    // SAFETY: row i0 exists in the activations.
    let ap = unsafe { a.q.as_ptr().add(i0 * ld) };
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for g in 0..b.k_padded() / 4 {
        // SAFETY: 32 + 32 bytes of group g of the panel.
        let (w0, w1) =
            unsafe { (_mm256_load_si256(bp.add(128 * g).cast()), _mm256_load_si256(bp.add(128 * g + 32).cast())) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: bytes 4g .. 4g + 4 of row i0 + r (ld ≥ k_padded).
            let av = _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(ap.add(r * ld + 4 * g).cast::<i32>()) });
            acc[0] = _mm256_dpbusd_avx_epi32(acc[0], av, w0);
            acc[1] = _mm256_dpbusd_avx_epi32(acc[1], av, w1);
        }
    }
    // SAFETY: forwarded contract; the activations are the u8 codes.
    unsafe { finish_i8(args, i0, p * NR + 16 * half, &acc, false) }
}
