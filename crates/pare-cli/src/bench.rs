//! `pare bench`: latency of the forward pass, with its spread, on a fixed input.

use crate::common;
use anyhow::{Result, bail};
use clap::Args;
use pare_eval::time_runs;
use pare_models::{Batch, Workspace};
use serde_json::json;

/// The benchmark text (the same as the ONNX Runtime peer script's), tokenised and cut to `seq` tokens.
pub const BENCH_TEXT: &str = "Model compression makes neural networks smaller and faster: quantization stores weights in fewer bits, and pruning removes the weights that matter least. ";

/// Options of `pare bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model directory or zoo name.
    pub model: String,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: u32,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub seq: u32,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Timed runs [default: 50 for encoders, 5 for decoders].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub runs: Option<u32>,
    /// Untimed warm-up runs [default: 5 for encoders, 1 for decoders].
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub warmup: Option<u32>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pare bench`.
pub fn run(a: &BenchArgs) -> Result<()> {
    let path = pare_formats::zoo::resolve(&a.model, &mut |m| eprintln!("{m}"))?;
    if crate::decoder::is_decoder(&path) {
        return crate::decoder::bench(&path, a);
    }
    let (runs, warmup) = (a.runs.unwrap_or(50), a.warmup.unwrap_or(5));
    let (dir, enc) = common::load(&a.model)?;
    let (batch, seq) = (a.batch as usize, a.seq as usize);
    let ids = enc.tokenizer.encode_untruncated(&BENCH_TEXT.repeat(64))?;
    if seq > ids.len() {
        bail!("--seq {seq} is longer than the {} tokens of the benchmark text", ids.len());
    }
    let max_pos = enc.model.config.max_position_embeddings;
    if seq > max_pos {
        bail!("--seq {seq} is longer than the model's {max_pos} positions");
    }
    let input = Batch::repeat(&ids[..seq], batch);
    common::threads(a.threads.into());
    let table = pare_kernels::dispatch::table();
    eprintln!(
        "bench {} · batch {batch} × {seq} tokens · {} threads · {} warm-up + {} runs · kernels {} ({})",
        dir.root.display(),
        a.threads,
        warmup,
        runs,
        pare_kernels::isa::describe(),
        table.gemm_f32_name
    );
    let mut ws = Workspace::default();
    let stats = time_runs(warmup as usize, runs as usize, || enc.model.forward(&input, &mut ws).map(|_| ()), |_| {})?;
    let per_s = batch as f64 * 1e3 / stats.median_ms;
    if a.json {
        let v = json!({
            "schema_version": 1,
            "model": dir.root.display().to_string(),
            "batch": batch, "seq": seq, "threads": a.threads, "runs": stats.runs, "warmup": warmup,
            "median_ms": stats.median_ms, "p90_ms": stats.p90_ms, "mean_ms": stats.mean_ms,
            "stddev_ms": stats.stddev_ms, "min_ms": stats.min_ms, "max_ms": stats.max_ms,
            "samples_ms": stats.samples_ms,
            "sentences_per_s": per_s, "tokens_per_s": per_s * seq as f64,
            "isa": pare_kernels::isa::active().name(),
            "kernels": {"gemm_f32": table.gemm_f32_name, "layer_norm": table.layer_norm_name, "softmax": table.softmax_name},
        });
        println!("{v}");
    } else {
        println!("batch {batch} × {seq} tokens, {} threads, {} runs", a.threads, stats.runs);
        println!("  median   {:8.3} ms    p90 {:.3} ms", stats.median_ms, stats.p90_ms);
        println!("  mean     {:8.3} ms ± {:.3} ms (σ)", stats.mean_ms, stats.stddev_ms);
        println!("  range    {:8.3} ms … {:.3} ms", stats.min_ms, stats.max_ms);
        println!("  throughput {:.1} sentences/s ({:.0} tokens/s, at the median)", per_s, per_s * seq as f64);
    }
    Ok(())
}
