//! `pare inspect`: what a model file holds and how pare stores and runs each layer.

use crate::common;
use anyhow::Result;
use pare_formats::TensorFile;
use pare_formats::gguf::GgufFile;
use pare_formats::quant_config::CompressionConfig;
use serde_json::json;
use std::path::Path;

/// `pare inspect` of a GGUF file: metadata, and every tensor with its stored type and bits per weight.
fn inspect_gguf(path: &Path, as_json: bool) -> Result<()> {
    let f = GgufFile::open(path)?;
    let arch = f.meta("general.architecture").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
    let params: usize = f.tensors.iter().map(|t| t.numel()).sum();
    let bytes: usize = f.tensors.iter().filter_map(|t| t.bytes).sum();
    // PyTorch order (slowest dimension first), as the safetensors listing prints it.
    let shape = |t: &pare_formats::gguf::GgufTensor| t.dims.iter().rev().copied().collect::<Vec<_>>();
    // How pare runs each matrix of a model it can load: in place on its blocks, or widened to f32.
    let runs: Vec<(String, String)> = match pare_models::llama::Llama::load(&f) {
        Ok(m) => m.matrices().into_iter().map(|(n, w)| (n, w.format())).collect(),
        Err(_) => Vec::new(),
    };
    let table = pare_kernels::dispatch::table();
    if as_json {
        let v = json!({
            "schema_version": 1,
            "model": path.display().to_string(),
            "format": "gguf",
            "gguf_version": f.version,
            "architecture": arch,
            "file_bytes": f.file_bytes(),
            "metadata": f.metadata.iter().map(|(k, v)| (k.clone(), json!(v.summary()))).collect::<serde_json::Map<_, _>>(),
            "tensors": f.tensors.iter().map(|t| json!({
                "name": t.name, "shape": shape(t), "dtype": t.ty.name(), "bytes": t.bytes,
                "bits_per_weight": t.ty.bits_per_weight(),
            })).collect::<Vec<_>>(),
            "totals": {"tensors": f.tensors.len(), "parameters": params, "bytes": bytes,
                       "bits_per_weight": 8.0 * bytes as f64 / params.max(1) as f64},
            "runs_as": runs.iter().map(|(n, r)| json!({"name": n, "format": r})).collect::<Vec<_>>(),
            "kernels": {"decode": table.gemv_blocks_name, "prefill": table.gemm_f32_name, "dequant": table.dequant_blocks_name},
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model      {}", path.display());
    println!("gguf       version {} · architecture {arch} · alignment {}", f.version, f.alignment);
    println!();
    let kw = f.metadata.iter().map(|(k, _)| k.len()).max().unwrap_or(3);
    for (k, v) in &f.metadata {
        println!("{k:<kw$}  {}", v.summary());
    }
    println!();
    let w = f.tensors.iter().map(|t| t.name.len()).max().unwrap_or(6).max(6);
    println!("{:<w$}  {:>14}  {:>6}  {:>12}  {:>5}", "tensor", "shape", "type", "bytes", "bits");
    for t in &f.tensors {
        let s = shape(t).iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
        let bpw = t.ty.bits_per_weight().map_or("—".to_string(), |b| format!("{b:.2}"));
        let b = t.bytes.map_or("?".to_string(), |b| b.to_string());
        println!("{:<w$}  {s:>14}  {:>6}  {b:>12}  {bpw:>5}", t.name, t.ty.name());
    }
    println!();
    println!(
        "{} tensors · {} parameters · {} bytes of tensor data ({:.2} bits per weight) · {} bytes on disk",
        f.tensors.len(),
        params,
        bytes,
        8.0 * bytes as f64 / params.max(1) as f64,
        f.file_bytes()
    );
    if !runs.is_empty() {
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for (_, r) in &runs {
            match kinds.iter_mut().find(|(k, _)| k == r) {
                Some((_, c)) => *c += 1,
                None => kinds.push((r.clone(), 1)),
            }
        }
        let list = kinds.iter().map(|(k, c)| format!("{c} as {k}")).collect::<Vec<_>>().join(", ");
        use pare_models::weight::BlockActivations;
        let kernels = match BlockActivations::active() {
            BlockActivations::F32 => {
                format!("decode {}, prefill {} on dequantized panels", table.gemv_blocks_name, table.gemm_f32_name)
            }
            BlockActivations::Q8Decode => format!(
                "decode {} (8-bit activations), prefill {} on dequantized panels",
                table.gemv_blocks_q8_name, table.gemm_f32_name
            ),
            BlockActivations::Q8 => format!("decode and prefill {} (8-bit activations)", table.gemv_blocks_q8_name),
        };
        println!("runs as    {list}; {kernels}");
    }
    Ok(())
}

/// How config.json says the weights are stored: a line for people and an object for `--json`
/// (`quantization`: the compressed-tensors format or null; `activations`: `dynamic`, `static` or null;
/// `sparsity`: null, or `format`, `structure` and `global_sparsity` of its `sparsity_config`).
fn storage(c: &CompressionConfig) -> (String, serde_json::Value) {
    let q = c.quantization.as_ref();
    let quant = q.filter(|q| q.is_quantized());
    let acts = quant
        .and_then(|q| q.config_groups.values().find_map(|g| g.input_activations.as_ref()))
        .map(|a| if a.is_dynamic() { "dynamic" } else { "static" });
    let sparsity = q.and_then(|q| q.sparsity_config.as_ref());
    let mut parts = Vec::new();
    match quant {
        Some(q) => parts.push(format!(
            "int8 (compressed-tensors {}{})",
            if q.format.is_empty() { "?" } else { &q.format },
            acts.map_or(String::new(), |a| format!(", {a} activations"))
        )),
        None => parts.push("float".to_string()),
    }
    if let Some(s) = sparsity {
        let how = if s.format == "dense" {
            "stored dense (sparsity_config format \"dense\", which current transformers loads)".to_string()
        } else {
            format!(
                "stored packed as {} (read by pare and compressed-tensors ≤ 0.14, not by current transformers)",
                s.format
            )
        };
        parts.push(format!("pruned {}, {:.1}% zeros, {how}", s.sparsity_structure, 100.0 * s.global_sparsity));
    }
    if !c.pare.layers.is_empty() {
        parts.push("structured-pruned layers".to_string());
    }
    let v = json!({
        "quantization": quant.map(|q| q.format.clone()),
        "activations": acts,
        "sparsity": sparsity.map(|s| json!({
            "format": s.format, "structure": s.sparsity_structure, "global_sparsity": s.global_sparsity,
        })),
    });
    (parts.join(" · "), v)
}

/// Runs `pare inspect`.
pub fn run(model: &str, as_json: bool) -> Result<()> {
    let path = pare_formats::zoo::resolve(model, &mut |m| eprintln!("{m}"))?;
    if let Some(g) = common::gguf_path(&path) {
        return inspect_gguf(&g, as_json);
    }
    let dir = pare_formats::ModelDir::open(path)?;
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
    let (stored, stored_json) = storage(&CompressionConfig::from_config_file(&dir.file("config.json"))?);
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
            "storage": stored_json,
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
    println!("storage    {stored}");
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
