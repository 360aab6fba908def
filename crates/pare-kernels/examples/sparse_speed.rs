//! Sparse f32 kernel against the dense one at MiniLM's shapes (128 tokens), by density.
use pare_kernels::{CsrF32, Epilogue, PackedF32, gemm_f32, spmm_f32};
use std::time::Instant;

fn best(mut f: impl FnMut()) -> f64 {
    let mut b = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..50 {
            f();
        }
        b = b.min(t.elapsed().as_secs_f64() / 50.0);
    }
    b
}

fn main() {
    for threads in [1, 2] {
        pare_kernels::par::set_threads(threads);
        for &(n, k) in &[(384, 384), (1536, 384), (384, 1536)] {
            let m = 128;
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let bias = vec![0.1f32; n];
            let mut c = vec![0f32; m * n];
            let dense_w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0).collect();
            let dense = PackedF32::from_rows(&dense_w, n, k);
            let td = best(|| gemm_f32(&a, k, m, &dense, &mut c, n, &Epilogue::bias(&bias)));
            let mut line = format!("threads {threads} {n}x{k}: dense {:.1} us |", td * 1e6);
            for d in [0.3, 0.2, 0.1, 0.05] {
                let mut r = 0x9E37_79B9_7F4A_7C15u64;
                let w: Vec<f32> = dense_w
                    .iter()
                    .map(|&v| {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        if (r >> 11) as f64 / ((1u64 << 53) as f64) < d { v } else { 0.0 }
                    })
                    .collect();
                let csr = CsrF32::from_dense(&w, n, k);
                if threads == 1 && n == 384 && k == 384 {
                    eprintln!("d={d} actual {:.3}", csr.density());
                }
                let ts = best(|| spmm_f32(&a, k, m, &csr, &mut c, n, &Epilogue::bias(&bias)));
                line += &format!(" d={d}: {:.1} us ({:.2}x)", ts * 1e6, td / ts);
            }
            println!("{line}");
        }
    }
}
