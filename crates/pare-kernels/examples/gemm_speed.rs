//! GOP/s of the dispatched f32 and u8×s8 GEMMs on MiniLM's shapes, 1 and 2 threads.
use pare_kernels::quant::ActQuant;
use pare_kernels::{Epilogue, I8Out, PackedF32, PackedI8, QuantRows, Split, gemm_f32, gemm_u8s8, quantize_rows};
use std::time::Instant;

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    for threads in [1, 2] {
        pare_kernels::par::set_threads(threads);
        for &(m, n, k) in &[(128, 384, 384), (128, 1536, 384), (128, 384, 1536), (1024, 1024, 1024)] {
            let ops = 2.0 * (m * n * k) as f64;
            let reps = (2e9 / ops).max(3.0) as usize;
            let a = vec![0.5f32; m * k];
            let bias = vec![0.1f32; n];
            let b = PackedF32::from_rows(&vec![0.25f32; n * k], n, k);
            let mut c = vec![0.0f32; m * n];
            let epi = Epilogue::bias(&bias);
            let tf = best(reps, || gemm_f32(&a, k, m, &b, &mut c, n, &epi));
            let bi = PackedI8::from_rows(&vec![3i8; n * k], &vec![0.01; n], n, k);
            let mut q = QuantRows::default();
            quantize_rows(&a, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut q);
            let ti = best(reps * 4, || gemm_u8s8(&q, &bi, I8Out::F32 { c: &mut c, ldc: n, epi }, Split::Rows));
            let tq = best(reps * 4, || quantize_rows(&a, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut q));
            println!(
                "threads {threads} {m}x{n}x{k}: f32 {:.0} GFLOP/s ({:.1} us)  u8s8 {:.0} GOP/s ({:.1} us)  quantize A {:.1} us",
                ops / tf / 1e9,
                tf * 1e6,
                ops / ti / 1e9,
                ti * 1e6,
                tq * 1e6
            );
        }
    }
}
