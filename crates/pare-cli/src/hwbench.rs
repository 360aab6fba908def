//! `pare hwbench`: for each kernel tier this CPU has, its f32 and int8 GEMM kernels on a few shapes,
//! with their speed, the fraction of the tier's peak and the int8 / f32 ratio, each measured
//! interleaved (kernel, peak loop, kernel, ...) so that a slow phase of a shared machine falls on
//! both sides of every ratio; then each tier's decode kernel on block-quantized weights.

use anyhow::Result;
use clap::Args;
use pare_kernels::dispatch::{self, Table};
use pare_kernels::gemm_f32::gemm_f32_with;
use pare_kernels::gemm_i8::gemm_u8s8_with;
use pare_kernels::peak::{PeakKind, PeakLoop};
use pare_kernels::qblock::{Q8Rows, gemm_blocks_f32_with, gemm_blocks_q8_with, interleave8};
use pare_kernels::quant::{ActQuant, quantize_rows_with};
use pare_kernels::{BlockRows, BlockType, Epilogue, I8Out, Isa, PackedF32, PackedI8, QuantRows, Split};
use serde_json::json;
use std::time::Instant;

/// Options of `pare hwbench`.
#[derive(Args, Debug)]
pub struct HwbenchArgs {
    /// Threads for the extra multi-threaded run of the dispatched kernels.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Only MiniLM's shapes (skip 1024³).
    #[arg(long)]
    pub quick: bool,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Rounds of the interleaved measurement; every figure is the median over rounds.
const ROUNDS: usize = 7;
/// Seconds of each timed batch.
const BATCH_S: f64 = 0.012;

/// One contender of an interleaved measurement: a closure and the operations of one call.
struct Job<'a> {
    ops: f64,
    run: Box<dyn FnMut(u64) + 'a>,
    /// Calls (or peak-loop iterations) per batch, calibrated to [`BATCH_S`].
    reps: u64,
}

impl<'a> Job<'a> {
    fn kernel(ops: f64, mut f: impl FnMut() + 'a) -> Self {
        Job {
            ops,
            run: Box::new(move |reps| {
                for _ in 0..reps {
                    f()
                }
            }),
            reps: 1,
        }
    }

    fn peak(l: PeakLoop, threads: usize) -> Self {
        let per_thread = l.ops_per_iter;
        Job {
            ops: per_thread * threads as f64,
            run: Box::new(move |iters| {
                if threads > 1 {
                    l.gops_threads(iters);
                } else {
                    l.gops(iters);
                }
            }),
            reps: 1,
        }
    }

    fn timed(&mut self) -> f64 {
        let t = Instant::now();
        (self.run)(self.reps);
        t.elapsed().as_secs_f64().max(1e-9)
    }
}

/// Runs the jobs round-robin for [`ROUNDS`] rounds and returns each job's G(FL)OP/s per round.
fn interleave(jobs: &mut [Job<'_>]) -> Vec<Vec<f64>> {
    for j in jobs.iter_mut() {
        j.timed();
        let mut once = j.timed();
        while once < BATCH_S / 8.0 && j.reps < 1 << 40 {
            j.reps *= 4;
            once = j.timed();
        }
        j.reps = ((j.reps as f64) * BATCH_S / once).ceil().max(1.0) as u64;
    }
    let mut out = vec![Vec::with_capacity(ROUNDS); jobs.len()];
    for _ in 0..ROUNDS {
        for (j, o) in jobs.iter_mut().zip(out.iter_mut()) {
            let s = j.timed();
            o.push(j.ops * j.reps as f64 / s / 1e9);
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// Median over rounds of `a[r] / b[r]`.
fn median_ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

/// One kernel's figures at one shape.
struct Figure {
    kernel: &'static str,
    gops: f64,
    /// Fraction of the tier's peak loop, measured beside it: median over rounds (`None` without a loop).
    fraction: Option<f64>,
    /// The best round's fraction: on a shared host, the round least disturbed by other tenants.
    best: Option<f64>,
}

/// Largest of `a[r] / b[r]` over rounds.
fn best_ratio(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x / y).fold(0.0, f64::max)
}

/// One tier at one shape: its f32 and int8 kernels, and their ratio.
struct TierRow {
    isa: Isa,
    threads: usize,
    f32: Figure,
    int8: Figure,
    /// int8 GOP/s ÷ f32 GFLOP/s, median of the per-round ratios.
    ratio: f64,
}

/// The problem of one shape: f32 operands, int8 weights (per table layout) and activations.
struct Problem {
    m: usize,
    n: usize,
    k: usize,
    a32: Vec<f32>,
    b32: PackedF32,
    q8: Vec<i8>,
    bias: Vec<f32>,
}

impl Problem {
    fn new(m: usize, n: usize, k: usize) -> Self {
        let a32: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let w32: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 1000) as f32 / 5000.0 - 0.1).collect();
        let q8 = w32.iter().map(|v| (v * 1270.0).round().clamp(-127.0, 127.0) as i8).collect();
        Problem { m, n, k, b32: PackedF32::from_rows(&w32, n, k), a32, q8, bias: vec![0.01; n] }
    }

    fn ops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }

    /// Measures the f32 and int8 kernels of `t` with `threads` threads (the dispatched, parallel entry
    /// points when more than one), interleaved with the tier's peak loops.
    fn measure(&self, t: &Table, threads: usize) -> TierRow {
        let (m, n, k) = (self.m, self.n, self.k);
        let b8 = PackedI8::from_rows_for(t.i8_layout, &self.q8, &vec![1.0 / 1270.0; n], n, k);
        let mut qa = QuantRows::default();
        quantize_rows_with(t, &self.a32, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut qa);
        let (mut c32, mut c8) = (vec![0f32; m * n], vec![0f32; m * n]);
        let epi = Epilogue::bias(&self.bias);
        let ops = self.ops();
        let f32_job = if threads > 1 {
            Job::kernel(ops, || pare_kernels::gemm_f32(&self.a32, k, m, &self.b32, &mut c32, n, &epi))
        } else {
            Job::kernel(ops, || gemm_f32_with(t, &self.a32, k, m, &self.b32, &mut c32, n, &epi))
        };
        let i8_job = if threads > 1 {
            Job::kernel(ops, || pare_kernels::gemm_u8s8(&qa, &b8, I8Out::F32 { c: &mut c8, ldc: n, epi }, Split::Rows))
        } else {
            Job::kernel(ops, || gemm_u8s8_with(t, &qa, &b8, I8Out::F32 { c: &mut c8, ldc: n, epi }))
        };
        let mut jobs = vec![f32_job, i8_job];
        let loops = [PeakKind::F32Fma, PeakKind::Int8Dot].map(|kind| PeakLoop::of(kind, t.isa));
        for l in loops.iter().flatten() {
            jobs.push(Job::peak(*l, threads));
        }
        let r = interleave(&mut jobs);
        let mut peaks = r[2..].iter();
        let f32_peak = loops[0].and_then(|_| peaks.next());
        let int8_peak = loops[1].and_then(|_| peaks.next());
        TierRow {
            isa: t.isa,
            threads,
            f32: Figure {
                kernel: t.gemm_f32_name,
                gops: median(r[0].clone()),
                fraction: f32_peak.map(|p| median_ratio(&r[0], p)),
                best: f32_peak.map(|p| best_ratio(&r[0], p)),
            },
            int8: Figure {
                kernel: t.gemm_u8s8_name,
                gops: median(r[1].clone()),
                fraction: int8_peak.map(|p| median_ratio(&r[1], p)),
                best: int8_peak.map(|p| best_ratio(&r[1], p)),
            },
            ratio: median_ratio(&r[1], &r[0]),
        }
    }
}

/// One tier's row kernel on block weights (one token, one thread) beside the tier's f32 FMA peak.
struct BlockRow {
    isa: Isa,
    ty: BlockType,
    /// "L2" (the matrix stays in cache) or "memory" (streamed).
    place: &'static str,
    /// "f32", or "8-bit" (activations rounded as the type's Q8 kind, rows interleaved by eight: what
    /// decode runs).
    activations: &'static str,
    kernel: &'static str,
    /// Weights per nanosecond (2 flops each), median over rounds.
    weights_per_ns: f64,
    /// GB/s of stored weights read.
    gbs: f64,
    /// 2 · weights/ns ÷ the f32 FMA peak loop's GFLOP/s: median and best round.
    fraction: Option<f64>,
    best: Option<f64>,
}

/// The decode (one token) row kernels of every tier on SmolLM2's shapes: a 1536 × 576 matrix that
/// stays in L2, and 64 MB of rows streamed from memory; with f32 activations on the rows as stored,
/// and with 8-bit activations on rows interleaved by eight (each kernel once, at the lowest tier
/// that has it).
fn measure_blocks(tables: &[Table]) -> Vec<BlockRow> {
    let mut rows = Vec::new();
    for ty in [BlockType::Q4_1, BlockType::Q8_0] {
        for (n, k, place) in
            [(1536usize, 576usize, "L2"), ((64 << 20) / (576 / 32 * ty.block_bytes()) / 8 * 8, 576, "memory")]
        {
            let data: Vec<u8> = (0..n * k / 32 * ty.block_bytes()).map(|i| ((i * 7919) % 251) as u8 & 0x3b).collect();
            let w = BlockRows::new(ty, &data, n, k).expect("sizes");
            let x8 = interleave8(ty, &data, n, k).expect("a 32-weight type, rows a multiple of 8");
            let wi = BlockRows::interleaved(ty, &x8, n, k).expect("sizes");
            let x: Vec<f32> = (0..k).map(|i| ((i * 37) % 100) as f32 / 50.0 - 1.0).collect();
            let mut q = Q8Rows::default();
            q.quantize_as(ty.q8_kind(), &x, k, 1, k);
            let mut seen: Vec<&str> = Vec::new();
            for t in tables {
                let weights = (n * k) as f64;
                let peak = PeakLoop::of(PeakKind::F32Fma, t.isa);
                // One kernel beside the tier's f32 peak loop, interleaved round by round.
                let mut measure = |activations: &'static str, kernel: &'static str, run: &mut dyn FnMut()| {
                    let mut jobs = vec![Job::kernel(2.0 * weights, run)];
                    if let Some(l) = peak {
                        jobs.push(Job::peak(l, 1));
                    }
                    let r = interleave(&mut jobs);
                    let gflops = median(r[0].clone());
                    rows.push(BlockRow {
                        isa: t.isa,
                        ty,
                        place,
                        activations,
                        kernel,
                        weights_per_ns: gflops / 2.0,
                        gbs: gflops / 2.0 * ty.bits_per_weight() / 8.0,
                        fraction: peak.map(|_| median_ratio(&r[0], &r[1])),
                        best: peak.map(|_| best_ratio(&r[0], &r[1])),
                    });
                };
                let mut y = vec![0f32; n];
                if !seen.contains(&t.gemv_blocks_q8_x8_name) {
                    seen.push(t.gemv_blocks_q8_x8_name);
                    measure("8-bit", t.gemv_blocks_q8_x8_name, &mut || {
                        gemm_blocks_q8_with(t, &q, &wi, &mut y, n, &Epilogue::default())
                    });
                }
                measure("f32", t.gemv_blocks_name, &mut || {
                    gemm_blocks_f32_with(t, &x, k, 1, &w, &mut y, n, &Epilogue::default(), false)
                });
            }
        }
    }
    rows
}

/// Runs `pare hwbench`.
pub fn run(a: &HwbenchArgs) -> Result<()> {
    let mut shapes = vec![(128, 384, 384), (128, 1536, 384), (128, 384, 1536)];
    if !a.quick {
        shapes.push((1024, 1024, 1024));
    }
    let chosen = dispatch::table();
    let threads = a.threads as usize;
    // A tier whose two kernels are both a lower tier's adds nothing (e.g. amx without AMX kernels).
    let mut tables: Vec<Table> = Vec::new();
    for t in Table::available() {
        if !tables.iter().any(|o| o.gemm_f32_name == t.gemm_f32_name && o.gemm_u8s8_name == t.gemm_u8s8_name) {
            tables.push(t);
        }
    }
    eprintln!("measuring {} tiers on {} shapes ...", tables.len(), shapes.len());
    let mut rows: Vec<((usize, usize, usize), TierRow)> = Vec::new();
    for &(m, n, k) in &shapes {
        let p = Problem::new(m, n, k);
        pare_kernels::par::set_threads(1);
        for t in &tables {
            // The scalar references take seconds on the large shape.
            if t.isa == Isa::Scalar && m * n * k > 1 << 26 {
                continue;
            }
            rows.push(((m, n, k), p.measure(t, 1)));
        }
        if threads > 1 {
            pare_kernels::par::set_threads(threads);
            rows.push(((m, n, k), p.measure(chosen, threads)));
            pare_kernels::par::set_threads(1);
        }
    }
    let mut block_tables: Vec<Table> = Vec::new();
    for t in Table::available() {
        if t.isa != Isa::Scalar && !block_tables.iter().any(|o| o.gemv_blocks_name == t.gemv_blocks_name) {
            block_tables.push(t);
        }
    }
    pare_kernels::par::set_threads(1);
    let blocks = measure_blocks(&block_tables);
    let peak_of =
        |kind, isa| PeakLoop::of(kind, isa).map(|l| (l.what, (0..3).map(|_| l.gops(500_000)).fold(0.0, f64::max)));
    let missing: Vec<&str> = Isa::ALL.into_iter().filter(|i| !i.is_available()).map(|i| i.name()).collect();
    if a.json {
        let fig = |f: &Figure| json!({"kernel": f.kernel, "gops": f.gops, "fraction_of_peak": f.fraction, "best_fraction_of_peak": f.best});
        let v = json!({
            "schema_version": 2,
            "cpu": pare_kernels::isa::cpu_model(),
            "isa": pare_kernels::isa::describe(),
            "unavailable_tiers": missing,
            "peaks_one_core": tables.iter().map(|t| json!({
                "isa": t.isa.name(),
                "f32": peak_of(PeakKind::F32Fma, t.isa).map(|(w, g)| json!({"instruction": w, "gops": g})),
                "int8": peak_of(PeakKind::Int8Dot, t.isa).map(|(w, g)| json!({"instruction": w, "gops": g})),
            })).collect::<Vec<_>>(),
            "results": rows.iter().map(|((m, n, k), r)| json!({
                "m": m, "n": n, "k": k, "isa": r.isa.name(), "threads": r.threads,
                "chosen": r.isa == chosen.isa,
                "f32": fig(&r.f32), "int8": fig(&r.int8), "int8_over_f32": r.ratio,
            })).collect::<Vec<_>>(),
            "block_decode": blocks.iter().map(|b| json!({
                "isa": b.isa.name(), "type": b.ty.name(), "matrix": b.place, "activations": b.activations, "kernel": b.kernel,
                "weights_per_ns": b.weights_per_ns, "weight_gb_per_s": b.gbs,
                "fraction_of_f32_peak": b.fraction, "best_fraction_of_f32_peak": b.best,
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
    println!("peaks, one core:");
    for t in &tables {
        let f = |kind| peak_of(kind, t.isa).map(|(w, g)| format!("{w} {g:.0}")).unwrap_or_else(|| "—".into());
        println!("  {:<8} f32 {:<24} int8 {}", t.isa.name(), f(PeakKind::F32Fma), f(PeakKind::Int8Dot));
    }
    println!();
    println!("G(FL)OP/s and % of the tier's peak loop: medians of {ROUNDS} rounds interleaved with the peak loops,");
    println!("with the best round's % after the slash (a shared host slows some rounds);");
    println!("int8/f32 = int8 GOP/s ÷ f32 GFLOP/s of the same tier, median of the per-round ratios; * = dispatched");
    let pct = |f: &Figure| match (f.fraction, f.best) {
        (Some(m), Some(b)) => format!("{:.0}/{:.0}%", 100.0 * m, 100.0 * b),
        _ => "—".into(),
    };
    let mut last = (0, 0, 0);
    for (shape, r) in &rows {
        if *shape != last {
            println!();
            println!(
                "{:<16} {:<8} {:>3} {:<24} {:>8} {:>8}  {:<24} {:>8} {:>8}  {:>8}",
                format!("{}×{}×{}", shape.0, shape.1, shape.2),
                "tier",
                "thr",
                "f32 kernel",
                "GFLOP/s",
                "%peak",
                "int8 kernel",
                "GOP/s",
                "%peak",
                "int8/f32"
            );
            last = *shape;
        }
        let star = if r.isa == chosen.isa { "*" } else { "" };
        println!(
            "{:<16} {:<8} {:>3} {:<24} {:>8.1} {:>8}  {:<24} {:>8.1} {:>8}  {:>7.2}×",
            "",
            format!("{}{star}", r.isa.name()),
            r.threads,
            r.f32.kernel,
            r.f32.gops,
            pct(&r.f32),
            r.int8.kernel,
            r.int8.gops,
            pct(&r.int8),
            r.ratio
        );
    }
    println!();
    println!("decode on block weights (one token, one thread; 2 flops per weight against the tier's f32 FMA peak):");
    println!(
        "{:<8} {:<5} {:<7} {:<11} {:<28} {:>10} {:>10} {:>9}",
        "tier", "type", "matrix", "activations", "kernel", "weights/ns", "GB/s read", "%peak"
    );
    for b in &blocks {
        let pct = match (b.fraction, b.best) {
            (Some(m), Some(x)) => format!("{:.0}/{:.0}%", 100.0 * m, 100.0 * x),
            _ => "—".into(),
        };
        println!(
            "{:<8} {:<5} {:<7} {:<11} {:<28} {:>10.2} {:>10.1} {:>9}",
            b.isa.name(),
            b.ty.name(),
            b.place,
            b.activations,
            b.kernel,
            b.weights_per_ns,
            b.gbs,
            pct
        );
    }
    Ok(())
}
