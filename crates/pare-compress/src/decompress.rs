//! Decompression: any model pare runs, written back as a plain float32 checkpoint (weights
//! dequantized and densified; a structured-pruned model keeps its smaller layers), for tools that
//! read only dense models and for cross-checks; a Llama GGUF as a Hugging Face directory.

use crate::encode::{self, Summary};
use crate::error::{CompressError, Result};
use crate::quantize::inherited;
use crate::source::Source;
use pare_formats::ModelDir;
use std::path::Path;

/// Writes `src` as a dense float32 model to `out`.
pub fn decompress(src: &ModelDir, out: &Path, force: bool, log: &mut dyn FnMut(&str)) -> Result<Summary> {
    crate::output::check_destination(&src.root, out, force)?;
    let source = Source::load(src)?;
    let mut plan = inherited(&source)?;
    plan.sparsity = None;
    plan.quant = None;
    encode::write(&source, &source.enc.model, &plan, out, force, &mut |_| {})
        .inspect(|s| log(&format!("wrote a dense float32 model to {}", s.out_dir.display())))
}

/// Hugging Face names of the per-block GGUF tensors of a Llama model.
const LLAMA_BLOCK_NAMES: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Writes a Llama GGUF as a Hugging Face directory: every tensor dequantized to float32 in
/// model.safetensors (query and key rows back in Hugging Face's order), config.json for
/// `LlamaForCausalLM`, and tokenizer.json built from the GGUF metadata.
pub fn decompress_gguf(gguf: &Path, out: &Path, force: bool, log: &mut dyn FnMut(&str)) -> Result<std::path::PathBuf> {
    write_hf_llama(gguf, out, force, None, log)
}

/// Writes a Hugging Face Llama directory as a plain float32 one: `pack-quantized` int4 matrices
/// dequantized (`d · q` in f32, exactly), every other tensor widened to f32, config.json without its
/// `quantization_config`, the other files copied.
pub fn decompress_hf_llama(
    dir: &Path,
    out: &Path,
    force: bool,
    log: &mut dyn FnMut(&str),
) -> Result<std::path::PathBuf> {
    use pare_formats::writer::{StagedDir, TensorData, write_atomic, write_safetensors};
    crate::output::check_destination(dir, out, force)?;
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| pare_formats::FormatError::io(&cfg_path, e))?;
    let mut config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CompressError::Invalid(format!("{}: not JSON: {e}", cfg_path.display())))?;
    let file = pare_formats::TensorFile::open(dir.join("model.safetensors"))?;
    let (mut tensors, mut int4) = (Vec::new(), 0usize);
    for info in file.infos() {
        let name = info.name;
        if let Some(base) = name.strip_suffix(".weight_packed") {
            let t = pare_formats::pack_quantized::read_int4(&file, base)
                .map_err(|e| CompressError::Invalid(format!("{}: {base}: {e}", file.path().display())))?;
            tensors.push(TensorData::f32(format!("{base}.weight"), &[t.n, t.k], &t.dequantize()));
            int4 += 1;
        } else if !(name.ends_with(".weight_scale") || name.ends_with(".weight_shape")) {
            tensors.push(TensorData::f32(&name, &info.shape, &file.f32(&name, &info.shape)?));
        }
    }
    if let Some(o) = config.as_object_mut() {
        o.remove("quantization_config");
        o.insert("torch_dtype".into(), "float32".into());
    }
    let staged = StagedDir::new(out)?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&staged.path("model.safetensors"), &tensors, Some(meta))?;
    write_atomic(&staged.path("config.json"), serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes())?;
    for e in std::fs::read_dir(dir).map_err(|e| pare_formats::FormatError::io(dir, e))? {
        let p = e.map_err(|e| pare_formats::FormatError::io(dir, e))?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if p.is_file() && name != "config.json" && name != "model.safetensors" {
            std::fs::copy(&p, staged.path(&name)).map_err(|e| pare_formats::FormatError::io(&p, e))?;
        }
    }
    let dir = staged.commit()?;
    log(&format!("wrote {} float32 tensors ({int4} of them int4 before) to {}", tensors.len(), dir.display()));
    Ok(dir)
}

/// Writes a Llama GGUF as a Hugging Face directory (as [`decompress_gguf`]) with the seven matrices
/// of every block quantized to group-wise symmetric int4 (groups of `group` inputs, a multiple of 32
/// dividing every matrix's inputs; one f16 scale each), stored in compressed-tensors' `pack-quantized`
/// layout; embeddings and the output are stored as f16, norms as f32.
pub fn quantize_int4_hf(
    gguf: &Path,
    out: &Path,
    force: bool,
    group: usize,
    log: &mut dyn FnMut(&str),
) -> Result<std::path::PathBuf> {
    write_hf_llama(gguf, out, force, Some(group), log)
}

fn write_hf_llama(
    gguf: &Path,
    out: &Path,
    force: bool,
    int4: Option<usize>,
    log: &mut dyn FnMut(&str),
) -> Result<std::path::PathBuf> {
    use pare_formats::gguf::{GgufFile, MetaValue};
    use pare_formats::source::TensorSource;
    use pare_formats::writer::{StagedDir, TensorData, write_atomic, write_safetensors};
    crate::output::check_destination(gguf, out, force)?;
    let f = GgufFile::open(gguf)?;
    let c = pare_models::llama::LlamaConfig::from_gguf(&f)?;
    if let Some(g) = int4 {
        crate::int4::check_group(g, &[("blk.0.attn_q.weight", c.hidden), ("blk.0.ffn_down.weight", c.ffn)])?;
    }
    let tok = pare_formats::tokenizer::TextTokenizer::from_gguf(&f)?;
    let mut tensors = Vec::new();
    // The tensor source checks each tensor's presence, shape and values.
    let get = |name: &str| -> Result<(Vec<f32>, Vec<usize>)> {
        let shape = TensorSource::shape(&f, name).ok_or_else(|| {
            CompressError::Format(pare_formats::FormatError::MissingTensor {
                path: gguf.to_path_buf(),
                name: name.into(),
            })
        })?;
        Ok((TensorSource::f32(&f, name, &shape)?, shape))
    };
    let (embed, shape) = get("token_embd.weight")?;
    // Beside int4 matrices the embedding table (the largest tensor, read one row per token) is
    // stored as f16, as quantized checkpoints usually keep their float tensors.
    let float = |name: &str, shape: &[usize], v: &[f32]| match int4 {
        Some(_) => {
            let bits: Vec<u16> = v.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect();
            TensorData::f16_bits(name, shape, &bits)
        }
        None => TensorData::f32(name, shape, v),
    };
    tensors.push(float("model.embed_tokens.weight", &shape, &embed));
    for l in 0..c.layers {
        for (g, hf) in LLAMA_BLOCK_NAMES {
            let (mut v, shape) = get(&format!("blk.{l}.{g}.weight"))?;
            match g {
                "attn_q" => v = pare_models::llama::rope_rows_to_halves(&v, c.heads, c.hidden),
                "attn_k" => v = pare_models::llama::rope_rows_to_halves(&v, c.kv_heads, c.hidden),
                _ => {}
            }
            let base = format!("model.layers.{l}.{hf}");
            match int4 {
                Some(group) if shape.len() == 2 => {
                    let (n, k) = (shape[0], shape[1]);
                    let (codes, scales) = crate::int4::quantize_groups(&v, n, k, group);
                    let packed = pare_formats::pack_quantized::pack_int4(&codes, n, k);
                    tensors.push(TensorData::i32(format!("{base}.weight_packed"), &[n, k / 8], &packed));
                    tensors.push(TensorData::f16_bits(format!("{base}.weight_scale"), &[n, k / group], &scales));
                    tensors.push(TensorData::i32(format!("{base}.weight_shape"), &[2], &[n as i32, k as i32]));
                }
                _ => tensors.push(TensorData::f32(format!("{base}.weight"), &shape, &v)),
            }
        }
    }
    let (norm, shape) = get("output_norm.weight")?;
    tensors.push(TensorData::f32("model.norm.weight", &shape, &norm));
    let tied = f.tensor("output.weight").is_none();
    if !tied {
        let (w, shape) = get("output.weight")?;
        tensors.push(float("lm_head.weight", &shape, &w));
    }
    let num = |k: &str| f.meta(k).and_then(MetaValue::as_u64);
    let mut config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c.hidden,
        "intermediate_size": c.ffn,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim,
        "rms_norm_eps": c.eps,
        "rope_theta": c.rope_base,
        "vocab_size": c.vocab,
        "max_position_embeddings": num("llama.context_length").unwrap_or(2048),
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "torch_dtype": "float32",
        "bos_token_id": num("tokenizer.ggml.bos_token_id"),
        "eos_token_id": num("tokenizer.ggml.eos_token_id"),
        "pare": {"decompressed_from": gguf.file_name().map(|n| n.to_string_lossy().into_owned())},
    });
    if let Some(group) = int4 {
        config["pare"] =
            serde_json::json!({"quantized_from": gguf.file_name().map(|n| n.to_string_lossy().into_owned())});
        config["quantization_config"] = crate::int4::quantization_config(group);
    }
    let staged = StagedDir::new(out)?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&staged.path("model.safetensors"), &tensors, Some(meta))?;
    write_atomic(&staged.path("config.json"), serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes())?;
    write_atomic(&staged.path("tokenizer.json"), tok.to_json()?.as_bytes())?;
    let dir = staged.commit()?;
    match int4 {
        Some(group) => log(&format!(
            "wrote {} matrices as int4 (groups of {group}, compressed-tensors pack-quantized) in a Hugging Face Llama directory at {}",
            7 * c.layers,
            dir.display()
        )),
        None => log(&format!(
            "wrote {} float32 tensors as a Hugging Face Llama directory to {}",
            tensors.len(),
            dir.display()
        )),
    }
    Ok(dir)
}
