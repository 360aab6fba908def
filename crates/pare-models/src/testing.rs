//! Tiny generated models for tests, with deterministic random weights: a complete BERT sentence model
//! directory (config.json, model.safetensors, tokenizer.json, sentence-transformers files), and a
//! Llama decoder in the Hugging Face layout (config.json, model.safetensors).

use pare_formats::writer::{TensorData, write_atomic, write_safetensors};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// Sizes of a generated model.
#[derive(Clone, Copy, Debug)]
pub struct TinySpec {
    /// Hidden width.
    pub hidden: usize,
    /// Heads.
    pub heads: usize,
    /// Layers.
    pub layers: usize,
    /// Feed-forward width.
    pub intermediate: usize,
    /// Positions.
    pub max_positions: usize,
    /// Seed of the weights.
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec { hidden: 32, heads: 4, layers: 2, intermediate: 64, max_positions: 64, seed: 1 }
    }
}

/// The vocabulary of generated tokenizers: specials, letters, word pieces and a few words.
pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    for c in 'a'..='z' {
        v.push(c.to_string());
    }
    for c in 'a'..='z' {
        v.push(format!("##{c}"));
    }
    for w in ["the", "model", "is", "small", "fast", "and", "a", ".", ",", "!", "?", "-"] {
        if !v.contains(&w.to_string()) {
            v.push(w.to_string());
        }
    }
    v
}

/// Deterministic values uniform in `[-scale, scale)`.
pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The tensors of a generated model, by name, with their shapes.
pub fn tiny_tensors(spec: &TinySpec) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let (h, i) = (spec.hidden, spec.intermediate);
    let vocab = vocab().len();
    let mut t = BTreeMap::new();
    let mut seed = spec.seed * 1000;
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        seed += 1;
        let n = shape.iter().product();
        let v = random(n, seed, scale).into_iter().map(|x| x + offset).collect();
        t.insert(name, (shape, v));
    };
    add("embeddings.word_embeddings.weight".into(), vec![vocab, h], 0.5, 0.0);
    add("embeddings.position_embeddings.weight".into(), vec![spec.max_positions, h], 0.2, 0.0);
    add("embeddings.token_type_embeddings.weight".into(), vec![2, h], 0.1, 0.0);
    add("embeddings.LayerNorm.weight".into(), vec![h], 0.1, 1.0);
    add("embeddings.LayerNorm.bias".into(), vec![h], 0.1, 0.0);
    let ws = 1.0 / (h as f32).sqrt();
    for l in 0..spec.layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            add(format!("{p}.{name}.weight"), vec![out, inp], ws * 1.5, 0.0);
            add(format!("{p}.{name}.bias"), vec![out], 0.1, 0.0);
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{p}.{name}.weight"), vec![h], 0.1, 1.0);
            add(format!("{p}.{name}.bias"), vec![h], 0.1, 0.0);
        }
    }
    t
}

/// The config.json of a generated model.
pub fn tiny_config(spec: &TinySpec) -> serde_json::Value {
    json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": spec.hidden,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "intermediate_size": spec.intermediate,
        "vocab_size": vocab().len(),
        "max_position_embeddings": spec.max_positions,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "pad_token_id": 0
    })
}

/// A BERT WordPiece tokenizer.json over [`vocab`].
pub fn tiny_tokenizer() -> serde_json::Value {
    let vocab: serde_json::Map<String, serde_json::Value> =
        vocab().into_iter().enumerate().map(|(i, w)| (w, json!(i))).collect();
    let added: Vec<serde_json::Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// Writes a complete generated model directory to `dir` (created if needed).
pub fn write_tiny_bert(dir: &Path, spec: &TinySpec) -> std::io::Result<()> {
    let io = |e: pare_formats::FormatError| std::io::Error::other(e.to_string());
    std::fs::create_dir_all(dir.join("1_Pooling"))?;
    let tensors: Vec<TensorData> =
        tiny_tensors(spec).into_iter().map(|(name, (shape, v))| TensorData::f32(name, &shape, &v)).collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors, None).map_err(io)?;
    let json = |v: serde_json::Value| serde_json::to_vec_pretty(&v).expect("json");
    write_atomic(&dir.join("config.json"), &json(tiny_config(spec))).map_err(io)?;
    write_atomic(&dir.join("tokenizer.json"), &json(tiny_tokenizer())).map_err(io)?;
    let modules = json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
    ]);
    write_atomic(&dir.join("modules.json"), &json(modules)).map_err(io)?;
    write_atomic(
        &dir.join("1_Pooling/config.json"),
        &json(json!({"word_embedding_dimension": spec.hidden, "pooling_mode_mean_tokens": true})),
    )
    .map_err(io)?;
    write_atomic(
        &dir.join("sentence_bert_config.json"),
        &json(json!({"max_seq_length": spec.max_positions / 2, "do_lower_case": false})),
    )
    .map_err(io)?;
    Ok(())
}

/// Sizes of a generated Llama model.
#[derive(Clone, Copy, Debug)]
pub struct TinyLlama {
    /// Hidden width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Blocks.
    pub layers: usize,
    /// MLP width.
    pub ffn: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Seed of the weights.
    pub seed: u64,
}

impl Default for TinyLlama {
    fn default() -> Self {
        TinyLlama { hidden: 64, heads: 4, kv_heads: 2, layers: 2, ffn: 96, vocab: 80, seed: 3 }
    }
}

/// The tensors of a generated Llama model in the Hugging Face layout, by name: `(shape, values)`.
/// Untied: it has its own `lm_head`.
pub fn tiny_llama_tensors(spec: &TinyLlama) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let (h, d) = (spec.hidden, spec.hidden / spec.heads);
    let kv = spec.kv_heads * d;
    let mut seed = spec.seed;
    let mut next = |n: usize, scale: f32| {
        seed += 1;
        random(n, seed, scale)
    };
    let mut t = BTreeMap::new();
    let wscale = 1.0 / (h as f32).sqrt();
    t.insert("model.embed_tokens.weight".into(), (vec![spec.vocab, h], next(spec.vocab * h, 1.0)));
    t.insert("lm_head.weight".into(), (vec![spec.vocab, h], next(spec.vocab * h, wscale)));
    t.insert("model.norm.weight".into(), (vec![h], next(h, 0.2).iter().map(|v| 1.0 + v).collect()));
    for l in 0..spec.layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj", [h, h]),
            ("self_attn.k_proj", [kv, h]),
            ("self_attn.v_proj", [kv, h]),
            ("self_attn.o_proj", [h, h]),
            ("mlp.gate_proj", [spec.ffn, h]),
            ("mlp.up_proj", [spec.ffn, h]),
            ("mlp.down_proj", [h, spec.ffn]),
        ] {
            let scale = 1.0 / (shape[1] as f32).sqrt();
            t.insert(format!("{p}.{name}.weight"), (shape.to_vec(), next(shape[0] * shape[1], scale)));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            t.insert(format!("{p}.{norm}.weight"), (vec![h], next(h, 0.2).iter().map(|v| 1.0 + v).collect()));
        }
    }
    t
}

/// Writes a generated Llama model (config.json and model.safetensors) to `dir` (created if needed).
pub fn write_tiny_llama(dir: &Path, spec: &TinyLlama) -> std::io::Result<()> {
    let io = |e: pare_formats::FormatError| std::io::Error::other(e.to_string());
    std::fs::create_dir_all(dir)?;
    let tensors: Vec<TensorData> =
        tiny_llama_tensors(spec).into_iter().map(|(name, (shape, v))| TensorData::f32(name, &shape, &v)).collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors, None).map_err(io)?;
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.ffn,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "num_hidden_layers": spec.layers,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": spec.vocab,
        "tie_word_embeddings": false,
        "max_position_embeddings": 256,
    });
    write_atomic(&dir.join("config.json"), &serde_json::to_vec_pretty(&config).expect("json")).map_err(io)?;
    Ok(())
}
