//! Measuring loaded variants: embeddings for fidelity and tasks, memory, parameters, and forward-pass
//! timings collected round by round.

use anyhow::Result;
use pare_eval::memory;
use pare_formats::ModelDir;
use pare_models::{Batch, SentenceEncoder, Weight, Workspace};
use std::path::Path;
use std::time::Instant;

/// A variant loaded for measurement.
pub struct Loaded {
    pub enc: SentenceEncoder,
    pub ws: Workspace,
    /// Embeddings of the fidelity texts.
    pub texts: Vec<Vec<f32>>,
    /// Embeddings of the WordSim-353 words.
    pub words: Vec<Vec<f32>>,
    pub peak_memory_bytes: Option<u64>,
    pub parameters: u64,
    pub nonzeros: u64,
    pub sparse_layers: usize,
    /// Timed batch-1 runs, ms: `latency[r]` holds round r's, in run order.
    pub latency: Vec<Vec<f64>>,
    /// Timed larger-batch runs, ms, by round as `latency`.
    pub throughput: Vec<Vec<f64>>,
}

/// Resets the peak resident set size to the current one (Linux ≥ 4.0); false when not possible.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Loads the model in `dir`, embeds `texts` and `words`, and runs one pass of `big` (so the peak
/// memory covers the largest workspace).
pub fn load(dir: &Path, texts: &[String], words: &[String], big: &Batch) -> Result<Loaded> {
    let reset = reset_peak();
    let before = memory::rss_bytes();
    let enc = SentenceEncoder::load(&ModelDir::open(dir)?)?;
    let emb_texts = enc.embed(texts)?;
    let emb_words = enc.embed(words)?;
    let mut ws = Workspace::default();
    enc.model.forward(big, &mut ws)?;
    let peak = match (reset, before, memory::peak_rss_bytes()) {
        (true, Some(b), Some(p)) => Some(p.saturating_sub(b)),
        _ => None,
    };
    let (mut parameters, mut nonzeros) = (0u64, 0u64);
    for (_, _, v) in enc.model.export_f32() {
        parameters += v.len() as u64;
        nonzeros += v.iter().filter(|x| **x != 0.0).count() as u64;
    }
    let sparse_layers = enc
        .model
        .linears()
        .iter()
        .filter(|(_, l)| matches!(l.weight, Weight::SparseF32 { .. } | Weight::SparseI8 { .. }))
        .count();
    Ok(Loaded {
        enc,
        ws,
        texts: emb_texts,
        words: emb_words,
        peak_memory_bytes: peak,
        parameters,
        nonzeros,
        sparse_layers,
        latency: Vec::new(),
        throughput: Vec::new(),
    })
}

/// One round of `l`: `warmup` untimed passes of `input`, then `runs` timed ones, kept (ms) as a new round
/// of its throughput runs when `big`, of its latency runs otherwise.
pub fn time(l: &mut Loaded, input: &Batch, warmup: usize, runs: usize, big: bool) -> Result<()> {
    for _ in 0..warmup {
        l.enc.model.forward(input, &mut l.ws)?;
    }
    let mut round = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        l.enc.model.forward(input, &mut l.ws)?;
        round.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if big {
        l.throughput.push(round)
    } else {
        l.latency.push(round)
    }
    Ok(())
}

/// Timing statistics of `samples` (by round) for passes of `batch` sequences.
pub fn timing(samples: &[Vec<f64>], batch: usize, seq: usize) -> Result<pare_report::Timing> {
    pare_eval::analysis::timing(samples.to_vec(), batch, seq).ok_or_else(|| anyhow::anyhow!("no timed runs"))
}
