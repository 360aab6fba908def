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
    use pare_formats::gguf::{GgufFile, MetaValue};
    use pare_formats::source::TensorSource;
    use pare_formats::writer::{StagedDir, TensorData, write_atomic, write_safetensors};
    crate::output::check_destination(gguf, out, force)?;
    let f = GgufFile::open(gguf)?;
    let c = pare_models::llama::LlamaConfig::from_gguf(&f)?;
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
    tensors.push(TensorData::f32("model.embed_tokens.weight", &shape, &embed));
    for l in 0..c.layers {
        for (g, hf) in LLAMA_BLOCK_NAMES {
            let (mut v, shape) = get(&format!("blk.{l}.{g}.weight"))?;
            match g {
                "attn_q" => v = pare_models::llama::rope_rows_to_halves(&v, c.heads, c.hidden),
                "attn_k" => v = pare_models::llama::rope_rows_to_halves(&v, c.kv_heads, c.hidden),
                _ => {}
            }
            tensors.push(TensorData::f32(format!("model.layers.{l}.{hf}.weight"), &shape, &v));
        }
    }
    let (norm, shape) = get("output_norm.weight")?;
    tensors.push(TensorData::f32("model.norm.weight", &shape, &norm));
    let tied = f.tensor("output.weight").is_none();
    if !tied {
        let (w, shape) = get("output.weight")?;
        tensors.push(TensorData::f32("lm_head.weight", &shape, &w));
    }
    let num = |k: &str| f.meta(k).and_then(MetaValue::as_u64);
    let config = serde_json::json!({
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
    let staged = StagedDir::new(out)?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&staged.path("model.safetensors"), &tensors, Some(meta))?;
    write_atomic(&staged.path("config.json"), serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes())?;
    write_atomic(&staged.path("tokenizer.json"), tok.to_json()?.as_bytes())?;
    let dir = staged.commit()?;
    log(&format!("wrote {} float32 tensors as a Hugging Face Llama directory to {}", tensors.len(), dir.display()));
    Ok(dir)
}
