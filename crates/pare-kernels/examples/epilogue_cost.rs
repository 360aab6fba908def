//! Cost of the epilogue variants of the integer GEMM at MiniLM's FFN-up shape (one thread).
use pare_kernels::quant::ActQuant;
use pare_kernels::{Activation, Epilogue, I8Out, PackedI8, QuantRows, Split, gemm_u8s8, quantize_rows};
use std::time::Instant;

fn main() {
    pare_kernels::par::set_threads(1);
    let (m, n, k) = (128, 1536, 384);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let bias = vec![0.1f32; n];
    let w: Vec<i8> = (0..n * k).map(|i| ((i * 31) % 255) as i8).collect();
    for outliers in [vec![], vec![3u32, 99, 200, 301]] {
        let b = PackedI8::from_rows(&w, &vec![0.01; n], n, k).with_outliers(&outliers);
        let mut q = QuantRows::default();
        quantize_rows(&a, m, k, k, ActQuant::DynamicAsymmetric, &outliers, &mut q);
        let mut c = vec![0f32; m * n];
        for act in [Activation::None, Activation::Gelu] {
            let epi = Epilogue { bias: Some(&bias), act, ..Epilogue::default() };
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..200 {
                    gemm_u8s8(&q, &b, I8Out::F32 { c: &mut c, ldc: n, epi }, Split::Rows);
                }
                best = best.min(t.elapsed().as_secs_f64() / 200.0);
            }
            println!("outliers {} {act:?}: {:.1} us", outliers.len(), best * 1e6);
        }
    }
}
