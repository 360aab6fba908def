//! Peak arithmetic throughput of one core, measured with register-only loops of independent
//! multiply-accumulate chains: the yardstick `pare hwbench` divides kernel speeds by.

use crate::isa::Isa;
use std::time::Instant;

/// What a peak figure counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeakKind {
    /// f32 fused multiply-adds (2 flops each lane).
    F32Fma,
    /// u8×s8 dot products into i32 (2 ops per multiply).
    Int8Dot,
}

/// Measured peak of `kind` at tier `isa` on the calling thread, in G(FL)OP/s; `None` when the CPU
/// lacks the tier or the tier has no such instruction.
pub fn measure(kind: PeakKind, isa: Isa) -> Option<f64> {
    if !isa.is_available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let iters = 2_000_000u64;
        let (ops_per_iter, run): (f64, fn(u64) -> f32) = match (kind, isa) {
            (PeakKind::F32Fma, Isa::Avx2) => (12.0 * 8.0 * 2.0, x86::fma_avx2),
            (PeakKind::F32Fma, Isa::Avx512 | Isa::Vnni | Isa::Amx) => (16.0 * 16.0 * 2.0, x86::fma_avx512),
            (PeakKind::Int8Dot, Isa::Vnni | Isa::Amx) => (16.0 * 64.0 * 2.0, x86::dot_vnni),
            _ => return None,
        };
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            std::hint::black_box(run(std::hint::black_box(iters)));
            best = best.min(t.elapsed().as_secs_f64());
        }
        Some(ops_per_iter * iters as f64 / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kind;
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 12 independent FMA chains of 8 lanes (AVX2 has 16 registers).
    pub fn fma_avx2(iters: u64) -> f32 {
        // SAFETY: only installed for tiers whose CPU check passed (`measure` checks `is_available`).
        unsafe { fma_avx2_impl(iters) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn fma_avx2_impl(iters: u64) -> f32 {
        // Opaque operands: the compiler must not find the loop's fixed point.
        let (a, b) = (_mm256_set1_ps(std::hint::black_box(0.999_9)), _mm256_set1_ps(std::hint::black_box(1e-4)));
        let mut acc: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(std::hint::black_box(i as f32)));
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm256_fmadd_ps(*r, a, b);
            }
        }
        let mut out = [0f32; 8];
        let s = acc.iter().fold(_mm256_setzero_ps(), |s, v| _mm256_add_ps(s, *v));
        // SAFETY: 8 floats into `out`.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }

    /// 16 independent FMA chains of 16 lanes.
    pub fn fma_avx512(iters: u64) -> f32 {
        // SAFETY: as above.
        unsafe { fma_avx512_impl(iters) }
    }

    #[target_feature(enable = "avx512f")]
    fn fma_avx512_impl(iters: u64) -> f32 {
        // Opaque operands: the compiler must not find the loop's fixed point.
        let (a, b) = (_mm512_set1_ps(std::hint::black_box(0.999_9)), _mm512_set1_ps(std::hint::black_box(1e-4)));
        let mut acc: [__m512; 16] = std::array::from_fn(|i| _mm512_set1_ps(std::hint::black_box(i as f32)));
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm512_fmadd_ps(*r, a, b);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, v| _mm512_add_ps(s, *v)))
    }

    /// 16 independent `vpdpbusd` chains.
    pub fn dot_vnni(iters: u64) -> f32 {
        // SAFETY: as above.
        unsafe { dot_vnni_impl(iters) }
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    fn dot_vnni_impl(iters: u64) -> f32 {
        let (a, b) = (_mm512_set1_epi8(std::hint::black_box(3)), _mm512_set1_epi8(std::hint::black_box(-2)));
        let mut acc: [__m512i; 16] = std::array::from_fn(|i| _mm512_set1_epi32(std::hint::black_box(i as i32)));
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm512_dpbusd_epi32(*r, a, b);
            }
        }
        _mm512_reduce_add_epi32(acc.iter().fold(_mm512_setzero_si512(), |s, v| _mm512_add_epi32(s, *v))) as f32
    }
}
