//! Every f32 kernel tier against the scalar reference on edge shapes and random problems.

mod common;

use common::{GELU_TOL, fill, tiers};
use pare_kernels::attention::attention_f32_with;
use pare_kernels::gemm_f32::{dot_tolerance, gemm_f32_with};
use pare_kernels::norm::{layer_norm_with, softmax_with};
use pare_kernels::{Activation, AttentionShape, Epilogue, PackedF32, reference};
use proptest::prelude::*;

/// Edge sizes from the design notes.
const EDGES: [usize; 14] = [1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 127, 129, 255, 0];

/// Tolerance of LayerNorm and softmax outputs (values of order 1) against the reference.
const NORM_TOL: f32 = 2e-5;

/// Plain triple loop from the unpacked `W[n][k]`, f64 accumulation.
#[allow(clippy::too_many_arguments)]
fn naive(a: &[f32], lda: usize, m: usize, w: &[f32], n: usize, k: usize, epi: &Epilogue) -> (Vec<f32>, Vec<f32>) {
    let mut c = vec![0.0; m * n];
    let mut bound = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut abs) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = a[i * lda + p] as f64 * w[j * k + p] as f64;
                s += t;
                abs += t.abs();
            }
            c[i * n + j] = epi.apply(s as f32, i, j);
            bound[i * n + j] = abs as f32 * epi.scale(i).abs();
        }
    }
    (c, bound)
}

fn check_gemm(m: usize, n: usize, k: usize, lda_pad: usize, epi_kind: u8, seed: u64) {
    let lda = k + lda_pad;
    let a = fill(m * lda, seed);
    let w = fill(n * k, seed + 1);
    let bias = fill(n, seed + 2);
    let res = fill(m * n, seed + 3);
    let rs: Vec<f32> = fill(m, seed + 4).iter().map(|v| v + 1.5).collect();
    let epi = match epi_kind % 5 {
        0 => Epilogue::default(),
        1 => Epilogue::bias(&bias),
        2 => Epilogue { bias: Some(&bias), act: Activation::Gelu, ..Epilogue::default() },
        3 => Epilogue { alpha: 0.37, bias: Some(&bias), residual: Some((&res, n)), ..Epilogue::default() },
        _ => Epilogue { alpha: 0.5, row_scale: Some(&rs), bias: Some(&bias), ..Epilogue::default() },
    };
    let packed = PackedF32::from_rows(&w, n, k);
    assert_eq!(packed.to_rows(), w, "packing round trip");
    let (want, bound) = naive(&a, lda, m, &w, n, k, &epi);
    for t in tiers() {
        let mut c = vec![f32::NAN; m * n];
        gemm_f32_with(&t, &a, lda, m, &packed, &mut c, n, &epi);
        for idx in 0..m * n {
            let tol = dot_tolerance(k, bound[idx]) * 2.0 + GELU_TOL * want[idx].abs() + 1e-6;
            assert!(
                (c[idx] - want[idx]).abs() <= tol,
                "{} m={m} n={n} k={k} epi={epi_kind}: c[{}][{}] = {} want {} (tol {tol})",
                t.gemm_f32_name,
                idx / n,
                idx % n,
                c[idx],
                want[idx]
            );
        }
    }
}

#[test]
fn gemm_edge_shapes() {
    for (s, &m) in EDGES.iter().enumerate() {
        for &n in &[1, 16, 17, 31, 32, 33, 63, 129] {
            for &k in &[1, 3, 16, 33, 127] {
                check_gemm(m, n, k, (s % 3) * 5, (m + n + k) as u8 % 5, (m * 1000 + n * 10 + k) as u64);
            }
        }
    }
}

#[test]
fn gemm_model_shapes() {
    for &(m, n, k) in &[(128, 384, 384), (128, 1536, 384), (128, 384, 1536), (9, 384, 384), (1023, 64, 32)] {
        check_gemm(m, n, k, 0, 2, 7);
        check_gemm(m, n, k, 0, 3, 8);
        check_gemm(m, n, k, 0, 4, 9);
    }
}

#[test]
fn gemm_empty_k_gives_epilogue_of_zero() {
    check_gemm(5, 40, 0, 0, 3, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn gemm_random(m in 0usize..70, n in 1usize..100, k in 0usize..90, pad in 0usize..4, e in 0u8..5, seed in 0u64..1000) {
        check_gemm(m, n, k, pad, e, seed);
    }
}

#[test]
fn pack_cols_matches_rows() {
    let (k, n) = (37, 45);
    let b = fill(k * n, 3);
    let mut wt = vec![0.0; n * k];
    for p in 0..k {
        for j in 0..n {
            wt[j * k + p] = b[p * n + j];
        }
    }
    assert_eq!(PackedF32::from_cols(&b, k, n).to_rows(), PackedF32::from_rows(&wt, n, k).to_rows());
}

#[test]
fn layer_norm_matches_reference() {
    for &cols in &[1, 7, 16, 17, 33, 384] {
        for &rows in &[1, 3, 20] {
            let x: Vec<f32> = fill(rows * cols, cols as u64).iter().map(|v| v * 3.0 + 0.5).collect();
            let g = fill(cols, 11);
            let b = fill(cols, 12);
            let mut want = x.clone();
            reference::layer_norm(&mut want, &g, &b, 1e-12);
            for t in tiers() {
                let mut got = x.clone();
                layer_norm_with(&t, &mut got, &g, &b, 1e-12);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= NORM_TOL * (1.0 + w.abs()),
                        "{} cols={cols}: [{i}] {g} vs {w}",
                        t.layer_norm_name
                    );
                }
            }
        }
    }
}

#[test]
fn softmax_matches_reference() {
    for &n in &[1, 2, 15, 16, 17, 100, 128, 257] {
        let x: Vec<f32> = fill(n, n as u64).iter().map(|v| v * 30.0).collect();
        let bias: Vec<f32> = (0..n).map(|j| if j % 3 == 1 { f32::NEG_INFINITY } else { 0.0 }).collect();
        for b in [None, Some(&bias[..])] {
            let mut want = x.clone();
            reference::softmax(&mut want, b);
            for t in tiers() {
                let mut got = x.clone();
                softmax_with(&t, &mut got, b);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= NORM_TOL, "{} n={n}: {g} vs {w}", t.softmax_name);
                }
            }
        }
        // Every key masked: zeros, not NaN.
        let all: Vec<f32> = vec![f32::NEG_INFINITY; n];
        for t in tiers() {
            let mut got = x.clone();
            softmax_with(&t, &mut got, Some(&all));
            assert!(got.iter().all(|&v| v == 0.0), "{}", t.softmax_name);
        }
    }
}

#[test]
fn gelu_vector_matches_erf() {
    let mut xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.005).collect();
    xs.extend([-5.7, -6.0, -30.0, -1e4, -3e38, 1e4, 3e38]);
    let zero = vec![0.0; xs.len()];
    let w = vec![1.0f32];
    let epi = Epilogue { act: Activation::Gelu, residual: Some((&xs, 1)), ..Epilogue::default() };
    // GELU(0) + x: checks the residual path; then GELU(x) via A = x, B = [1].
    for t in tiers() {
        let packed = PackedF32::from_rows(&w, 1, 1);
        let mut c = vec![0.0; xs.len()];
        gemm_f32_with(&t, &zero, 1, xs.len(), &packed, &mut c, 1, &epi);
        assert_eq!(c, xs);
        let epi = Epilogue { act: Activation::Gelu, ..Epilogue::default() };
        // n = 1 is a masked tail; use n = 32 copies so full vectors are exercised too.
        let w32 = vec![1.0f32; 32];
        let packed = PackedF32::from_rows(&w32, 32, 1);
        let mut c = vec![0.0; xs.len() * 32];
        gemm_f32_with(&t, &xs, 1, xs.len(), &packed, &mut c, 32, &epi);
        for (i, &x) in xs.iter().enumerate() {
            let want = reference::gelu(x);
            for j in 0..32 {
                let got = c[i * 32 + j];
                assert!(
                    (got - want).abs() <= GELU_TOL * x.abs().max(1e-3) + 1e-7,
                    "{} gelu({x}) = {got}, want {want}",
                    t.gemm_f32_name
                );
            }
        }
    }
}

/// Attention written out with f64 sums.
fn naive_attention(q: &[f32], k: &[f32], v: &[f32], ld: usize, mask: Option<&[u8]>, s: AttentionShape) -> Vec<f32> {
    let w = s.heads * s.head_dim;
    let mut out = vec![0.0; s.batch * s.seq * w];
    let scale = 1.0 / (s.head_dim as f64).sqrt();
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.seq {
                let qi = &q[(b * s.seq + i) * ld + h * s.head_dim..][..s.head_dim];
                let mut sc: Vec<f64> = (0..s.seq)
                    .map(|j| {
                        if mask.is_some_and(|m| m[b * s.seq + j] == 0) {
                            return f64::NEG_INFINITY;
                        }
                        let kj = &k[(b * s.seq + j) * ld + h * s.head_dim..][..s.head_dim];
                        qi.iter().zip(kj).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>() * scale
                    })
                    .collect();
                let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = sc
                    .iter_mut()
                    .map(|x| {
                        *x = (*x - mx).exp();
                        *x
                    })
                    .sum();
                for d in 0..s.head_dim {
                    let acc: f64 =
                        (0..s.seq).map(|j| sc[j] / sum * v[(b * s.seq + j) * ld + h * s.head_dim + d] as f64).sum();
                    out[(b * s.seq + i) * w + h * s.head_dim + d] = acc as f32;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_naive() {
    for &(batch, seq, heads, head_dim) in
        &[(1, 1, 1, 1), (2, 7, 3, 8), (1, 33, 2, 32), (3, 17, 4, 16), (1, 128, 12, 32)]
    {
        let s = AttentionShape { batch, seq, heads, head_dim };
        let ld = heads * head_dim + 3;
        let rows = batch * seq;
        let (q, k, v) = (fill(rows * ld, 1), fill(rows * ld, 2), fill(rows * ld, 3));
        let q: Vec<f32> = q.iter().map(|x| x * 4.0).collect();
        let mask: Vec<u8> = (0..rows).map(|r| u8::from(r % seq < seq - seq / 3 || r % seq == 0)).collect();
        for m in [None, Some(&mask[..])] {
            let want = naive_attention(&q, &k, &v, ld, m, s);
            let w = heads * head_dim;
            for t in tiers() {
                let mut got = vec![f32::NAN; rows * w];
                attention_f32_with(&t, &q, &k, &v, ld, m, s, &mut got, w);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!((g - e).abs() <= 1e-5, "{} {s:?}: out[{i}] {g} vs {e}", t.gemm_f32_name);
                }
            }
        }
    }
}

#[test]
fn f64_dot_and_axpy_match_reference() {
    use pare_kernels::blas::dot_f64_tolerance;
    for n in [0usize, 1, 3, 4, 7, 15, 16, 17, 31, 33, 63, 127, 129, 1023] {
        let a: Vec<f64> = fill(n, n as u64 + 1).iter().map(|&v| v as f64 * 3.0).collect();
        let b: Vec<f64> = fill(n, n as u64 + 2).iter().map(|&v| v as f64).collect();
        let want = reference::dot_f64(&a, &b);
        let abs: f64 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        let mut y_want = b.clone();
        reference::axpy_f64(&mut y_want, -0.7, &a);
        for t in tiers() {
            let got = t.dot_f64(&a, &b);
            assert!((got - want).abs() <= dot_f64_tolerance(n, abs), "{:?} dot n={n}: {got} vs {want}", t.isa);
            let mut y = b.clone();
            t.axpy_f64(&mut y, -0.7, &a);
            for (g, w) in y.iter().zip(&y_want) {
                assert!((g - w).abs() <= 4.0 * f64::EPSILON * (w.abs() + 1.0), "{:?} axpy n={n}", t.isa);
            }
        }
    }
}

#[test]
fn every_tier_attends_one_row_like_the_reference() {
    use pare_kernels::attention::attend_row_f32_with;
    use pare_kernels::dispatch::Table;
    for t in tiers() {
        for &(d, n, ld) in &[(64usize, 1usize, 192usize), (64, 37, 192), (17, 5, 20), (8, 300, 8), (128, 2, 128)] {
            let q = fill(d, 1);
            let (k, v) = (fill((n - 1) * ld + d, 2), fill((n - 1) * ld + d, 3));
            let (mut want, mut got) = (vec![0f32; d], vec![f32::NAN; d]);
            let (mut s1, mut s2) = (vec![0f32; n], vec![0f32; n]);
            attend_row_f32_with(&Table::reference(), &q, &k, &v, ld, n, 0.125, &mut s1, &mut want);
            attend_row_f32_with(&t, &q, &k, &v, ld, n, 0.125, &mut s2, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= NORM_TOL, "{:?} d={d} n={n}: {g} vs {w}", t.isa);
            }
        }
    }
}
