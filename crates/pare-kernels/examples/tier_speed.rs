//! Best-of-many GFLOP/s of one tier's f32 and int8 GEMMs against its peak loops, for kernel tuning:
//! `cargo run --release -p pare-kernels --example tier_speed -- avx2`.
use pare_kernels::dispatch::Table;
use pare_kernels::gemm_f32::gemm_f32_with;
use pare_kernels::gemm_i8::gemm_u8s8_with;
use pare_kernels::peak::{PeakKind, PeakLoop};
use pare_kernels::quant::{ActQuant, quantize_rows_with};
use pare_kernels::{Epilogue, I8Out, Isa, PackedF32, PackedI8, QuantRows};
use std::time::Instant;

fn best(secs: f64, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.004 / once).ceil() as usize).max(1);
    let mut best = f64::MAX;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    let isa = std::env::args().nth(1).and_then(|s| Isa::parse(&s)).unwrap_or(Isa::Avx2);
    let t = Table::for_isa(isa).expect("tier not on this CPU");
    let pf = PeakLoop::of(PeakKind::F32Fma, isa).map(|l| (0..20).map(|_| l.gops(200_000)).fold(0.0, f64::max));
    let pi = PeakLoop::of(PeakKind::Int8Dot, isa).map(|l| (0..20).map(|_| l.gops(200_000)).fold(0.0, f64::max));
    println!("{isa}: peak f32 {pf:?} int8 {pi:?}");
    for &(m, n, k) in &[(128, 384, 384), (128, 1536, 384), (128, 384, 1536), (1024, 1024, 1024)] {
        let ops = 2.0 * (m * n * k) as f64;
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 1000) as f32 / 5000.0 - 0.1).collect();
        let bias = vec![0.1f32; n];
        let b = PackedF32::from_rows(&w, n, k);
        let mut c = vec![0.0f32; m * n];
        let epi = Epilogue::bias(&bias);
        let tf = best(1.0, || gemm_f32_with(&t, &a, k, m, &b, &mut c, n, &epi));
        let q8: Vec<i8> = w.iter().map(|v| (v * 1270.0).round() as i8).collect();
        let bi = PackedI8::from_rows_for(t.i8_layout, &q8, &vec![0.01; n], n, k);
        let mut q = QuantRows::default();
        quantize_rows_with(&t, &a, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut q);
        let ti = best(1.0, || gemm_u8s8_with(&t, &q, &bi, I8Out::F32 { c: &mut c, ldc: n, epi }));
        let (gf, gi) = (ops / tf / 1e9, ops / ti / 1e9);
        println!(
            "{m}x{n}x{k}: f32 {gf:.1} GFLOP/s ({:.0}%)  int8 {gi:.1} GOP/s ({:.0}%)  int8/f32 {:.2}",
            pf.map_or(0.0, |p| 100.0 * gf / p),
            pi.map_or(0.0, |p| 100.0 * gi / p),
            gi / gf
        );
    }
}
