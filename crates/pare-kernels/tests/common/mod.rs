//! Helpers shared by the kernel tests.
#![allow(dead_code)]

use pare_kernels::Isa;
use pare_kernels::dispatch::Table;

/// Relative error budget of SIMD GELU (a rational erf approximation) against libm's erff.
pub const GELU_TOL: f32 = 2e-6;

/// The table of every tier this CPU can run (each with that tier's own kernels), and a line on stderr
/// (once per test binary) naming each tier it lacks as skipped.
pub fn tiers() -> Vec<Table> {
    static NOTE: std::sync::Once = std::sync::Once::new();
    NOTE.call_once(|| {
        for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
            eprintln!("SKIPPED tier {isa}: this CPU lacks it, so its kernels are not tested here");
        }
    });
    Table::available()
}

/// Deterministic values in [-1, 1).
pub fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
