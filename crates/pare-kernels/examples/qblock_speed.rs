//! Speed of the block-weight row kernel: one thread, a matrix that stays in L2 and one streamed from
//! memory, in weights per nanosecond and GB/s of weights read.
use pare_kernels::dispatch::Table;
use pare_kernels::qblock::{BlockRows, BlockType, gemm_blocks_f32_with};
use pare_kernels::{Epilogue, Isa};
use std::time::Instant;

fn main() {
    for isa in [Isa::Avx2, Isa::Avx512] {
        let Some(t) = Table::for_isa(isa) else { continue };
        for ty in BlockType::ALL {
            for (n, k, label) in [(1536usize, 576usize, "L2"), (576, 1536, "L2k1536"), (160_000, 576, "memory")] {
                let data: Vec<u8> = (0..n * k / 32 * ty.block_bytes()).map(|i| (i * 7 % 251) as u8 & 0x3b).collect();
                let w = BlockRows::new(ty, &data, n, k).unwrap();
                let x = vec![0.5f32; k];
                let mut y = vec![0f32; n];
                let reps = if label.starts_with("L2") { 200 } else { 5 };
                let mut best = f64::MAX;
                for _ in 0..3 {
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        gemm_blocks_f32_with(&t, &x, k, 1, &w, &mut y, n, &Epilogue::default(), false);
                    }
                    best = best.min(t0.elapsed().as_secs_f64() / reps as f64);
                }
                println!(
                    "{:>6} {} {:>6}: {:.2} weights/ns, {:.1} GB/s",
                    isa.name(),
                    ty.name(),
                    label,
                    (n * k) as f64 / best / 1e9,
                    data.len() as f64 / best / 1e9
                );
            }
        }
    }
}
