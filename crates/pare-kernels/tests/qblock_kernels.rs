//! Block-quantized weight kernels (Q4_0, Q4_1, Q8_0) of every tier against the scalar reference:
//! dequantization bit-exact, products (row kernel and dequantized panels) within the f32 dot-product
//! bound on edge shapes, saturating blocks and every epilogue.

mod common;

use common::{fill, tiers};
use pare_kernels::dispatch::Table;
use pare_kernels::gemm_f32::dot_tolerance;
use pare_kernels::qblock::{self, BlockRows, BlockType, QK, f16_to_f32, gemm_blocks_f32_with};
use pare_kernels::{Epilogue, gemm_blocks_f32, reference};

/// Deterministic bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// `n × k` weights of type `ty` with random quants and scales of order 0.01–0.1 (and their sign);
/// with `saturate`, every quant at its extreme (nibble 15 / byte −128).
fn blocks(ty: BlockType, n: usize, k: usize, seed: u64, saturate: bool) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut data = bytes(n * k / QK * bb, seed);
    let scales = fill(2 * n * k / QK, seed + 7);
    for (b, blk) in data.chunks_exact_mut(bb).enumerate() {
        let d = half::f16::from_f32(scales[2 * b] * 0.1);
        blk[..2].copy_from_slice(&d.to_le_bytes());
        let mut q0 = 2;
        if ty == BlockType::Q4_1 {
            blk[2..4].copy_from_slice(&half::f16::from_f32(scales[2 * b + 1] * 0.5).to_le_bytes());
            q0 = 4;
        }
        if saturate {
            blk[q0..].fill(if ty == BlockType::Q8_0 { 0x80 } else { 0xff });
        }
    }
    data
}

fn dequantized(ty: BlockType, data: &[u8]) -> Vec<f32> {
    let bb = ty.block_bytes();
    let mut out = vec![0f32; data.len() / bb * QK];
    for (b, o) in data.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
        reference::dequantize_block(ty, b, o);
    }
    out
}

#[test]
fn f16_conversion_is_exact_for_every_value() {
    for h in 0..=u16::MAX {
        let want = half::f16::from_bits(h).to_f32();
        let got = f16_to_f32(h.to_le_bytes());
        assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "f16 {h:#06x}: {got} vs {want}");
    }
}

#[test]
fn reference_dequantization_follows_the_block_layouts() {
    // Q4_1: d = 0.5, m = −1, first byte 0x2a: weight 0 = 0.5·10 − 1 = 4, weight 16 = 0.5·2 − 1 = 0.
    let mut b = vec![0u8; 20];
    b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
    b[2..4].copy_from_slice(&half::f16::from_f32(-1.0).to_le_bytes());
    b[4] = 0x2a;
    let mut out = [0f32; 32];
    reference::dequantize_block(BlockType::Q4_1, &b, &mut out);
    assert_eq!((out[0], out[16], out[1]), (4.0, 0.0, -1.0));
    // Q4_0: w = d·(q − 8).
    let mut b = vec![0u8; 18];
    b[..2].copy_from_slice(&half::f16::from_f32(2.0).to_le_bytes());
    b[2] = 0xf0;
    reference::dequantize_block(BlockType::Q4_0, &b, &mut out);
    assert_eq!((out[0], out[16], out[1]), (-16.0, 14.0, -16.0));
    // Q8_0: w = d·q, signed.
    let mut b = vec![0u8; 34];
    b[..2].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
    b[2] = 0x80;
    b[33] = 4;
    reference::dequantize_block(BlockType::Q8_0, &b, &mut out);
    assert_eq!((out[0], out[31], out[1]), (-32.0, 1.0, 0.0));
}

#[test]
fn every_tier_dequantizes_bit_exactly() {
    for t in tiers() {
        for ty in BlockType::ALL {
            for (nblocks, sat) in [(1, false), (3, false), (37, false), (5, true)] {
                let data = blocks(ty, nblocks, QK, 11 + nblocks as u64, sat);
                let want = dequantized(ty, &data);
                let mut got = vec![f32::NAN; want.len()];
                qblock::dequantize_blocks_with(&t, ty, &data, &mut got);
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{} {}: {nblocks} blocks",
                    t.dequant_blocks_name,
                    ty.name()
                );
            }
        }
    }
}

/// `epi(Σ a·w)` in f64 from the reference-dequantized weights, and the bound of an f32 sum's error.
fn naive(a: &[f32], lda: usize, m: usize, w: &[f32], n: usize, k: usize, epi: &Epilogue) -> (Vec<f32>, Vec<f32>) {
    let (mut c, mut bound) = (vec![0.0; m * n], vec![0.0; m * n]);
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut abs) = (0f64, 0f64);
            for p in 0..k {
                let t = a[i * lda + p] as f64 * w[j * k + p] as f64;
                s += t;
                abs += t.abs();
            }
            c[i * n + j] = epi.apply(s as f32, i, j);
            bound[i * n + j] = dot_tolerance(k, abs as f32) * epi.scale(i).abs();
        }
    }
    (c, bound)
}

#[allow(clippy::too_many_arguments)]
fn check(t: &Table, ty: BlockType, m: usize, n: usize, k: usize, epi_kind: u8, sat: bool, seed: u64) {
    let lda = k + 3;
    let a = fill(m * lda, seed);
    let data = blocks(ty, n, k, seed + 1, sat);
    let w = BlockRows::new(ty, &data, n, k).unwrap();
    let wf = dequantized(ty, &data);
    let bias = fill(n, seed + 2);
    let resid = fill(m * n, seed + 3);
    let epi = match epi_kind {
        0 => Epilogue::default(),
        1 => Epilogue::bias(&bias),
        _ => Epilogue { alpha: 0.5, bias: Some(&bias), residual: Some((&resid, n)), ..Default::default() },
    };
    let (want, bound) = naive(&a, lda, m, &wf, n, k, &epi);
    for panels in [false, true] {
        let mut got = vec![f32::NAN; m * n];
        gemm_blocks_f32_with(t, &a, lda, m, &w, &mut got, n, &epi, panels);
        for (idx, ((g, w), b)) in got.iter().zip(&want).zip(&bound).enumerate() {
            assert!(
                (g - w).abs() <= b + 1e-6 * w.abs(),
                "{} / {} {} m={m} n={n} k={k} epi={epi_kind} panels={panels} at {idx}: {g} vs {w} (bound {b})",
                if panels { t.gemm_f32_name } else { t.gemv_blocks_name },
                t.dequant_blocks_name,
                ty.name()
            );
        }
    }
}

#[test]
fn every_tier_matches_the_reference_on_edge_shapes() {
    for t in tiers() {
        for ty in BlockType::ALL {
            let mut seed = 100;
            for &n in &[1usize, 2, 3, 7, 31, 33, 64, 65] {
                for &k in &[32usize, 64, 96, 576] {
                    for &m in &[1usize, 2, 3, 4, 5, 9] {
                        seed += 1;
                        check(&t, ty, m, n, k, (seed % 3) as u8, false, seed);
                    }
                }
            }
        }
    }
}

#[test]
fn every_tier_handles_saturating_blocks_over_a_long_row() {
    for t in tiers() {
        for ty in BlockType::ALL {
            check(&t, ty, 3, 5, 4096, 1, true, 9);
            check(&t, ty, 1, 2, 4096, 0, true, 10);
        }
    }
}

#[test]
fn dispatched_entry_point_matches_the_reference_in_parallel() {
    let reference = Table::reference();
    for ty in BlockType::ALL {
        for (m, n, k) in [(1, 577, 576), (3, 130, 192), (8, 200, 96), (40, 96, 576)] {
            let a = fill(m * k, 5);
            let data = blocks(ty, n, k, 6, false);
            let w = BlockRows::new(ty, &data, n, k).unwrap();
            let (mut want, mut got) = (vec![0f32; m * n], vec![0f32; m * n]);
            gemm_blocks_f32_with(&reference, &a, k, m, &w, &mut want, n, &Epilogue::default(), false);
            gemm_blocks_f32(&a, k, m, &w, &mut got, n, &Epilogue::default());
            let wf = dequantized(ty, &data);
            let (_, bound) = naive(&a, k, m, &wf, n, k, &Epilogue::default());
            for ((g, w), b) in got.iter().zip(&want).zip(&bound) {
                assert!((g - w).abs() <= 2.0 * b, "{} m={m} n={n}: {g} vs {w}", ty.name());
            }
        }
    }
}

#[test]
fn wrong_sizes_are_refused() {
    assert!(BlockRows::new(BlockType::Q4_1, &[0u8; 40], 1, 48).is_err());
    assert!(BlockRows::new(BlockType::Q4_1, &[0u8; 39], 1, 64).is_err());
    assert!(BlockRows::new(BlockType::Q8_0, &[0u8; 68], 2, 32).is_ok());
}
