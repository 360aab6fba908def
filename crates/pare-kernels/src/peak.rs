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

/// A register-only loop of independent chains of the instruction a tier's kernels of one kind are
/// built on: `run(iters)` executes `iters` iterations of `ops_per_iter` operations.
#[derive(Clone, Copy, Debug)]
pub struct PeakLoop {
    /// Operations (2 per multiply-accumulate) per iteration.
    pub ops_per_iter: f64,
    /// The loop.
    pub run: fn(u64) -> f32,
    /// The instruction sequence, for reports.
    pub what: &'static str,
}

impl PeakLoop {
    /// The loop of `kind` at tier `isa`; `None` when the CPU lacks the tier (or it has no such loop).
    pub fn of(kind: PeakKind, isa: Isa) -> Option<PeakLoop> {
        if !isa.is_available() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let l = |ops: f64, run: fn(u64) -> f32, what| Some(PeakLoop { ops_per_iter: ops, run, what });
            match (kind, isa) {
                (_, Isa::Scalar) => None,
                (PeakKind::F32Fma, Isa::Avx2 | Isa::AvxVnni) => l(12.0 * 8.0 * 2.0, x86::fma_avx2, "vfmadd ymm"),
                (PeakKind::F32Fma, _) => l(16.0 * 16.0 * 2.0, x86::fma_avx512, "vfmadd zmm"),
                (PeakKind::Int8Dot, Isa::Avx2) => l(12.0 * 16.0 * 2.0, x86::madd_avx2, "vpmaddwd+vpaddd ymm"),
                (PeakKind::Int8Dot, Isa::AvxVnni) => l(12.0 * 32.0 * 2.0, x86::dot_avxvnni, "vpdpbusd ymm"),
                (PeakKind::Int8Dot, Isa::Avx512) => l(12.0 * 32.0 * 2.0, x86::madd_avx512, "vpmaddwd+vpaddd zmm"),
                (PeakKind::Int8Dot, Isa::Vnni) => l(16.0 * 64.0 * 2.0, x86::dot_vnni, "vpdpbusd zmm"),
                (PeakKind::Int8Dot, Isa::Amx) => {
                    l(4.0 * 16.0 * 16.0 * 64.0 * 2.0, crate::x86_64::amx::dot_amx, "tdpbusd tmm")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = kind;
            None
        }
    }

    /// G(FL)OP/s of `iters` iterations on the calling thread (one timed run).
    pub fn gops(&self, iters: u64) -> f64 {
        let t = Instant::now();
        std::hint::black_box((self.run)(std::hint::black_box(iters)));
        self.ops_per_iter * iters as f64 / t.elapsed().as_secs_f64().max(1e-9) / 1e9
    }

    /// G(FL)OP/s of `iters` iterations on each of the kernel threads at once (wall time of the slowest).
    pub fn gops_threads(&self, iters: u64) -> f64 {
        let threads = crate::par::threads();
        let t = Instant::now();
        crate::par::for_each_chunk(threads, |r| {
            for _ in r {
                std::hint::black_box((self.run)(std::hint::black_box(iters)));
            }
        });
        threads as f64 * self.ops_per_iter * iters as f64 / t.elapsed().as_secs_f64().max(1e-9) / 1e9
    }
}

/// Measured peak of `kind` at tier `isa` on the calling thread, in G(FL)OP/s (best of five runs of a
/// few milliseconds); `None` when the CPU lacks the tier or the tier has no such instruction.
pub fn measure(kind: PeakKind, isa: Isa) -> Option<f64> {
    let l = PeakLoop::of(kind, isa)?;
    Some((0..5).map(|_| l.gops(1_000_000)).fold(0.0, f64::max))
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

    /// 12 `vpmaddwd` + `vpaddd` steps per iteration (the AVX2 integer kernels' step).
    pub fn madd_avx2(iters: u64) -> f32 {
        // SAFETY: as above.
        unsafe { madd_avx2_impl(iters) }
    }

    #[target_feature(enable = "avx2")]
    fn madd_avx2_impl(iters: u64) -> f32 {
        // A different weight operand per chain (read from memory) and an input that changes every
        // iteration: the products cannot be hoisted or shared, and only the adds form chains.
        let b: [__m256i; 12] = std::array::from_fn(|i| _mm256_set1_epi16(std::hint::black_box(i as i16 - 6)));
        let (mut x, one) = (_mm256_set1_epi16(std::hint::black_box(3)), _mm256_set1_epi16(std::hint::black_box(1)));
        let mut acc: [__m256i; 12] = std::array::from_fn(|i| _mm256_set1_epi32(std::hint::black_box(i as i32)));
        for _ in 0..iters {
            x = _mm256_xor_si256(x, one);
            for (r, b) in acc.iter_mut().zip(&b) {
                *r = _mm256_add_epi32(*r, _mm256_madd_epi16(x, *b));
            }
        }
        let s = acc.iter().fold(_mm256_setzero_si256(), |s, v| _mm256_add_epi32(s, *v));
        _mm256_extract_epi32::<0>(s) as f32
    }

    /// 12 independent 256-bit `vpdpbusd` chains (AVX-VNNI).
    pub fn dot_avxvnni(iters: u64) -> f32 {
        // SAFETY: as above.
        unsafe { dot_avxvnni_impl(iters) }
    }

    #[target_feature(enable = "avx2,avxvnni")]
    fn dot_avxvnni_impl(iters: u64) -> f32 {
        let (a, b) = (_mm256_set1_epi8(std::hint::black_box(3)), _mm256_set1_epi8(std::hint::black_box(-2)));
        let mut acc: [__m256i; 12] = std::array::from_fn(|i| _mm256_set1_epi32(std::hint::black_box(i as i32)));
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm256_dpbusd_avx_epi32(*r, a, b);
            }
        }
        let s = acc.iter().fold(_mm256_setzero_si256(), |s, v| _mm256_add_epi32(s, *v));
        _mm256_extract_epi32::<0>(s) as f32
    }

    /// 12 512-bit `vpmaddwd` + `vpaddd` steps per iteration (AVX-512 without VNNI).
    pub fn madd_avx512(iters: u64) -> f32 {
        // SAFETY: as above.
        unsafe { madd_avx512_impl(iters) }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    fn madd_avx512_impl(iters: u64) -> f32 {
        // As in `madd_avx2_impl`: products neither hoisted nor shared.
        let b: [__m512i; 12] = std::array::from_fn(|i| _mm512_set1_epi16(std::hint::black_box(i as i16 - 6)));
        let (mut x, one) = (_mm512_set1_epi16(std::hint::black_box(3)), _mm512_set1_epi16(std::hint::black_box(1)));
        let mut acc: [__m512i; 12] = std::array::from_fn(|i| _mm512_set1_epi32(std::hint::black_box(i as i32)));
        for _ in 0..iters {
            x = _mm512_xor_si512(x, one);
            for (r, b) in acc.iter_mut().zip(&b) {
                *r = _mm512_add_epi32(*r, _mm512_madd_epi16(x, *b));
            }
        }
        _mm512_reduce_add_epi32(acc.iter().fold(_mm512_setzero_si512(), |s, v| _mm512_add_epi32(s, *v))) as f32
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
