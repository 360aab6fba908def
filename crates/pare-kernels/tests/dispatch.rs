//! The dispatched kernels follow `PARE_ISA`: the table in use is the highest tier this CPU offers at
//! or below the cap, and the parallel entry points that use it agree with the scalar reference.
//! `scripts/test` runs this under every cap; a cap whose tier the CPU lacks is reported as skipped.

mod common;

use common::fill;
use pare_kernels::dispatch::{self, Table};
use pare_kernels::gemm_f32::{dot_tolerance, gemm_f32_with};
use pare_kernels::gemm_i8::gemm_u8s8_with;
use pare_kernels::isa::{self, Isa};
use pare_kernels::quant::{ActQuant, quantize_rows_with};
use pare_kernels::{Epilogue, I8Out, PackedF32, PackedI8, QuantRows, Split, gemm_f32, gemm_u8s8, quantize_rows};

#[test]
fn dispatched_tier_follows_the_cap() {
    let cap = isa::cap_from_env().expect("PARE_ISA names a tier");
    let want = cap.unwrap_or(Isa::Amx).best_available_up_to();
    let t = dispatch::table();
    match cap {
        Some(c) if !c.is_available() => eprintln!(
            "SKIPPED tier {c}: this CPU lacks it; PARE_ISA={c} runs {} ({}, {})",
            t.isa, t.gemm_f32_name, t.gemm_u8s8_name
        ),
        _ => eprintln!("tier {} in use: {}, {}", t.isa, t.gemm_f32_name, t.gemm_u8s8_name),
    }
    assert_eq!(t.isa, want, "PARE_ISA={cap:?} on a CPU offering {}", isa::detected());
    assert_eq!(isa::active(), want);
}

#[test]
fn dispatched_entry_points_match_the_reference() {
    let (m, n, k) = (37, 70, 100);
    let a = fill(m * k, 1);
    let w = fill(n * k, 2);
    let bias = fill(n, 3);
    let epi = Epilogue::bias(&bias);
    let reference = Table::reference();
    let packed = PackedF32::from_rows(&w, n, k);
    let (mut want, mut got) = (vec![0f32; m * n], vec![0f32; m * n]);
    gemm_f32_with(&reference, &a, k, m, &packed, &mut want, n, &epi);
    gemm_f32(&a, k, m, &packed, &mut got, n, &epi);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 2.0 * dot_tolerance(k, 1.0) * (k as f32), "gemm_f32: {g} vs {w}");
    }
    // Integer path: bit-exact, including the tier's own quantizer.
    let (mut q_ref, mut q) = (QuantRows::default(), QuantRows::default());
    quantize_rows_with(&reference, &a, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut q_ref);
    quantize_rows(&a, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut q);
    assert_eq!(q.q, q_ref.q, "{}", dispatch::table().quantize_row_name);
    let codes: Vec<i8> = w.iter().map(|v| (v * 127.0).round() as i8).collect();
    let p8 = PackedI8::from_rows(&codes, &vec![0.01; n], n, k);
    gemm_u8s8_with(&reference, &q, &p8, I8Out::F32 { c: &mut want, ldc: n, epi });
    gemm_u8s8(&q, &p8, I8Out::F32 { c: &mut got, ldc: n, epi }, Split::Rows);
    assert_eq!(got, want, "{}", dispatch::table().gemm_u8s8_name);
}
