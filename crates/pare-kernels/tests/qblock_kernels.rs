//! Block-quantized weight kernels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) of every tier against the scalar reference:
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
/// with `saturate`, every quant at its extreme (nibble 15 and fifth bit set / byte −128 / Q6_K 31 with
/// the 16-weight scales at −128).
fn blocks(ty: BlockType, n: usize, k: usize, seed: u64, saturate: bool) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut data = bytes(n * k / ty.weights() * bb, seed);
    let scales = fill(2 * n * k / ty.weights(), seed + 7);
    if ty == BlockType::Q6_K {
        for (b, blk) in data.chunks_exact_mut(bb).enumerate() {
            blk[208..].copy_from_slice(&half::f16::from_f32(scales[2 * b] * 0.002).to_le_bytes());
            if saturate {
                blk[..192].fill(0xff);
                blk[192..208].fill(0x80);
            }
        }
        return data;
    }
    if matches!(ty, BlockType::Q4_K | BlockType::Q5_K) {
        // d and dmin small, scales, minima and quants random (or all bits set).
        for (b, blk) in data.chunks_exact_mut(bb).enumerate() {
            blk[..2].copy_from_slice(&half::f16::from_f32(scales[2 * b].abs() * 0.01 + 1e-4).to_le_bytes());
            blk[2..4].copy_from_slice(&half::f16::from_f32(scales[2 * b + 1].abs() * 0.01).to_le_bytes());
            if saturate {
                blk[4..].fill(0xff);
            }
        }
        return data;
    }
    for (b, blk) in data.chunks_exact_mut(bb).enumerate() {
        let d = half::f16::from_f32(scales[2 * b] * 0.1);
        blk[..2].copy_from_slice(&d.to_le_bytes());
        let mut q0 = 2;
        if matches!(ty, BlockType::Q4_1 | BlockType::Q5_1) {
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
    let mut out = vec![0f32; data.len() / bb * ty.weights()];
    for (b, o) in data.chunks_exact(bb).zip(out.chunks_exact_mut(ty.weights())) {
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
    // Q5_0: w = d·(q − 16), bit j of qh (bytes 2..6) the fifth bit of weight j; nibbles at 6.
    let mut b = vec![0u8; 22];
    b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
    b[2..6].copy_from_slice(&(1u32 | 1 << 17).to_le_bytes());
    b[6] = 0x3a;
    b[7] = 0x21;
    reference::dequantize_block(BlockType::Q5_0, &b, &mut out);
    // weight 0: 16 + 10 → 5; weight 16: 3 → −6.5; weight 1: 1 → −7.5; weight 17: 16 + 2 → 1.
    assert_eq!((out[0], out[16], out[1], out[17]), (5.0, -6.5, -7.5, 1.0));
    // Q5_1: w = d·q + m; qh at 4, nibbles at 8.
    let mut b = vec![0u8; 24];
    b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
    b[2..4].copy_from_slice(&half::f16::from_f32(-1.0).to_le_bytes());
    b[4..8].copy_from_slice(&(1u32 << 31).to_le_bytes());
    b[23] = 0xf0;
    reference::dequantize_block(BlockType::Q5_1, &b, &mut out);
    assert_eq!((out[31], out[15], out[0]), (14.5, -1.0, -1.0));
    // Q6_K: w = d·s·(q − 32); ql at 0, qh at 128, signed scales at 192, d at 208.
    let mut b = vec![0u8; 210];
    b[208..].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
    // Weight 0: low nibble of ql[0], bits 0–1 of qh[0], scale 0: q = 10 | 2 << 4.
    (b[0], b[128], b[192]) = (0x0a, 0b10, 3);
    // Weight 101 (half 0, l = 5, fourth 32): high nibble of ql[37], bits 6–7 of qh[5], scale 6.
    (b[37], b[133], b[198]) = (0x70, 0x40, 0xfe);
    // Weight 209 (half 1, l = 17, third 32): high nibble of ql[64 + 17], bits 4–5 of qh[32 + 17], scale 13.
    (b[81], b[177], b[205]) = (0xf0, 0x30, 1);
    let mut out = [0f32; 256];
    reference::dequantize_block(BlockType::Q6_K, &b, &mut out);
    assert_eq!((out[0], out[1], out[101], out[209]), (15.0, -48.0, 9.0, 15.5));
}

#[test]
fn every_tier_dequantizes_bit_exactly() {
    for t in tiers() {
        for ty in BlockType::ALL {
            for (nblocks, sat) in [(1, false), (3, false), (37, false), (5, true)] {
                let data = blocks(ty, nblocks, ty.weights(), 11 + nblocks as u64, sat);
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
                for k in [32usize, 64, 96, 576].map(|k| k * ty.weights() / QK) {
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
            let k = if ty.weights() == QK { k } else { k / 96 * 256 };
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
    assert!(BlockRows::new(BlockType::Q6_K, &[0u8; 90], 1, 96).is_err(), "Q6_K rows are whole super-blocks");
    assert!(BlockRows::new(BlockType::Q6_K, &[0u8; 420], 1, 512).is_ok());
}

/// Per-block terms of the Q8-activation product (`d_w · d_x · dot` and the minimum term) in f64, and
/// the sum of their magnitudes, from the reference dequantization and the quantized activations.
fn q8_naive(ty: BlockType, x: &qblock::Q8Rows, data: &[u8], n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let bb = ty.block_bytes();
    let (mut c, mut bound) = (vec![0f64; x.rows * n], vec![0f64; x.rows * n]);
    for i in 0..x.rows {
        let (xq, xd, _) = x.row(i);
        for j in 0..n {
            let rb = k / ty.weights() * bb;
            let row = &data[j * rb..(j + 1) * rb];
            let w = dequantized(ty, row);
            let (mut s, mut abs) = (0f64, 0f64);
            for b in 0..k / QK {
                let t: f64 = (0..QK).map(|q| w[b * QK + q] as f64 * xq[b * QK + q] as f64).sum::<f64>() * xd[b] as f64;
                s += t;
                abs += (0..QK).map(|q| (w[b * QK + q] as f64 * xq[b * QK + q] as f64).abs()).sum::<f64>()
                    * xd[b].abs() as f64;
            }
            c[i * n + j] = s;
            bound[i * n + j] = abs;
        }
    }
    (c, bound)
}

#[test]
fn q8_activations_round_to_nearest_per_block() {
    let mut x = vec![0f32; 64];
    x[0] = 1.27;
    x[1] = -0.5;
    x[2] = 0.004; // 0.4 of a step: rounds to 0
    x[3] = 0.006; // 0.6 of a step: rounds to 1
    let mut q = qblock::Q8Rows::default();
    q.quantize(&x, 64, 1, 64);
    let (xq, xd, xs) = q.row(0);
    assert_eq!(&xq[..4], &[127, -50, 0, 1]);
    // Scales and sums are stored as llama.cpp's Q8_0/Q8_1 store them: rounded to f16.
    let f16 = |v: f32| half::f16::from_f32(v).to_f32();
    assert!(xd[0] == f16(0.01) && xd[1] == 0.0, "{xd:?}");
    assert!(xs[0] == f16(0.01f32 * 78.0) && xs[1] == 0.0, "{xs:?}");
    assert!(xq[32..].iter().all(|&v| v == 0), "an all-zero block quantizes to zeros");
    assert_eq!(q.row_bsums(0)[..2], [127 - 50 + 1, 0]);
}

#[test]
fn q8_k_activations_follow_the_signed_extremum_of_each_super_block() {
    // Q8_K: the value of largest magnitude x_m maps to −127 and fixes d = −x_m / 127 for all 256
    // values; ties round to even.
    let mut x = vec![0f32; 512];
    x[0] = 0.5;
    x[1] = -2.54;
    x[2] = -0.05; // −2.5 steps: rounds to even (−2)
    x[3] = 0.07; // 3.5 steps: rounds to even (4)
    let mut q = qblock::Q8Rows::default();
    q.quantize_as(qblock::Q8Kind::Super256, &x, 512, 1, 512);
    let (xq, xd, xs) = q.row(0);
    assert_eq!(&xq[..4], &[25, -127, -2, 4]);
    assert!(xd[..8].iter().all(|&d| (d - 0.02).abs() < 1e-8), "{xd:?}");
    assert!(xd[8..].iter().all(|&d| d == 0.0) && xq[256..].iter().all(|&v| v == 0));
    assert_eq!(q.row_bsums(0)[0], 25 - 127 - 2 + 4);
    assert!((xs[0] - xd[0] * -100.0).abs() < 1e-6);
}

/// Full-range activation quants (against saturated weights: the i16 pair sums at their largest),
/// with their sums per 16 and scaled sums per 32 recomputed.
fn saturate(x: &mut qblock::Q8Rows) {
    x.q.iter_mut().enumerate().for_each(|(i, q)| *q = if i % 3 == 0 { -127 } else { 127 });
    for (b, s) in x.bsums.iter_mut().enumerate() {
        *s = x.q[b * 16..(b + 1) * 16].iter().map(|&q| q as i16).sum();
    }
    for (b, s) in x.s.iter_mut().enumerate() {
        *s = x.d[b] * x.q[b * QK..(b + 1) * QK].iter().map(|&q| q as i32).sum::<i32>() as f32;
    }
}

#[test]
fn every_tier_matches_the_q8_reference() {
    for t in tiers() {
        for ty in BlockType::ALL {
            let mut seed = 500;
            for &(m, n, k, sat) in &[
                (1usize, 1usize, 32usize, false),
                (1, 2, 64, false),
                (1, 7, 576, false),
                (3, 33, 96, false),
                (4, 65, 1536, false),
                (2, 5, 4096, true),
            ] {
                seed += 1;
                if !k.is_multiple_of(ty.weights()) {
                    continue;
                }
                let a = fill(m * k, seed);
                let mut x = qblock::Q8Rows::default();
                x.quantize_as(ty.q8_kind(), &a, k, m, k);
                if sat {
                    saturate(&mut x);
                }
                let data = blocks(ty, n, k, seed + 1, sat);
                let w = BlockRows::new(ty, &data, n, k).unwrap();
                let bias = fill(n, seed + 2);
                let epi = Epilogue::bias(&bias);
                let (want, bound) = q8_naive(ty, &x, &data, n, k);
                let mut got = vec![f32::NAN; m * n];
                qblock::gemm_blocks_q8_with(&t, &x, &w, &mut got, n, &epi);
                for (idx, g) in got.iter().enumerate() {
                    let j = idx % n;
                    let wv = want[idx] + bias[j] as f64;
                    let tol = dot_tolerance(k, bound[idx] as f32) as f64 * 4.0 + 1e-6 * wv.abs() + 1e-6;
                    assert!(
                        (*g as f64 - wv).abs() <= tol,
                        "{} {} m={m} n={n} k={k} at {idx}: {g} vs {wv} (tol {tol})",
                        t.gemv_blocks_q8_name,
                        ty.name()
                    );
                }
            }
        }
    }
}

#[test]
fn q8_product_stays_close_to_the_float_product() {
    // What quantizing the activations costs on random data: relative error of each output against
    // the f32 product, measured against the output's scale (not asserted to be zero).
    let (m, n) = (2, 64);
    for ty in BlockType::ALL {
        let k = if ty.weights() == QK { 576 } else { 512 };
        let a = fill(m * k, 77);
        let mut x = qblock::Q8Rows::default();
        x.quantize_as(ty.q8_kind(), &a, k, m, k);
        let data = blocks(ty, n, k, 78, false);
        let w = BlockRows::new(ty, &data, n, k).unwrap();
        let (mut f, mut q) = (vec![0f32; m * n], vec![0f32; m * n]);
        gemm_blocks_f32_with(&Table::reference(), &a, k, m, &w, &mut f, n, &Epilogue::default(), false);
        qblock::gemm_blocks_q8(&x, &w, &mut q, n, &Epilogue::default());
        let rms = (f.iter().map(|v| v * v).sum::<f32>() / f.len() as f32).sqrt();
        let worst = f.iter().zip(&q).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 0.02 * rms, "{}: worst |Δ| {worst} against rms {rms}", ty.name());
    }
}

#[test]
fn interleaved_rows_give_the_products_of_the_rows_they_came_from() {
    let mut seed = 900;
    for ty in BlockType::ALL.into_iter().filter(|t| t.interleaves()) {
        for &(m, n, k, sat) in &[
            (1usize, 8usize, 32usize, false),
            (3, 24, 576, false),
            (4, 64, 1536, false),
            (2, 16, 4096, true),
            (17, 8, 64, false),
            (70, 48, 576, false),
        ] {
            seed += 1;
            let data = blocks(ty, n, k, seed, sat);
            let x8 = qblock::interleave8(ty, &data, n, k).unwrap();
            assert_eq!(x8.len(), data.len());
            let mut back = vec![0u8; data.len()];
            qblock::deinterleave8(ty, &x8, k, &mut back);
            assert!(back == data, "{} {n}×{k}: the round trip changed bytes", ty.name());
            // Groups dequantized straight into the transposed form: the stored rows' values, bit for bit.
            let mut rows = vec![0f32; n * k];
            qblock::dequantize_blocks_with(&Table::reference(), ty, &data, &mut rows);
            let gb = x8.len() / (n / 8);
            for t in tiers() {
                for (g, group) in x8.chunks_exact(gb).enumerate() {
                    let mut out = vec![f32::NAN; 8 * k];
                    qblock::dequantize_group_with(&t, ty, group, k, &mut out);
                    for (i, v) in out.iter().enumerate() {
                        let want = rows[(g * 8 + i % 8) * k + i / 8];
                        assert!(
                            v.to_bits() == want.to_bits(),
                            "{} {} group {g} at {i}: {v} vs {want}",
                            t.isa.name(),
                            ty.name()
                        );
                    }
                }
            }
            let (w, wi) = (BlockRows::new(ty, &data, n, k).unwrap(), BlockRows::interleaved(ty, &x8, n, k).unwrap());
            let a = fill(m * k, seed + 1);
            let mut x = qblock::Q8Rows::default();
            x.quantize_as(ty.q8_kind(), &a, k, m, k);
            if sat {
                saturate(&mut x);
            }
            let bias = fill(n, seed + 2);
            let epi = Epilogue::bias(&bias);
            // Against the scalar reference on the rows as stored (the same activation sums, where the
            // naive product would take exact ones), within the rounding of a reordered sum.
            let (_, bound) = q8_naive(ty, &x, &data, n, k);
            let mut want = vec![f32::NAN; m * n];
            qblock::gemm_blocks_q8_with(&Table::reference(), &x, &w, &mut want, n, &epi);
            let mut threaded = vec![f32::NAN; m * n];
            qblock::gemm_blocks_q8(&x, &wi, &mut threaded, n, &epi);
            for t in tiers() {
                let mut got = vec![f32::NAN; m * n];
                qblock::gemm_blocks_q8_with(&t, &x, &wi, &mut got, n, &epi);
                for (idx, g) in got.iter().chain(&threaded).enumerate() {
                    let idx = idx % (m * n);
                    let wv = want[idx] as f64;
                    let tol = dot_tolerance(k, bound[idx] as f32) as f64 * 4.0 + 1e-6 * wv.abs() + 1e-6;
                    assert!(
                        (*g as f64 - wv).abs() <= tol,
                        "{} interleaved {} m={m} n={n} k={k} at {idx}: {g} vs {wv} (tol {tol})",
                        t.gemv_blocks_q8_name,
                        ty.name()
                    );
                }
                // f32 activations: through the panels, equal to the panels over the rows as stored.
                let (mut f, mut fi) = (vec![0f32; m * n], vec![1f32; m * n]);
                gemm_blocks_f32_with(&t, &a, k, m, &w, &mut f, n, &epi, true);
                gemm_blocks_f32_with(&t, &a, k, m, &wi, &mut fi, n, &epi, false);
                assert_eq!(f, fi, "{} interleaved {} with f32 activations", t.gemv_blocks_name, ty.name());
            }
        }
    }
    for (ty, n) in [(BlockType::Q4_K, 8), (BlockType::Q6_K, 8), (BlockType::Q4_0, 12)] {
        let k = ty.weights();
        let data = blocks(ty, n, k, 1, false);
        let err = qblock::interleave8(ty, &data, n, k).unwrap_err();
        assert!(err.contains("no layout interleaved by 8 rows"), "{err}");
    }
}
