//! `pare embed`: texts in, normalised sentence embeddings out, as JSON Lines in input order.

use crate::common::{self, Output};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;

/// Runs `pare embed`.
pub fn run(model: &str, input: Option<&Path>, output: Option<&Path>, threads: usize) -> Result<()> {
    let text = match input {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read input {}", p.display()))?;
            String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: input is not UTF-8 text", p.display()))?
        }
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("cannot read stdin as UTF-8 text")?;
            s
        }
    };
    let texts: Vec<String> = text.lines().map(str::to_string).collect();
    let (_dir, enc) = common::load(model)?;
    let mut out = Output::open(output)?;
    common::threads(threads);
    let embeddings = enc.embed(&texts)?;
    let w = out.writer();
    for (t, e) in texts.iter().zip(&embeddings) {
        serde_json::to_writer(&mut *w, &serde_json::json!({ "text": t, "embedding": e }))?;
        w.write_all(b"\n")?;
    }
    eprintln!("embedded {} texts", texts.len());
    out.finish()
}
