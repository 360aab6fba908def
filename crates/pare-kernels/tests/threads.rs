//! Every parallel entry point of the kernels, on small problems with two threads, against the same
//! problem on one thread. Small enough to run under Miri (`cargo +nightly miri test -p pare-kernels
//! --test threads`), which checks that threads write through disjoint raw regions only; under Miri the
//! dispatched tier is the scalar one.

mod common;

use common::fill;
use pare_kernels::attention::attention_f32;
use pare_kernels::dispatch;
use pare_kernels::gemm_f32::{gemm_f32_group, gemm_f32_with};
use pare_kernels::gemm_i8::{gemm_u8s8_group, gemm_u8s8_with};
use pare_kernels::par::{self, SharedRows, for_each_row_block};
use pare_kernels::quant::{ActQuant, quantize_rows_with};
use pare_kernels::spmm::{spmm_f32_group, spmm_f32_with};
use pare_kernels::spmm_i8::spmm_u8s8_with;
use pare_kernels::{
    AttentionShape, CsrF32, CsrI8, Epilogue, I8Out, PackedF32, PackedI8, QuantRows, Split, gemm_f32, gemm_u8s8,
    layer_norm, quantize_rows, spmm_f32, spmm_u8s8,
};

/// Rows: enough row tiles for the integer GEMM to split by rows on two threads.
const M: usize = 33;
/// Inner dimension of the products.
const K: usize = 24;
/// Columns: two column panels.
const N: usize = 40;
/// Row width of quantization and LayerNorm: `M · WIDE` is past the 4096 values where they split.
const WIDE: usize = 128;

fn sparse(w: &[f32]) -> Vec<f32> {
    w.iter().enumerate().map(|(i, &v)| if i % 3 == 0 { v } else { 0.0 }).collect()
}

fn codes(w: &[f32]) -> Vec<i8> {
    w.iter().map(|v| (v * 127.0).round() as i8).collect()
}

#[test]
fn parallel_results_equal_serial_ones() {
    par::set_threads(2);
    let t = dispatch::table();
    let a = fill(M * K, 1);
    let w = fill(N * K, 2);
    let bias = fill(N, 3);
    let epi = Epilogue::bias(&bias);
    let mut one = vec![0f32; M * N];
    let mut two = vec![0f32; M * N];

    let packed = PackedF32::from_rows(&w, N, K);
    gemm_f32_with(t, &a, K, M, &packed, &mut one, N, &epi);
    gemm_f32(&a, K, M, &packed, &mut two, N, &epi);
    assert_eq!(one, two, "gemm_f32");
    let mut three = vec![0f32; M * N];
    gemm_f32_group(&a, K, M, vec![(&packed, &mut two[..], N, epi), (&packed, &mut three[..], N, epi)]);
    assert_eq!(one, two, "gemm_f32_group");
    assert_eq!(one, three, "gemm_f32_group");

    let csr = CsrF32::from_dense(&sparse(&w), N, K);
    spmm_f32_with(t, &a, K, M, &csr, &mut one, N, &epi, false);
    spmm_f32(&a, K, M, &csr, &mut two, N, &epi);
    assert_eq!(one, two, "spmm_f32");
    spmm_f32_group(&a, K, M, vec![(&csr, &mut two[..], N, epi), (&csr, &mut three[..], N, epi)]);
    assert_eq!(one, two, "spmm_f32_group");
    assert_eq!(one, three, "spmm_f32_group");

    let wide = fill(M * WIDE, 9);
    let (mut q1, mut q2) = (QuantRows::default(), QuantRows::default());
    quantize_rows_with(t, &wide, M, WIDE, WIDE, ActQuant::DynamicAsymmetric, &[3, 50], &mut q1);
    quantize_rows(&wide, M, WIDE, WIDE, ActQuant::DynamicAsymmetric, &[3, 50], &mut q2);
    assert_eq!((&q1.q, &q1.scale, &q1.zero, &q1.outliers), (&q2.q, &q2.scale, &q2.zero, &q2.outliers));

    let outliers = [3u32, 20];
    quantize_rows_with(t, &a, M, K, K, ActQuant::DynamicAsymmetric, &outliers, &mut q1);

    let scales = vec![0.01f32; N];
    let p8 = PackedI8::from_rows(&codes(&w), &scales, N, K).with_outliers(&outliers);
    gemm_u8s8_with(t, &q1, &p8, I8Out::F32 { c: &mut one, ldc: N, epi });
    for split in [Split::Rows, Split::Columns] {
        gemm_u8s8(&q1, &p8, I8Out::F32 { c: &mut two, ldc: N, epi }, split);
        assert_eq!(one, two, "gemm_u8s8 {split:?}");
    }
    gemm_u8s8_group(
        &q1,
        vec![(&p8, I8Out::F32 { c: &mut two, ldc: N, epi }), (&p8, I8Out::F32 { c: &mut three, ldc: N, epi })],
    );
    assert_eq!(one, two, "gemm_u8s8_group");
    assert_eq!(one, three, "gemm_u8s8_group");

    let c8 = CsrI8::from_dense(&codes(&sparse(&w)), &scales, N, K).with_outliers(&outliers);
    spmm_u8s8_with(t, &q1, &c8, &mut one, N, &epi, false);
    spmm_u8s8(&q1, &c8, &mut two, N, &epi);
    assert_eq!(one, two, "spmm_u8s8");

    let (g, b) = (fill(WIDE, 4), fill(WIDE, 5));
    let (mut x1, mut x2) = (wide.clone(), wide.clone());
    pare_kernels::norm::layer_norm_with(t, &mut x1, &g, &b, 1e-5);
    layer_norm(&mut x2, &g, &b, 1e-5);
    assert_eq!(x1, x2, "layer_norm");

    let s = AttentionShape { batch: 2, seq: 5, heads: 2, head_dim: 4 };
    let width = s.heads * s.head_dim;
    let (q, kk, v) = (fill(10 * width, 6), fill(10 * width, 7), fill(10 * width, 8));
    let (mut o1, mut o2) = (vec![0f32; 10 * width], vec![0f32; 10 * width]);
    pare_kernels::attention::attention_f32_with(t, &q, &kk, &v, width, None, s, &mut o1, width);
    attention_f32(&q, &kk, &v, width, None, s, &mut o2, width);
    // Same operations on both sides, but Miri perturbs the last bits of `exp` call by call.
    assert!(o1.iter().zip(&o2).all(|(x, y)| (x - y).abs() <= 1e-6), "attention: {o1:?} vs {o2:?}");

    let mut data = vec![0u32; 9 * 3];
    let rows = SharedRows::new(&mut data, 9, 3);
    for_each_row_block(9, 2, true, |blk| {
        for (i, v) in blk.rows_mut(&rows).iter_mut().enumerate() {
            *v = (blk.range().start * 3 + i) as u32;
        }
    });
    assert_eq!(data, (0..27).collect::<Vec<u32>>(), "row blocks");
}
