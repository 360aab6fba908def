//! Time of one layer's attention at MiniLM's shape (batch 1, 12 heads, 128 tokens, head width 32).
use pare_kernels::{AttentionShape, attention_f32};
use std::time::Instant;

fn main() {
    for threads in [1, 2] {
        pare_kernels::par::set_threads(threads);
        let s = AttentionShape { batch: 1, seq: 128, heads: 12, head_dim: 32 };
        let w = 384;
        let x: Vec<f32> = (0..128 * w).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let mut out = vec![0f32; 128 * w];
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..500 {
                attention_f32(&x, &x, &x, w, None, s, &mut out, w);
            }
            best = best.min(t.elapsed().as_secs_f64() / 500.0);
        }
        let flop = 2.0 * 2.0 * 12.0 * 128.0 * 128.0 * 32.0;
        println!("threads {threads}: {:.1} us per layer ({:.0} GFLOP/s)", best * 1e6, flop / best / 1e9);
    }
}
