//! `pare inspect`: what a model file holds and how pare stores and runs each layer.

use crate::common;
use anyhow::Result;
use pare_formats::TensorFile;
use serde_json::json;

/// Runs `pare inspect`.
pub fn run(model: &str, as_json: bool) -> Result<()> {
    let dir = common::model_dir(model)?;
    let file = TensorFile::open(dir.file("model.safetensors"))?;
    let enc = pare_models::SentenceEncoder::load(&dir)?;
    let infos = file.infos();
    let params: usize = infos.iter().map(|t| t.numel()).sum();
    let bytes: usize = infos.iter().map(|t| t.bytes).sum();
    let layers: Vec<_> = enc
        .model
        .linears()
        .into_iter()
        .map(|(name, l)| (name, l.in_features(), l.out_features(), l.weight.format(), l.weight.bytes()))
        .collect();
    let cfg = &enc.model.config;
    if as_json {
        let v = json!({
            "schema_version": 1,
            "model": dir.root.display().to_string(),
            "architecture": "bert",
            "file_bytes": file.file_bytes(),
            "config": {
                "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
                "num_attention_heads": cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
                "vocab_size": cfg.vocab_size, "max_seq_length": enc.max_len,
            },
            "tensors": infos.iter().map(|t| json!({"name": t.name, "shape": t.shape, "dtype": t.dtype, "bytes": t.bytes})).collect::<Vec<_>>(),
            "totals": {"tensors": infos.len(), "parameters": params, "bytes": bytes},
            "layers": layers.iter().map(|(n, i, o, f, b)| json!({"name": n, "in_features": i, "out_features": o, "format": f, "bytes": b})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model      {}", dir.root.display());
    println!(
        "bert       {} layers · hidden {} · {} heads · ffn {} · vocab {} · max {} tokens",
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        cfg.vocab_size,
        enc.max_len
    );
    println!();
    let w = infos.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    println!("{:<w$}  {:>14}  {:>5}  {:>12}", "tensor", "shape", "dtype", "bytes");
    for t in &infos {
        let shape = t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
        println!("{:<w$}  {:>14}  {:>5}  {:>12}", t.name, shape, t.dtype, t.bytes);
    }
    println!();
    println!(
        "{} tensors · {} parameters · {} bytes of tensor data · {} bytes on disk",
        infos.len(),
        params,
        bytes,
        file.file_bytes()
    );
    println!();
    println!("{:<w$}  {:>11}  {:<10}  {:>12}", "layer", "in → out", "runs as", "bytes in RAM");
    for (n, i, o, f, b) in &layers {
        println!("{n:<w$}  {:>11}  {f:<10}  {b:>12}", format!("{i}→{o}"));
    }
    Ok(())
}
