//! Decoder commands: `pare generate` (greedy continuation, streamed) and `pare perplexity` (the
//! fixture's protocol: non-overlapping windows, no special tokens).

use crate::common;
use anyhow::{Context, Result, bail};
use pare_formats::gguf::{GgufFile, MetaValue};
use pare_formats::tokenizer::TextTokenizer;
use pare_models::llama::{KvCache, Llama};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

fn load(model: &str) -> Result<(GgufFile, Llama, TextTokenizer)> {
    let path = common::gguf_model(model)?;
    let file = GgufFile::open(&path)?;
    let llama = Llama::load(&file)?;
    let tok = TextTokenizer::from_gguf(&file)?;
    Ok((file, llama, tok))
}

fn argmax(row: &[f32]) -> u32 {
    (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a))).unwrap_or(0) as u32
}

/// `pare generate MODEL --prompt TEXT -n N`: greedy decoding with a KV cache, the new text streamed to
/// stdout as it is produced; stops early at the end-of-sequence token.
pub fn generate(model: &str, prompt: &str, n: usize, threads: usize) -> Result<()> {
    common::threads(threads);
    let (file, llama, tok) = load(model)?;
    let ids = tok.encode_untruncated(prompt)?;
    if ids.is_empty() {
        bail!("--prompt gives no tokens");
    }
    let eos = file.meta("tokenizer.ggml.eos_token_id").and_then(MetaValue::as_u64).map(|e| e as u32);
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
    let (_, llama, tok) = load(model)?;
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
