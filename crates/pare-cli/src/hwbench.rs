//! `pare hwbench`: every available kernel of each GEMM family on a few shapes, with its speed and
//! the fraction of this machine's measured peak, marking the kernel the dispatcher uses.

use anyhow::Result;
use clap::Args;
use pare_kernels::dispatch::{self, Table};
use pare_kernels::gemm_f32::gemm_f32_with;
use pare_kernels::gemm_i8::gemm_u8s8_with;
use pare_kernels::peak::{PeakKind, measure};
use pare_kernels::quant::{ActQuant, quantize_rows_with};
use pare_kernels::{Epilogue, I8Out, Isa, PackedF32, PackedI8, QuantRows, Split};
use serde_json::json;
use std::time::Instant;

/// Options of `pare hwbench`.
#[derive(Args, Debug)]
pub struct HwbenchArgs {
    /// Threads for the extra multi-threaded run of each dispatched kernel.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Only MiniLM's shapes (skip 1024³).
    #[arg(long)]
    pub quick: bool,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Seconds of timed work per measurement (split in 5 batches; the median batch counts).
const BUDGET_S: f64 = 0.15;

/// Median time of one call of `f`.
fn time(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((BUDGET_S / 5.0) / once).ceil().max(1.0) as usize;
    let mut batches: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[2]
}

struct Row {
    family: &'static str,
    shape: (usize, usize, usize),
    kernel: String,
    isa: Isa,
    threads: usize,
    gops: f64,
    peak: Option<f64>,
    chosen: bool,
}

/// Tables of every tier this CPU has, one per distinct kernel name of `name_of`.
fn distinct(name_of: fn(&Table) -> &'static str) -> Vec<Table> {
    let mut out: Vec<Table> = Vec::new();
    for t in Table::available() {
        if !out.iter().any(|o| name_of(o) == name_of(&t)) {
            out.push(t);
        }
    }
    out
}

/// Runs `pare hwbench`.
pub fn run(a: &HwbenchArgs) -> Result<()> {
    let mut shapes = vec![(128, 384, 384), (128, 1536, 384), (128, 384, 1536)];
    if !a.quick {
        shapes.push((1024, 1024, 1024));
    }
    let chosen = dispatch::table();
    pare_kernels::par::set_threads(1);
    let peak_f32 = |isa: Isa| match isa {
        Isa::Scalar => None,
        Isa::Avx2 => measure(PeakKind::F32Fma, Isa::Avx2),
        _ => measure(PeakKind::F32Fma, Isa::Avx512),
    };
    let peak_i8 = |isa: Isa| match isa {
        Isa::Vnni | Isa::Amx => measure(PeakKind::Int8Dot, Isa::Vnni),
        _ => None,
    };
    eprintln!("measuring peaks and {} shapes ...", shapes.len());
    let mut rows = Vec::new();
    for &(m, n, k) in &shapes {
        let ops = 2.0 * (m * n * k) as f64;
        let a32: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let w32: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 1000) as f32 / 5000.0 - 0.1).collect();
        let bias = vec![0.01f32; n];
        let b32 = PackedF32::from_rows(&w32, n, k);
        let mut c = vec![0f32; m * n];
        for t in distinct(|t| t.gemm_f32_name) {
            if t.isa == Isa::Scalar && m * n * k > 1 << 26 {
                continue;
            }
            let s = time(|| gemm_f32_with(&t, &a32, k, m, &b32, &mut c, n, &Epilogue::bias(&bias)));
            rows.push(Row {
                family: "gemm_f32",
                shape: (m, n, k),
                kernel: t.gemm_f32_name.into(),
                isa: t.isa,
                threads: 1,
                gops: ops / s / 1e9,
                peak: peak_f32(t.isa),
                chosen: t.gemm_f32_name == chosen.gemm_f32_name,
            });
        }
        let q8: Vec<i8> = w32.iter().map(|v| (v * 1270.0).round().clamp(-127.0, 127.0) as i8).collect();
        let b8 = PackedI8::from_rows(&q8, &vec![1.0 / 1270.0; n], n, k);
        let mut qa = QuantRows::default();
        quantize_rows_with(chosen, &a32, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut qa);
        for t in distinct(|t| t.gemm_u8s8_name) {
            if t.isa == Isa::Scalar && m * n * k > 1 << 26 {
                continue;
            }
            let s = time(|| gemm_u8s8_with(&t, &qa, &b8, I8Out::F32 { c: &mut c, ldc: n, epi: Epilogue::bias(&bias) }));
            rows.push(Row {
                family: "gemm_u8s8",
                shape: (m, n, k),
                kernel: t.gemm_u8s8_name.into(),
                isa: t.isa,
                threads: 1,
                gops: ops / s / 1e9,
                peak: peak_i8(t.isa),
                chosen: t.gemm_u8s8_name == chosen.gemm_u8s8_name,
            });
        }
        let threads = a.threads as usize;
        if threads > 1 {
            pare_kernels::par::set_threads(threads);
            let s = time(|| pare_kernels::gemm_f32(&a32, k, m, &b32, &mut c, n, &Epilogue::bias(&bias)));
            rows.push(Row {
                family: "gemm_f32",
                shape: (m, n, k),
                kernel: chosen.gemm_f32_name.into(),
                isa: chosen.isa,
                threads,
                gops: ops / s / 1e9,
                peak: peak_f32(chosen.isa).map(|p| p * threads as f64),
                chosen: true,
            });
            let s = time(|| {
                pare_kernels::gemm_u8s8(
                    &qa,
                    &b8,
                    I8Out::F32 { c: &mut c, ldc: n, epi: Epilogue::bias(&bias) },
                    Split::Rows,
                )
            });
            rows.push(Row {
                family: "gemm_u8s8",
                shape: (m, n, k),
                kernel: chosen.gemm_u8s8_name.into(),
                isa: chosen.isa,
                threads,
                gops: ops / s / 1e9,
                peak: peak_i8(chosen.isa).map(|p| p * threads as f64),
                chosen: true,
            });
            pare_kernels::par::set_threads(1);
        }
    }
    let peaks = [
        ("f32_fma_avx2", measure(PeakKind::F32Fma, Isa::Avx2)),
        ("f32_fma_avx512", measure(PeakKind::F32Fma, Isa::Avx512)),
        ("int8_dot_vnni", measure(PeakKind::Int8Dot, Isa::Vnni)),
    ];
    let missing: Vec<&str> = Isa::ALL.into_iter().filter(|i| !i.is_available()).map(|i| i.name()).collect();
    if a.json {
        let v = json!({
            "schema_version": 1,
            "cpu": pare_kernels::isa::cpu_model(),
            "isa": pare_kernels::isa::describe(),
            "unavailable_tiers": missing,
            "peaks_one_core": peaks.iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), json!(v)))).collect::<serde_json::Map<_, _>>(),
            "results": rows.iter().map(|r| json!({
                "family": r.family, "m": r.shape.0, "n": r.shape.1, "k": r.shape.2, "kernel": r.kernel,
                "isa": r.isa.name(), "threads": r.threads, "gops": r.gops,
                "fraction_of_peak": r.peak.map(|p| r.gops / p), "chosen": r.chosen,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("cpu      {}", pare_kernels::isa::cpu_model());
    println!("kernels  {}", pare_kernels::isa::describe());
    if !missing.is_empty() {
        println!("absent   {} (not on this CPU: their kernels are not measured)", missing.join(", "));
    }
    let fmt_peak = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "—".into());
    println!(
        "peak, one core: f32 FMA avx2 {} GFLOP/s · f32 FMA avx512 {} GFLOP/s · int8 VNNI {} GOP/s",
        fmt_peak(peaks[0].1),
        fmt_peak(peaks[1].1),
        fmt_peak(peaks[2].1)
    );
    println!();
    println!(
        "{:<10} {:>16} {:<24} {:>7} {:>10} {:>7}",
        "family", "m×n×k", "kernel (* = dispatched)", "threads", "G(FL)OP/s", "% peak"
    );
    let mut last = ("", (0, 0, 0));
    for r in &rows {
        let shape = format!("{}×{}×{}", r.shape.0, r.shape.1, r.shape.2);
        let head = if (r.family, r.shape) == last { ("", String::new()) } else { (r.family, shape) };
        last = (r.family, r.shape);
        println!(
            "{:<10} {:>16} {:<24} {:>7} {:>10.1} {:>7}",
            head.0,
            head.1,
            format!("{}{}", r.kernel, if r.chosen { " *" } else { "" }),
            r.threads,
            r.gops,
            r.peak.map(|p| format!("{:.0}%", 100.0 * r.gops / p)).unwrap_or_else(|| "—".into())
        );
    }
    Ok(())
}
