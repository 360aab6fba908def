//! Speed of the block-weight row kernels with f32 and with Q8 activations (and, for the types that
//! have the layout, Q8 activations with rows interleaved by eight), one thread, one token,
//! interleaved round by round: a matrix that stays in L2 and one streamed from memory, in weights
//! per nanosecond (median of 7 rounds).
use pare_kernels::dispatch::Table;
use pare_kernels::qblock::{self, BlockRows, BlockType, Q8Rows, gemm_blocks_f32_with, gemm_blocks_q8_with};
use pare_kernels::{Epilogue, Isa};
use std::time::Instant;

fn main() {
    for isa in [Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Vnni] {
        let Some(t) = Table::for_isa(isa) else { continue };
        for ty in BlockType::ALL {
            for (n, k, label) in [(1536usize, 576usize, "L2"), (160_000, 576, "memory")] {
                // Super-block types: rows of 512, as many weights.
                let (n, k) = if ty.weights() == 256 { (n * k / 512, 512) } else { (n, k) };
                let data: Vec<u8> =
                    (0..n * k / ty.weights() * ty.block_bytes()).map(|i| (i * 7 % 251) as u8 & 0x3b).collect();
                let w = BlockRows::new(ty, &data, n, k).unwrap();
                let x8 = ty.interleaves().then(|| qblock::interleave8(ty, &data, n, k).unwrap());
                let wi = x8.as_deref().map(|d| BlockRows::interleaved(ty, d, n, k).unwrap());
                let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin()).collect();
                let mut q = Q8Rows::default();
                q.quantize_as(ty.q8_kind(), &x, k, 1, k);
                let mut y = vec![0f32; n];
                let reps = if label == "L2" { 100 } else { 3 };
                let (mut f32s, mut q8s, mut x8s) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..7 {
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        gemm_blocks_f32_with(&t, &x, k, 1, &w, &mut y, n, &Epilogue::default(), false);
                    }
                    f32s.push((n * k * reps) as f64 / t0.elapsed().as_secs_f64() / 1e9);
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        gemm_blocks_q8_with(&t, &q, &w, &mut y, n, &Epilogue::default());
                    }
                    q8s.push((n * k * reps) as f64 / t0.elapsed().as_secs_f64() / 1e9);
                    if let Some(wi) = &wi {
                        let t0 = Instant::now();
                        for _ in 0..reps {
                            gemm_blocks_q8_with(&t, &q, wi, &mut y, n, &Epilogue::default());
                        }
                        x8s.push((n * k * reps) as f64 / t0.elapsed().as_secs_f64() / 1e9);
                    }
                }
                let med = |v: &mut Vec<f64>| {
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                let (a, b) = (med(&mut f32s), med(&mut q8s));
                let interleaved =
                    if x8s.is_empty() { String::new() } else { format!(", rows by 8: {:5.2} w/ns", med(&mut x8s)) };
                println!(
                    "{:>8} {} {:>6}: f32 act {a:5.2} w/ns ({}), q8 act {b:5.2} w/ns ({}), {:.2}×{interleaved}",
                    isa.name(),
                    ty.name(),
                    label,
                    t.gemv_blocks_name,
                    t.gemv_blocks_q8_name,
                    b / a
                );
            }
        }
    }
}
