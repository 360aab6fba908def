//! Sparse × dense kernels of every tier against dense math, on edge shapes, densities and epilogues.

mod common;

use common::{GELU_TOL, fill, tiers};
use pare_kernels::dispatch::Table;
use pare_kernels::gemm_f32::dot_tolerance;
use pare_kernels::spmm::spmm_f32_with;
use pare_kernels::{Activation, CsrF32, Epilogue};
use proptest::prelude::*;

fn check(m: usize, n: usize, k: usize, density: f64, epi_kind: u8, seed: u64) {
    let lda = k + (seed as usize % 3);
    let a = fill(m * lda, seed);
    let keep = fill(n * k, seed + 1);
    let w: Vec<f32> = fill(n * k, seed + 2)
        .iter()
        .zip(&keep)
        .map(|(v, r)| if ((r + 1.0) / 2.0) as f64 <= density { *v } else { 0.0 })
        .collect();
    let csr = CsrF32::from_dense(&w, n, k);
    assert_eq!(csr.to_dense(), w, "CSR round trip");
    let bias = fill(n, seed + 3);
    let res = fill(m * n, seed + 4);
    let epi = match epi_kind % 3 {
        0 => Epilogue::default(),
        1 => Epilogue { bias: Some(&bias), act: Activation::Gelu, ..Epilogue::default() },
        _ => Epilogue { alpha: 0.5, bias: Some(&bias), residual: Some((&res, n)), ..Epilogue::default() },
    };
    for t in tiers() {
        for parallel in [false, true] {
            let mut c = vec![f32::NAN; m * n];
            spmm_f32_with(&t, &a, lda, m, &csr, &mut c, n, &epi, parallel);
            for i in 0..m {
                for j in 0..n {
                    let (mut s, mut abs) = (0f64, 0f64);
                    for kk in 0..k {
                        let p = a[i * lda + kk] as f64 * w[j * k + kk] as f64;
                        s += p;
                        abs += p.abs();
                    }
                    let want = epi.apply(s as f32, i, j);
                    let tol = dot_tolerance(k, abs as f32) * 2.0 + GELU_TOL * want.abs() + 1e-6;
                    let got = c[i * n + j];
                    assert!(
                        (got - want).abs() <= tol,
                        "{} m={m} n={n} k={k} d={density}: [{i}][{j}] {got} vs {want}",
                        t.spmm_f32_name
                    );
                }
            }
        }
    }
}

#[test]
fn spmm_edge_shapes_and_densities() {
    for &m in &[1, 2, 15, 16, 17, 31, 33, 64, 129] {
        for &(n, k) in &[(1, 1), (3, 7), (16, 16), (17, 33), (40, 100)] {
            for (e, &d) in [0.0, 0.1, 0.5, 1.0].iter().enumerate() {
                check(m, n, k, d, e as u8, (m * 7 + n * 3 + k) as u64);
            }
        }
    }
}

#[test]
fn spmm_model_shapes() {
    for &(n, k) in &[(384, 384), (1536, 384), (384, 1536)] {
        check(128, n, k, 0.3, 1, 5);
        check(9, n, k, 0.1, 2, 6);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn spmm_random(m in 1usize..50, n in 1usize..60, k in 1usize..80, d in 0.0f64..1.0, e in 0u8..3, seed in 0u64..1000) {
        check(m, n, k, d, e, seed);
    }
}

/// The sparse integer kernel against the dense one on the same pruned weights: bit-identical without
/// GELU (same arithmetic), within the GELU budget with it.
fn check_i8(m: usize, n: usize, k: usize, density: f64, outliers: &[u32], seed: u64) {
    use pare_kernels::gemm_i8::gemm_u8s8_with;
    use pare_kernels::quant::{ActQuant, quantize_rows_with};
    use pare_kernels::spmm_i8::spmm_u8s8_with;
    use pare_kernels::{CsrI8, I8Out, PackedI8, QuantRows};
    let x: Vec<f32> = fill(m * k, seed).iter().map(|v| v * 3.0).collect();
    let keep = fill(n * k, seed + 1);
    let q: Vec<i8> = fill(n * k, seed + 2)
        .iter()
        .zip(&keep)
        .map(|(v, r)| if ((r + 1.0) / 2.0) as f64 <= density { (v * 127.0).round() as i8 } else { 0 })
        .collect();
    let scales: Vec<f32> = fill(n, seed + 3).iter().map(|v| 0.01 + v.abs() * 0.02).collect();
    let dense = PackedI8::from_rows(&q, &scales, n, k).with_outliers(outliers);
    let sparse = CsrI8::from_dense(&q, &scales, n, k).with_outliers(outliers);
    assert_eq!(sparse.to_rows(), q);
    let reference = Table::reference();
    let mut a = QuantRows::default();
    quantize_rows_with(&reference, &x, m, k, k, ActQuant::DynamicAsymmetric, outliers, &mut a);
    let bias = fill(n, seed + 4);
    let res = fill(m * n, seed + 5);
    for act in [Activation::None, Activation::Gelu] {
        let epi = Epilogue { bias: Some(&bias), act, residual: Some((&res, n)), ..Epilogue::default() };
        let mut want = vec![0f32; m * n];
        gemm_u8s8_with(&reference, &a, &dense, I8Out::F32 { c: &mut want, ldc: n, epi });
        for t in tiers() {
            for parallel in [false, true] {
                let mut got = vec![f32::NAN; m * n];
                spmm_u8s8_with(&t, &a, &sparse, &mut got, n, &epi, parallel);
                for idx in 0..m * n {
                    if act == Activation::None {
                        assert_eq!(
                            got[idx].to_bits(),
                            want[idx].to_bits(),
                            "{} m={m} n={n} k={k} [{idx}]",
                            t.spmm_u8s8_name
                        );
                    } else {
                        assert!(
                            (got[idx] - want[idx]).abs() <= GELU_TOL * want[idx].abs().max(1.0),
                            "{} gelu [{idx}]",
                            t.spmm_u8s8_name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn spmm_i8_matches_dense_int8() {
    for &m in &[1, 15, 16, 17, 64, 130] {
        for &(n, k) in &[(1, 4), (17, 33), (64, 96), (384, 384)] {
            for &d in &[0.0, 0.1, 0.5, 1.0] {
                let outliers: Vec<u32> = if k >= 33 { vec![3, 17, 31, 32] } else { vec![] };
                check_i8(m, n, k, d, &outliers, (m + n + k) as u64);
            }
        }
    }
}

#[test]
fn spmm_group_equals_separate_calls() {
    // Query/key/value-like groups, odd sizes included; each output must be bit-identical to its own call.
    for (m, k, ns) in
        [(128, 384, vec![384, 384, 384]), (37, 33, vec![17, 64, 5]), (1, 16, vec![1, 2]), (300, 40, vec![20, 33])]
    {
        let a = fill(m * k, 7);
        let ws: Vec<Vec<f32>> = ns
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                fill(n * k, 11 + i as u64)
                    .into_iter()
                    .enumerate()
                    .map(|(t, v)| if (t * 7 + i) % 10 < 3 { v } else { 0.0 })
                    .collect()
            })
            .collect();
        let csrs: Vec<CsrF32> = ws.iter().zip(&ns).map(|(w, &n)| CsrF32::from_dense(w, n, k)).collect();
        let biases: Vec<Vec<f32>> = ns.iter().enumerate().map(|(i, &n)| fill(n, 30 + i as u64)).collect();
        let mut group: Vec<Vec<f32>> = ns.iter().map(|&n| vec![f32::NAN; m * n]).collect();
        let jobs = csrs
            .iter()
            .zip(group.iter_mut())
            .zip(&biases)
            .map(|((w, c), b)| (w, &mut c[..], w.n(), Epilogue::bias(b)))
            .collect();
        pare_kernels::spmm::spmm_f32_group(&a, k, m, jobs);
        for ((w, b), got) in csrs.iter().zip(&biases).zip(&group) {
            let mut want = vec![0f32; m * w.n()];
            pare_kernels::spmm_f32(&a, k, m, w, &mut want, w.n(), &Epilogue::bias(b));
            assert!(got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "m={m} k={k} n={}", w.n());
        }
    }
}
