//! Decoder commands on GGUF files and Hugging Face Llama directories: `pare generate` (greedy
//! continuation, streamed), `pare perplexity` (the fixture's protocol: non-overlapping windows, no
//! special tokens), `pare bench` on a decoder, `pare compare`.

use crate::common;
use anyhow::{Context, Result, bail};
use pare_formats::gguf::GgufFile;
use pare_formats::tokenizer::TextTokenizer;
use pare_models::llama::{KvCache, Llama};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// A decoder ready to run: the model, its tokenizer and its end-of-sequence token.
pub struct Decoder {
    /// Where it was loaded from (the GGUF file or the Hugging Face directory).
    pub path: std::path::PathBuf,
    /// The model.
    pub llama: Llama,
    /// Its tokenizer.
    pub tok: TextTokenizer,
}

/// Opens a decoder from a resolved path: a GGUF file (or a directory holding one), or a Hugging Face
/// Llama directory (config.json, model.safetensors, tokenizer.json). `f32` widens every matrix of a
/// GGUF to f32 at load.
pub fn open_path(path: &Path, f32: bool) -> Result<Decoder> {
    if let Some(g) = common::gguf_path(path) {
        let file = GgufFile::open(&g)?;
        let llama = Llama::load_with(&file, f32)?;
        let tok = TextTokenizer::from_gguf(&file)?;
        return Ok(Decoder { path: g, llama, tok });
    }
    if path.join("config.json").is_file() {
        let llama = Llama::load_hf(path)?;
        let tok = TextTokenizer::load(&path.join("tokenizer.json"), None)?;
        return Ok(Decoder { path: path.to_path_buf(), llama, tok });
    }
    bail!("{}: not a GGUF file, a directory holding one, nor a Hugging Face decoder directory", path.display())
}

/// [`open_path`] of a model argument (GGUF file, directory, or zoo name).
pub fn open(model: &str, f32: bool) -> Result<Decoder> {
    let path = pare_formats::zoo::resolve(model, &mut |m| eprintln!("{m}"))?;
    open_path(&path, f32)
}

/// Whether a resolved path holds a decoder: a GGUF, or a Hugging Face directory of `model_type` llama.
pub fn is_decoder(path: &Path) -> bool {
    common::gguf_path(path).is_some()
        || std::fs::read_to_string(path.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["model_type"] == "llama")
}

fn argmax(row: &[f32]) -> u32 {
    (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a))).unwrap_or(0) as u32
}

/// `pare generate MODEL --prompt TEXT -n N`: greedy decoding with a KV cache, the new text streamed to
/// stdout as it is produced; stops early at the end-of-sequence token.
pub fn generate(model: &str, prompt: &str, n: usize, threads: usize) -> Result<()> {
    common::threads(threads);
    let Decoder { llama, tok, .. } = open(model, false)?;
    let eos = llama.config.eos;
    let ids = tok.encode_untruncated(prompt)?;
    if ids.is_empty() {
        bail!("--prompt gives no tokens");
    }
    let mut cache = KvCache::default();
    let t0 = Instant::now();
    let mut logits = llama.forward(&ids, &mut cache, false)?;
    let prefill = t0.elapsed().as_secs_f64();
    let (mut out, mut shown) = (Vec::new(), 0usize);
    let stdout = std::io::stdout();
    let t1 = Instant::now();
    for _ in 0..n {
        let next = argmax(&logits);
        if Some(next) == eos {
            break;
        }
        out.push(next);
        let text = tok.decode(&out)?;
        // Print only whole characters: a byte-level token may end inside one.
        let ready = text.trim_end_matches('\u{fffd}');
        if ready.len() > shown {
            let mut o = stdout.lock();
            write!(o, "{}", &ready[shown..])?;
            o.flush()?;
            shown = ready.len();
        }
        logits = llama.forward(&[next], &mut cache, false)?;
    }
    let text = tok.decode(&out)?;
    if text.len() > shown {
        print!("{}", &text[shown..]);
    }
    println!();
    let decode = t1.elapsed().as_secs_f64();
    eprintln!(
        "prompt {} tokens in {:.2} s ({:.1} tokens/s); {} tokens generated in {:.2} s ({:.1} tokens/s)",
        ids.len(),
        prefill,
        ids.len() as f64 / prefill,
        out.len(),
        decode,
        out.len() as f64 / decode.max(1e-9)
    );
    Ok(())
}

/// `pare perplexity MODEL --input FILE [--ctx 1024] [--tokens N]`: the text's first `tokens` tokens (no
/// special tokens), in windows of `ctx` inputs that each predict the token after every input; the next
/// window starts where the previous one's inputs ended.
pub fn perplexity(model: &str, input: &Path, ctx: usize, tokens: Option<usize>, threads: usize) -> Result<()> {
    common::threads(threads);
    if ctx < 2 {
        bail!("--ctx {ctx}: a window needs at least 2 tokens");
    }
    let text = std::fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
    let Decoder { llama, tok, .. } = open(model, false)?;
    let mut ids = tok.encode_untruncated(&text)?;
    if let Some(n) = tokens {
        ids.truncate(n);
    }
    if ids.len() < 2 {
        bail!("{}: {} tokens, perplexity needs at least 2", input.display(), ids.len());
    }
    let vocab = llama.config.vocab;
    let t = Instant::now();
    let (mut nll, mut n) = (0f64, 0usize);
    for start in (0..ids.len() - 1).step_by(ctx) {
        let chunk = &ids[start..(start + ctx + 1).min(ids.len())];
        let logits = llama.logits(&chunk[..chunk.len() - 1])?;
        for (row, &next) in logits.chunks_exact(vocab).zip(&chunk[1..]) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            nll += lse - row[next as usize] as f64;
            n += 1;
        }
        eprint!("\rwindow at token {start}: perplexity so far {:.4}", (nll / n as f64).exp());
    }
    eprintln!();
    println!(
        "perplexity {:.4} over {n} predicted tokens ({} tokens, windows of {ctx}) in {:.1} s",
        (nll / n as f64).exp(),
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The decoder benchmark text, the same as the llama.cpp peer script's (`bench/peers/llamacpp_peer.py`).
pub const DECODER_BENCH_TEXT: &str = "In the beginning God created the heaven and the earth. ";

/// One timed phase of the decoder benchmark: milliseconds per run and the tokens each run handles.
struct Phase {
    name: &'static str,
    tokens: usize,
    ms: Vec<f64>,
}

impl Phase {
    fn json(&self) -> serde_json::Value {
        let s = pare_eval::stats::Summary::from_samples(self.ms.clone());
        let tps = |ms: f64| self.tokens as f64 * 1e3 / ms;
        let mut sorted: Vec<f64> = self.ms.iter().map(|&m| tps(m)).collect();
        sorted.sort_by(f64::total_cmp);
        let p10 = sorted[((0.1 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        serde_json::json!({
            "tokens": self.tokens,
            "tokens_per_s": {"median": tps(s.median_ms), "p10": p10, "min": tps(s.max_ms), "max": tps(s.min_ms),
                             "samples": self.ms.iter().map(|&m| tps(m)).collect::<Vec<_>>()},
            "ms": s,
        })
    }
}

/// `pare bench` on a decoder: prefill of 128 and 512 tokens from an empty cache (logits of the last
/// position only) and decode of 128 tokens one at a time after the 128-token prefill, in tokens/s.
pub fn bench(path: &Path, a: &crate::bench::BenchArgs) -> Result<()> {
    let (runs, warmup) = (a.runs.unwrap_or(5) as usize, a.warmup.unwrap_or(1) as usize);
    common::threads(a.threads.into());
    let Decoder { llama, tok, path, .. } = open_path(path, false)?;
    let path = path.as_path();
    let ids = tok.encode_untruncated(&DECODER_BENCH_TEXT.repeat(60))?;
    if ids.len() < 512 {
        bail!("the benchmark text gives {} tokens, fewer than 512", ids.len());
    }
    let table = pare_kernels::dispatch::table();
    eprintln!(
        "bench {} · pp128, pp512, tg128 · {} threads · {warmup} warm-up + {runs} runs · kernels {} ({}, {})",
        path.display(),
        a.threads,
        pare_kernels::isa::describe(),
        table.gemv_blocks_name,
        table.gemm_f32_name
    );
    let mut phases = [
        Phase { name: "prefill_128", tokens: 128, ms: Vec::new() },
        Phase { name: "prefill_512", tokens: 512, ms: Vec::new() },
        Phase { name: "decode_128", tokens: 128, ms: Vec::new() },
    ];
    for run in 0..warmup + runs {
        let keep = run >= warmup;
        let mut cache = KvCache::default();
        let t = Instant::now();
        llama.forward(&ids[..128], &mut cache, false)?;
        let pp = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        for k in 0..128 {
            llama.forward(&ids[128 + k % 128..129 + k % 128], &mut cache, false)?;
        }
        let tg = t.elapsed().as_secs_f64() * 1e3;
        let mut cache = KvCache::default();
        let t = Instant::now();
        llama.forward(&ids[..512], &mut cache, false)?;
        let pp512 = t.elapsed().as_secs_f64() * 1e3;
        if keep {
            phases[0].ms.push(pp);
            phases[1].ms.push(pp512);
            phases[2].ms.push(tg);
        }
    }
    let peak = pare_eval::memory::peak_rss_bytes().map(|b| b as f64 / 1048576.0);
    if a.json {
        let mut v = serde_json::json!({
            "schema_version": 1,
            "kind": "decoder",
            "model": path.display().to_string(),
            "threads": a.threads, "runs": runs, "warmup": warmup,
            "isa": pare_kernels::isa::active().name(),
            "kernels": {"blocks": table.gemv_blocks_name, "gemm_f32": table.gemm_f32_name, "dequant": table.dequant_blocks_name},
            "weight_bytes": llama.weight_bytes(),
            "peak_rss_mb": peak,
        });
        for p in &phases {
            v[p.name] = p.json();
        }
        println!("{v}");
    } else {
        println!("{} threads, {runs} runs (tokens/s: median, slowest 10%, range)", a.threads);
        for p in &phases {
            let j = p.json();
            let t = &j["tokens_per_s"];
            println!(
                "  {:<12} {:8.1}   p10 {:8.1}   {:.1} … {:.1}",
                p.name,
                t["median"].as_f64().unwrap_or(0.0),
                t["p10"].as_f64().unwrap_or(0.0),
                t["min"].as_f64().unwrap_or(0.0),
                t["max"].as_f64().unwrap_or(0.0)
            );
        }
        if let Some(p) = peak {
            println!("  peak RSS {p:.0} MB; weights {:.1} MB", llama.weight_bytes() as f64 / 1e6);
        }
    }
    Ok(())
}

/// Options of `pare compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// The reference model (GGUF file, directory holding one, or zoo name).
    pub base: String,
    /// The model compared with it (same vocabulary).
    pub variant: String,
    /// The text (UTF-8).
    #[arg(long)]
    pub input: std::path::PathBuf,
    /// Tokens per window.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub ctx: u32,
    /// Use only the first N tokens of the text.
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Run the base with every matrix widened to f32 at load (its float baseline).
    #[arg(long)]
    pub base_f32: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Positions per forward call inside a window (the logits of both models for this many positions
/// are all that is held at once).
const COMPARE_STEP: usize = 128;

/// Six decimals, or three significant digits in scientific notation below 10⁻³.
fn num(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 { format!("{x:.3e}") } else { format!("{x:.6}") }
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// `pare compare BASE VARIANT --input FILE`: both models over the same windows in one pass (the
/// fixture's protocol), per predicted position: KL(base ‖ variant) of the next-token distributions,
/// whether the top token is the same, and the change of the probability of the actual next token;
/// plus both perplexities. The statistics are those `llama-perplexity --kl-divergence` prints.
pub fn compare(a: &CompareArgs) -> Result<()> {
    common::threads(a.threads.into());
    let text = std::fs::read_to_string(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let b = open(&a.base, a.base_f32)?;
    let v = open(&a.variant, false)?;
    let (bpath, vpath) = (b.path.clone(), v.path.clone());
    let probe = "The vocabulary check: 12 345, ünïcödé.";
    if b.tok.vocab_size() != v.tok.vocab_size()
        || b.tok.encode_untruncated(probe)? != v.tok.encode_untruncated(probe)?
    {
        bail!("{} and {} do not share a vocabulary", bpath.display(), vpath.display());
    }
    let (base, variant, tok) = (b.llama, v.llama, b.tok);
    let vocab = base.config.vocab;
    if variant.config.vocab != vocab {
        bail!("vocabularies differ: {} and {} tokens", vocab, variant.config.vocab);
    }
    let mut ids = tok.encode_untruncated(&text)?;
    if let Some(n) = a.tokens {
        ids.truncate(n);
    }
    if ids.len() < 2 {
        bail!("{}: {} tokens, the comparison needs at least 2", a.input.display(), ids.len());
    }
    let ctx = a.ctx as usize;
    let t0 = Instant::now();
    let (mut nll_b, mut nll_v) = (0f64, 0f64);
    let (mut kld, mut dp) = (Vec::new(), Vec::new());
    let mut same_top = 0usize;
    for start in (0..ids.len() - 1).step_by(ctx) {
        let chunk = &ids[start..(start + ctx + 1).min(ids.len())];
        let inputs = &chunk[..chunk.len() - 1];
        let (mut cb, mut cv) = (KvCache::default(), KvCache::default());
        for s in (0..inputs.len()).step_by(COMPARE_STEP) {
            let part = &inputs[s..(s + COMPARE_STEP).min(inputs.len())];
            let lb = base.forward(part, &mut cb, true)?;
            let lv = variant.forward(part, &mut cv, true)?;
            for (p, (rb, rv)) in lb.chunks_exact(vocab).zip(lv.chunks_exact(vocab)).enumerate() {
                let next = chunk[s + p + 1] as usize;
                let (pb, pv) = (log_softmax(rb), log_softmax(rv));
                let kl: f64 = pb.iter().zip(&pv).map(|(&b, &v)| b.exp() * (b - v)).sum();
                kld.push(kl.max(0.0));
                nll_b -= pb[next];
                nll_v -= pv[next];
                dp.push(pv[next].exp() - pb[next].exp());
                let arg = |r: &[f64]| (0..r.len()).max_by(|&x, &y| r[x].total_cmp(&r[y])).unwrap_or(0);
                same_top += usize::from(arg(&pb) == arg(&pv));
            }
        }
        eprint!("\rwindow at token {start}: mean KLD so far {:.6}", kld.iter().sum::<f64>() / kld.len() as f64);
    }
    eprintln!();
    let n = kld.len() as f64;
    let mean = kld.iter().sum::<f64>() / n;
    let sd = (kld.iter().map(|k| (k - mean) * (k - mean)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    let mut sorted = kld.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| sorted[((q * n).ceil() as usize).clamp(1, sorted.len()) - 1];
    let rms_dp = (dp.iter().map(|d| d * d).sum::<f64>() / n).sqrt();
    let (ppl_b, ppl_v) = ((nll_b / n).exp(), (nll_v / n).exp());
    let top = same_top as f64 / n;
    let top_se = (top * (1.0 - top) / n).sqrt();
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let v = serde_json::json!({
            "schema_version": 1,
            "base": bpath.display().to_string(), "variant": vpath.display().to_string(), "base_f32": a.base_f32,
            "input": a.input.display().to_string(), "tokens": ids.len(), "predicted": kld.len(), "window": ctx,
            "perplexity": {"base": ppl_b, "variant": ppl_v, "ratio": ppl_v / ppl_b},
            "kld": {"mean": mean, "stderr": sd / n.sqrt(), "median": pct(0.5), "p90": pct(0.9), "p95": pct(0.95),
                    "p99": pct(0.99), "max": sorted[sorted.len() - 1]},
            "same_top": {"share": top, "stderr": top_se},
            "rms_delta_p": rms_dp,
            "seconds": secs,
        });
        println!("{v}");
    } else {
        println!("{} predicted tokens ({} tokens, windows of {ctx}) in {secs:.1} s", kld.len(), ids.len());
        println!(
            "  perplexity  base {ppl_b:.4}   variant {ppl_v:.4}   ratio {:.4} ({:+.2}%)",
            ppl_v / ppl_b,
            100.0 * (ppl_v / ppl_b - 1.0)
        );
        println!("  mean KLD    {} ± {}", num(mean), num(sd / n.sqrt()));
        println!(
            "  KLD         median {}  p90 {}  p95 {}  p99 {}  max {}",
            num(pct(0.5)),
            num(pct(0.9)),
            num(pct(0.95)),
            num(pct(0.99)),
            num(sorted[sorted.len() - 1])
        );
        println!("  same top    {:.3} ± {:.3}%", 100.0 * top, 100.0 * top_se);
        println!("  RMS Δp      {:.3}%", 100.0 * rms_dp);
    }
    Ok(())
}
