//! AMX: availability (CPUID bits and the Linux permission to use the tile data state) and the int8
//! GEMM on tiles. Stable Rust has no AMX intrinsics; the tile instructions are inline assembly.

use super::avx512::finish_i8;
use crate::gemm_i8::{GemmI8Args, I8Layout, NR};
use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;

/// True when the CPU has AMX-TILE and AMX-INT8 and Linux granted this process the tile state.
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| cpu_has_amx() && request_permission())
}

fn cpu_has_amx() -> bool {
    // CPUID leaf 7, sub-leaf 0, EDX: bit 24 AMX-TILE, bit 25 AMX-INT8.
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    if max_leaf < 7 {
        return false;
    }
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

#[cfg(target_os = "linux")]
fn request_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    const SYS_ARCH_PRCTL: usize = 158;
    let ret: isize;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) only changes this process's permitted xsave
    // features; it reads no memory of ours. The syscall clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_permission() -> bool {
    false
}

/// Bytes of K one tile step covers (64 u8 per A-tile row; 16 groups of 4 per B tile).
const KSTEP: usize = 64;
/// Rows per tile.
const TR: usize = 16;

/// A tile configuration (palette 1): bytes per row and rows of each of the 8 tiles.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    /// Tiles 0–3: C (rows `r0`, `r0`, `r1`, `r1` × 16 i32), 4–5: A (rows `r0`, `r1` × 64 bytes), 6–7:
    /// B (16 groups × 16 columns × 4 bytes). A tile with no rows is left unconfigured.
    fn new(r0: usize, r1: usize) -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        let rows = [r0, r0, r1, r1, r0, r1, TR, TR];
        for (t, &r) in rows.iter().enumerate() {
            if r > 0 {
                c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
                c[48 + t] = r as u8;
            }
        }
        TileConfig(c)
    }
}

/// AMX integer GEMM on [`I8Layout::Quads`] weights: per panel and block of 32 rows, 2 × 2 tiles of
/// 16 × 16 accumulators fed by `tdpbusd` (u8 × s8, 16 × 64 by 64 × 16 per instruction) over whole
/// 64-byte steps of K; the last partial step runs as `vpdpbusd` on the stored accumulators, then the
/// AVX-512 epilogue.
///
/// # Safety
/// The CPU has AVX-512 VNNI and AMX-INT8 and Linux granted the tile state (`available()`); `args`
/// passed `gemm_i8::check`; panels are ours alone.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")]
pub(crate) unsafe fn gemm_u8s8(args: &GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    assert_eq!(args.b.layout(), I8Layout::Quads, "gemm_u8s8_32x32_amx reads Quads weights");
    let (a, b) = (args.a, args.b);
    let ld = a.ld;
    let steps = b.k_padded() / KSTEP;
    let mut cfg_rows = (usize::MAX, usize::MAX);
    // Accumulators of one 32 × 32 block, rows 128 bytes apart.
    let mut acc = [0i32; 2 * TR * NR];
    for p in panels {
        let bp = b.panel(p).as_ptr();
        let mut i0 = rows.start;
        while i0 < rows.end {
            let mr = (rows.end - i0).min(2 * TR);
            let (r0, r1) = (mr.min(TR), mr.saturating_sub(TR));
            if (r0, r1) != cfg_rows {
                let cfg = TileConfig::new(r0, r1);
                // SAFETY: a valid palette-1 configuration; the tile state was granted (caller).
                unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
                cfg_rows = (r0, r1);
            }
            // SAFETY: row i0 exists in the activations (rows ⊆ 0..m).
            let ap = unsafe { a.q.as_ptr().add(i0 * ld) };
            // SAFETY: tiles configured above; loads read `rows` × 64 bytes at the given strides, inside
            // the activation rows (64s + 64 ≤ k_padded ≤ ld) and the panel (16 groups of 128 bytes);
            // stores write 16 × 64 bytes (or r1 rows) into `acc` at 128-byte rows.
            unsafe {
                asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                if r1 > 0 {
                    asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                }
                for s in 0..steps {
                    let a0 = ap.add(KSTEP * s);
                    let b0 = bp.add(s * TR * NR * 4);
                    asm!(
                        "tileloadd tmm4, [{a} + {lda}*1]",
                        "tileloadd tmm6, [{b} + {ldb}*1]",
                        "tileloadd tmm7, [{b1} + {ldb}*1]",
                        "tdpbusd tmm0, tmm4, tmm6",
                        "tdpbusd tmm1, tmm4, tmm7",
                        a = in(reg) a0, lda = in(reg) ld, b = in(reg) b0, b1 = in(reg) b0.add(64),
                        ldb = in(reg) NR * 4, options(nostack, readonly)
                    );
                    if r1 > 0 {
                        asm!(
                            "tileloadd tmm5, [{a} + {lda}*1]",
                            "tdpbusd tmm2, tmm5, tmm6",
                            "tdpbusd tmm3, tmm5, tmm7",
                            a = in(reg) a0.add(TR * ld), lda = in(reg) ld, options(nostack, readonly)
                        );
                    }
                }
                let c = acc.as_mut_ptr();
                asm!(
                    "tilestored [{c} + {ldc}*1], tmm0",
                    "tilestored [{c1} + {ldc}*1], tmm1",
                    c = in(reg) c, c1 = in(reg) c.add(TR), ldc = in(reg) NR * 4, options(nostack)
                );
                if r1 > 0 {
                    asm!(
                        "tilestored [{c} + {ldc}*1], tmm2",
                        "tilestored [{c1} + {ldc}*1], tmm3",
                        c = in(reg) c.add(TR * NR), c1 = in(reg) c.add(TR * NR + TR), ldc = in(reg) NR * 4,
                        options(nostack)
                    );
                }
            }
            // The K tail (fewer than 64 bytes), then the epilogue, eight rows at a time.
            let tail = steps * KSTEP / 4..b.k_padded() / 4;
            let mut r = 0;
            while r < mr {
                // SAFETY: rows r .. of `acc` and of the activations, panel p (forwarded contract).
                unsafe {
                    if mr - r >= 8 {
                        finish_rows::<8>(args, &acc, ap, bp, tail.clone(), i0, r, p);
                        r += 8;
                    } else {
                        finish_rows::<1>(args, &acc, ap, bp, tail.clone(), i0, r, p);
                        r += 1;
                    }
                }
            }
            i0 += mr;
        }
    }
    // SAFETY: releases this thread's tile state (configured above, or never: then a no-op).
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Rows `r .. r + R` of a stored block (`acc`, rows of 32 i32): adds the K-tail groups `tail` with
/// `vpdpbusd`, then runs the epilogue for rows `i0 + r ..` of panel `p`.
///
/// # Safety
/// As [`gemm_u8s8`]; `ap` points at activation row `i0`, `bp` at panel `p`; rows `i0 + r .. + R`
/// exist and are ours.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn finish_rows<const R: usize>(
    args: &GemmI8Args<'_>,
    acc: &[i32; 2 * TR * NR],
    ap: *const u8,
    bp: *const i8,
    tail: Range<usize>,
    i0: usize,
    r: usize,
    p: usize,
) {
    let ld = args.a.ld;
    // SAFETY: rows r .. r + R ≤ 32 of `acc`.
    let mut c0: [__m512i; R] =
        std::array::from_fn(|q| unsafe { _mm512_loadu_si512(acc.as_ptr().add((r + q) * NR).cast()) });
    // SAFETY: as above.
    let mut c1: [__m512i; R] =
        std::array::from_fn(|q| unsafe { _mm512_loadu_si512(acc.as_ptr().add((r + q) * NR + 16).cast()) });
    for g in tail {
        // SAFETY: group g of the panel (128 bytes, 64-byte aligned).
        let (b0, b1) =
            unsafe { (_mm512_load_si512(bp.add(g * 128).cast()), _mm512_load_si512(bp.add(g * 128 + 64).cast())) };
        for q in 0..R {
            // SAFETY: bytes 4g .. 4g + 4 of activation row i0 + r + q (ld ≥ k_padded).
            let av = _mm512_set1_epi32(unsafe { std::ptr::read_unaligned(ap.add((r + q) * ld + 4 * g).cast::<i32>()) });
            c0[q] = _mm512_dpbusd_epi32(c0[q], av, b0);
            c1[q] = _mm512_dpbusd_epi32(c1[q], av, b1);
        }
    }
    // SAFETY: forwarded contract; the accumulators hold the u8 codes' sums.
    unsafe { finish_i8::<R>(args, i0 + r, p, &c0, &c1, false) }
}

/// Peak loop: `iters` × four independent `tdpbusd` on tiles loaded once (16 × 64 by 64 × 16 each).
pub(crate) fn dot_amx(iters: u64) -> f32 {
    let a = [1u8; TR * KSTEP];
    let b = [1i8; TR * KSTEP];
    let mut c = [0i32; TR * TR];
    let cfg = TileConfig::new(TR, TR);
    // SAFETY: only installed when `available()`; loads and the store stay inside the arrays above
    // (16 rows of 64 bytes).
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        asm!(
            "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
            "tileloadd tmm4, [{a} + {s}*1]", "tileloadd tmm5, [{a} + {s}*1]",
            "tileloadd tmm6, [{b} + {s}*1]", "tileloadd tmm7, [{b} + {s}*1]",
            a = in(reg) a.as_ptr(), b = in(reg) b.as_ptr(), s = in(reg) KSTEP, options(nostack, readonly)
        );
        for _ in 0..iters {
            asm!(
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                options(nostack, nomem)
            );
        }
        asm!("tilestored [{c} + {s}*1], tmm0", c = in(reg) c.as_mut_ptr(), s = in(reg) 4 * TR, options(nostack));
        asm!("tilerelease", options(nostack, nomem));
    }
    c[0] as f32
}
