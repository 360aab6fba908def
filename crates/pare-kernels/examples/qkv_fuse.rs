//! Experiment: three 128×384×384 GEMMs vs one 128×1152×384, and cold vs warm weights.
use pare_kernels::{Epilogue, PackedF32, gemm_f32};
use std::time::Instant;

fn main() {
    pare_kernels::par::set_threads(2);
    let (m, k) = (128, 384);
    let a = vec![0.5f32; m * k];
    let bias3 = vec![0.1f32; 1152];
    let ws: Vec<PackedF32> = (0..3).map(|_| PackedF32::from_rows(&vec![0.25f32; 384 * k], 384, k)).collect();
    let fused = PackedF32::from_rows(&vec![0.25f32; 1152 * k], 1152, k);
    let mut c = vec![0.0f32; m * 1152];
    (|| {
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..1000 {
                for w in &ws {
                    gemm_f32(&a, k, m, w, &mut c[..m * 384], 384, &Epilogue::bias(&bias3[..384]));
                }
            }
            let sep = t.elapsed().as_secs_f64() / 1000.0;
            let t = Instant::now();
            for _ in 0..1000 {
                gemm_f32(&a, k, m, &fused, &mut c, 1152, &Epilogue::bias(&bias3));
            }
            let fu = t.elapsed().as_secs_f64() / 1000.0;
            println!("separate {:.1} us  fused {:.1} us", sep * 1e6, fu * 1e6);
        }
        // Cold weights: 36 distinct matrices shaped like MiniLM's linears (42 MB).
        let shapes = [(384, 384), (384, 384), (384, 384), (384, 384), (1536, 384), (384, 1536)];
        let mats: Vec<(PackedF32, usize, usize)> = (0..6)
            .flat_map(|_| shapes.iter().map(|&(n, k)| (PackedF32::from_rows(&vec![0.01f32; n * k], n, k), n, k)))
            .collect();
        let a = vec![0.5f32; m * 1536];
        let mut c = vec![0.0f32; m * 1536];
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..50 {
                for (w, n, k) in &mats {
                    gemm_f32(&a[..m * k], *k, m, w, &mut c[..m * n], *n, &Epilogue::default());
                }
            }
            let per = t.elapsed().as_secs_f64() / 50.0;
            println!("36 cold GEMMs: {:.3} ms = {:.0} GFLOP/s", per * 1e3, 2.72e9 / per / 1e9);
            let t = Instant::now();
            for _ in 0..50 {
                for (w, n, k) in &mats[..6] {
                    for _ in 0..6 {
                        gemm_f32(&a[..m * k], *k, m, w, &mut c[..m * n], *n, &Epilogue::default());
                    }
                }
            }
            let per = t.elapsed().as_secs_f64() / 50.0;
            println!("36 warm GEMMs: {:.3} ms = {:.0} GFLOP/s", per * 1e3, 2.72e9 / per / 1e9);
        }
    })();
}
