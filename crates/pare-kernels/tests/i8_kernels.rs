//! Integer kernels: every tier bit-exact against the scalar reference (accumulators, dequantised
//! outputs without GELU, activation quantization), and the dequantised GEMM close to f32 math.

mod common;

use common::{GELU_TOL, tiers};
use pare_kernels::dispatch::Table;
use pare_kernels::gemm_i8::gemm_u8s8_with;
use pare_kernels::quant::{ActQuant, quantize_rows_with};
use pare_kernels::{Activation, Epilogue, I8Out, PackedI8, QuantRows};
use proptest::prelude::*;

/// Symmetric int8 per row of `wf` (`n × k`): codes and scales (max |w| / 127).
fn quantize_weights(wf: &[f32], n: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let scales: Vec<f32> = wf.chunks_exact(k).map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0).collect();
    let q = wf.iter().enumerate().map(|(i, v)| (v / scales[i / k]).round() as i8).collect();
    debug_assert_eq!(scales.len(), n);
    (q, scales)
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

/// Random problem; `extreme` uses only 255 activations and −128 weights (the largest products).
fn problem(m: usize, n: usize, k: usize, seed: u64, extreme: bool) -> (QuantRows, Vec<i8>, PackedI8) {
    let mut r = Lcg(seed);
    let ld = k.div_ceil(4) * 4 + 4 * (seed as usize % 2);
    let mut a =
        QuantRows { m, k, ld, q: vec![0; m * ld], scale: vec![0.0; m], zero: vec![0; m], ..QuantRows::default() };
    for i in 0..m {
        for kk in 0..k {
            a.q[i * ld + kk] = if extreme { 255 } else { r.next() as u8 };
        }
        a.scale[i] = 0.001 + (r.next() % 1000) as f32 * 1e-5;
        a.zero[i] = (r.next() % 256) as i32;
    }
    let w: Vec<i8> = (0..n * k).map(|_| if extreme { -128 } else { r.next() as i8 }).collect();
    let scales: Vec<f32> = (0..n).map(|_| 0.002 + (r.next() % 1000) as f32 * 1e-5).collect();
    let packed = PackedI8::from_rows(&w, &scales, n, k);
    (a, w, packed)
}

fn check(m: usize, n: usize, k: usize, seed: u64, extreme: bool) {
    let (a, w, b) = problem(m, n, k, seed, extreme);
    assert_eq!(b.to_rows(), w, "pack round trip");
    // Accumulators straight from the definition.
    let mut want = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|kk| a.q[i * a.ld + kk] as i32 * w[j * k + kk] as i32).sum();
        }
    }
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01 - 0.3).collect();
    let res: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let reference = Table::reference();
    let epi = |act| Epilogue { bias: Some(&bias), act, residual: Some((&res, n)), ..Epilogue::default() };
    let mut ref_none = vec![0f32; m * n];
    gemm_u8s8_with(&reference, &a, &b, I8Out::F32 { c: &mut ref_none, ldc: n, epi: epi(Activation::None) });
    let mut ref_gelu = vec![0f32; m * n];
    gemm_u8s8_with(&reference, &a, &b, I8Out::F32 { c: &mut ref_gelu, ldc: n, epi: epi(Activation::Gelu) });
    for t in tiers() {
        let b = PackedI8::from_rows_for(t.i8_layout, &w, &b.scales()[..n], n, k);
        let mut acc = vec![i32::MIN; m * n];
        gemm_u8s8_with(&t, &a, &b, I8Out::I32 { c: &mut acc, ldc: n });
        assert_eq!(acc, want, "{} accumulators m={m} n={n} k={k}", t.gemm_u8s8_name);
        let mut c = vec![f32::NAN; m * n];
        gemm_u8s8_with(&t, &a, &b, I8Out::F32 { c: &mut c, ldc: n, epi: epi(Activation::None) });
        for idx in 0..m * n {
            assert_eq!(
                c[idx].to_bits(),
                ref_none[idx].to_bits(),
                "{} dequantised [{idx}] m={m} n={n} k={k}",
                t.gemm_u8s8_name
            );
        }
        gemm_u8s8_with(&t, &a, &b, I8Out::F32 { c: &mut c, ldc: n, epi: epi(Activation::Gelu) });
        for idx in 0..m * n {
            let tol = GELU_TOL * ref_gelu[idx].abs().max(1.0);
            assert!(
                (c[idx] - ref_gelu[idx]).abs() <= tol,
                "{} gelu [{idx}] {} vs {}",
                t.gemm_u8s8_name,
                c[idx],
                ref_gelu[idx]
            );
        }
    }
}

#[test]
fn gemm_edge_shapes() {
    for &m in &[1, 2, 3, 7, 8, 9, 15, 16, 17, 33] {
        for &n in &[1, 15, 16, 17, 31, 32, 33, 63, 129] {
            for &k in &[1, 3, 4, 5, 16, 33, 127] {
                check(m, n, k, (m * 131 + n * 7 + k) as u64, false);
            }
        }
    }
}

#[test]
fn gemm_saturating_values_over_full_k() {
    // 255 × −128 over k = 1536 and k = 1023 sums to −50 135 040 and −33 392 640: exact in i32.
    for &(m, n, k) in &[(9, 40, 1536), (3, 33, 1023), (17, 64, 384)] {
        check(m, n, k, 1, true);
    }
}

#[test]
fn gemm_model_shapes() {
    for &(m, n, k) in &[(128, 384, 384), (128, 1536, 384), (128, 384, 1536), (5, 1152, 384)] {
        check(m, n, k, 3, false);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn gemm_random(m in 1usize..40, n in 1usize..80, k in 1usize..70, seed in 0u64..1000) {
        check(m, n, k, seed, false);
    }
}

fn check_quantize(x: &[f32], m: usize, k: usize, mode: ActQuant) {
    let reference = Table::reference();
    let mut want = QuantRows::default();
    quantize_rows_with(&reference, x, m, k, k, mode, &[], &mut want);
    for t in tiers() {
        let mut got = QuantRows::default();
        quantize_rows_with(&t, x, m, k, k, mode, &[], &mut got);
        assert_eq!(got.q, want.q, "{} {mode:?} k={k}", t.quantize_row_name);
        assert_eq!(got.scale, want.scale);
        assert_eq!(got.zero, want.zero);
    }
    // Dequantised values are within half a step of the input (inside the range).
    for i in 0..m {
        let (s, z) = (want.scale[i], want.zero[i]);
        for kk in 0..k {
            let x = x[i * k + kk];
            let d = s * (want.q[i * want.ld + kk] as i32 - z) as f32;
            if let ActQuant::Static { .. } = mode {
                continue;
            }
            assert!((d - x).abs() <= 0.5 * s * 1.001 + 1e-6, "{mode:?}: {x} → {d} (scale {s})");
        }
        assert!(
            want.q[i * want.ld + k..(i + 1) * want.ld].iter().all(|&b| b as i32 == z),
            "padding holds the zero point"
        );
    }
}

#[test]
fn quantize_matches_reference() {
    let mut r = Lcg(5);
    for &k in &[1, 3, 15, 16, 17, 64, 383, 384, 1536] {
        let m = 3;
        let mut x: Vec<f32> = (0..m * k).map(|_| (r.next() as f32 / u32::MAX as f32 - 0.3) * 8.0).collect();
        x[0] = 0.0;
        for mode in
            [ActQuant::DynamicAsymmetric, ActQuant::DynamicSymmetric, ActQuant::Static { scale: 0.02, zero: 100 }]
        {
            check_quantize(&x, m, k, mode);
        }
        // All positive, all negative, all zero, huge values against a small static scale.
        let pos: Vec<f32> = x.iter().map(|v| v.abs() + 1.0).collect();
        let neg: Vec<f32> = x.iter().map(|v| -v.abs() - 1.0).collect();
        let zeros = vec![0.0f32; m * k];
        let huge: Vec<f32> = x.iter().map(|v| v * 1e30).collect();
        for v in [&pos, &neg, &zeros] {
            check_quantize(v, m, k, ActQuant::DynamicAsymmetric);
            check_quantize(v, m, k, ActQuant::DynamicSymmetric);
        }
        check_quantize(&huge, m, k, ActQuant::Static { scale: 0.01, zero: 3 });
    }
}

#[test]
fn dequantised_gemm_approximates_float() {
    // Quantize random float problems and compare with f32 math: error bounded by the quantization steps.
    let (m, n, k) = (16, 48, 96);
    let mut r = Lcg(9);
    let x: Vec<f32> = (0..m * k).map(|_| r.next() as f32 / u32::MAX as f32 * 2.0 - 0.7).collect();
    let wf: Vec<f32> = (0..n * k).map(|_| r.next() as f32 / u32::MAX as f32 * 0.2 - 0.1).collect();
    let (q, scales) = quantize_weights(&wf, n, k);
    let mut a = QuantRows::default();
    quantize_rows_with(&Table::reference(), &x, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut a);
    for t in tiers() {
        let b = PackedI8::from_rows_for(t.i8_layout, &q, &scales, n, k);
        let mut c = vec![0f32; m * n];
        gemm_u8s8_with(&t, &a, &b, I8Out::F32 { c: &mut c, ldc: n, epi: Epilogue::default() });
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|kk| x[i * k + kk] * wf[j * k + kk]).sum();
                let bound: f32 = (0..k)
                    .map(|kk| 0.5 * a.scale[i] * wf[j * k + kk].abs() + 0.5 * scales[j] * x[i * k + kk].abs())
                    .sum::<f32>()
                    * 1.1;
                assert!(
                    (c[i * n + j] - exact).abs() <= bound,
                    "{}: {} vs {exact} (bound {bound})",
                    t.gemm_u8s8_name,
                    c[i * n + j]
                );
            }
        }
    }
}

/// Quantizes `x` (m × k) with outlier channels and runs every tier: bit-exact against the reference
/// without GELU, and closer to the float product than without outliers when the outlier channels
/// carry large values.
#[test]
fn outlier_channels() {
    // Four outliers take a register-resident path in the VNNI epilogue; other counts a loop.
    for outliers in [&[5u32, 40, 95][..], &[0, 17, 63, 95], &[33]] {
        check_outliers(outliers);
    }
}

fn check_outliers(outliers: &[u32]) {
    let (m, n, k) = (19, 70, 96);
    let no = outliers.len();
    let mut r = Lcg(21);
    let mut x: Vec<f32> = (0..m * k).map(|_| r.next() as f32 / u32::MAX as f32 * 2.0 - 1.0).collect();
    for i in 0..m {
        for &o in outliers {
            x[i * k + o as usize] = if i % 2 == 0 { 40.0 } else { -25.0 } + i as f32;
        }
    }
    let wf: Vec<f32> = (0..n * k).map(|_| r.next() as f32 / u32::MAX as f32 * 0.2 - 0.1).collect();
    let (q, scales) = quantize_weights(&wf, n, k);
    let plain = PackedI8::from_rows(&q, &scales, n, k);
    let with = plain.clone().with_outliers(outliers);
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
    let reference = Table::reference();
    let (mut a_plain, mut a_out) = (QuantRows::default(), QuantRows::default());
    quantize_rows_with(&reference, &x, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut a_plain);
    quantize_rows_with(&reference, &x, m, k, k, ActQuant::DynamicAsymmetric, outliers, &mut a_out);
    for i in 0..m {
        for (t, &o) in outliers.iter().enumerate() {
            assert_eq!(a_out.outliers[i * no + t], x[i * k + o as usize]);
            assert_eq!(a_out.q[i * a_out.ld + o as usize] as i32, a_out.zero[i]);
        }
    }
    let mut want = vec![0f32; m * n];
    gemm_u8s8_with(&reference, &a_out, &with, I8Out::F32 { c: &mut want, ldc: n, epi: Epilogue::bias(&bias) });
    let mut plain_out = vec![0f32; m * n];
    gemm_u8s8_with(&reference, &a_plain, &plain, I8Out::F32 { c: &mut plain_out, ldc: n, epi: Epilogue::bias(&bias) });
    for t in tiers() {
        let mut a = QuantRows::default();
        quantize_rows_with(&t, &x, m, k, k, ActQuant::DynamicAsymmetric, outliers, &mut a);
        assert_eq!(a.q, a_out.q, "{}", t.quantize_row_name);
        let with = PackedI8::from_rows_for(t.i8_layout, &q, &scales, n, k).with_outliers(outliers);
        let mut c = vec![f32::NAN; m * n];
        gemm_u8s8_with(&t, &a, &with, I8Out::F32 { c: &mut c, ldc: n, epi: Epilogue::bias(&bias) });
        for idx in 0..m * n {
            assert_eq!(c[idx].to_bits(), want[idx].to_bits(), "{} [{idx}]", t.gemm_u8s8_name);
        }
    }
    // Error against float math: the outlier path must be clearly better.
    let (mut e_plain, mut e_out) = (0f64, 0f64);
    for i in 0..m {
        for j in 0..n {
            let exact: f32 = bias[j] + (0..k).map(|kk| x[i * k + kk] * wf[j * k + kk]).sum::<f32>();
            e_plain += ((plain_out[i * n + j] - exact) as f64).powi(2);
            e_out += ((want[i * n + j] - exact) as f64).powi(2);
        }
    }
    assert!(e_out * 3.0 < e_plain, "outliers should cut the error: {e_out} vs {e_plain}");
}

#[test]
#[should_panic(expected = "disagree on outlier channels")]
fn outlier_sets_must_match() {
    let (a, _, b) = problem(4, 8, 16, 1, false);
    let b = b.with_outliers(&[3]);
    let mut c = vec![0f32; 32];
    gemm_u8s8_with(&Table::reference(), &a, &b, I8Out::F32 { c: &mut c, ldc: 8, epi: Epilogue::default() });
}
