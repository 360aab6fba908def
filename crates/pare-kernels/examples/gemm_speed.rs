//! GFLOP/s of the dispatched f32 GEMM on MiniLM's shapes, 1 and 2 threads.
use pare_kernels::{Epilogue, PackedF32, gemm_f32};
use std::time::Instant;

fn main() {
    for threads in [1, 2] {
        pare_kernels::par::set_threads(threads);
        for &(m, n, k) in &[(128, 384, 384), (128, 1536, 384), (128, 384, 1536), (1024, 1024, 1024), (1024, 1536, 384)]
        {
            let a = vec![0.5f32; m * k];
            let w = vec![0.25f32; n * k];
            let bias = vec![0.1f32; n];
            let b = PackedF32::from_rows(&w, n, k);
            let mut c = vec![0.0f32; m * n];
            let epi = Epilogue::bias(&bias);
            let reps = (2e9 / (2.0 * (m * n * k) as f64)).max(3.0) as usize;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..reps {
                    gemm_f32(&a, k, m, &b, &mut c, n, &epi);
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            println!(
                "threads {threads} {m}x{n}x{k}: {:.1} GFLOP/s ({:.1} us)",
                2.0 * (m * n * k) as f64 / best / 1e9,
                best * 1e6
            );
        }
    }
}
