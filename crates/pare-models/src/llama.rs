//! Llama-architecture decoders (SmolLM2 and kin) from GGUF: RMSNorm, rotary position embeddings,
//! grouped-query causal attention, SiLU-gated MLP, output tied to the token embeddings when the file
//! has no `output.weight`.
//!
//! Matrices stored as Q4_0, Q4_1 or Q8_0 stay in their blocks, read in place from the file map, and
//! multiply f32 activations ([`pare_kernels::qblock`]): the products are those of the dequantized
//! model, the reference the fixture was computed against (PyTorch on the dequantized GGUF), up to
//! summation order. [`Llama::load_with`] can instead widen everything to f32 at load. GGUF stores the
//! query and key rows in llama.cpp's order, in which rotary pairs are adjacent (`x[2i]`, `x[2i+1]`);
//! the rotation here works in that order, which equals Hugging Face's rotate-half on its own order.

use crate::error::{ModelError, Result};
use crate::weight::{Input, Linear, QuantCache, Weight, forward_group};
use pare_formats::gguf::{GgmlType, GgufFile, MetaValue};
use pare_formats::source::TensorSource;
use pare_kernels::Activation;
use pare_kernels::BlockType;
use std::cell::RefCell;

/// How a checkpoint names a Llama model's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// llama.cpp's names (`blk.N.attn_q.weight`), query/key rows with rotary pairs adjacent.
    Gguf,
    /// transformers' names (`model.layers.N.self_attn.q_proj.weight`), rotary pairs in halves.
    HuggingFace,
}

impl Layout {
    /// The name of tensor `part` (llama.cpp's short name: `attn_q`, `token_embd`, ...) of block
    /// `layer`, or of the model when `layer` is `None`.
    pub fn name(self, layer: Option<usize>, part: &str) -> String {
        match (self, layer) {
            (Layout::Gguf, Some(l)) => format!("blk.{l}.{part}.weight"),
            (Layout::Gguf, None) => format!("{part}.weight"),
            (Layout::HuggingFace, Some(l)) => {
                let hf = match part {
                    "attn_norm" => "input_layernorm",
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_output" => "self_attn.o_proj",
                    "ffn_norm" => "post_attention_layernorm",
                    "ffn_gate" => "mlp.gate_proj",
                    "ffn_up" => "mlp.up_proj",
                    "ffn_down" => "mlp.down_proj",
                    other => other,
                };
                format!("model.layers.{l}.{hf}.weight")
            }
            (Layout::HuggingFace, None) => match part {
                "token_embd" => "model.embed_tokens.weight".into(),
                "output_norm" => "model.norm.weight".into(),
                "output" => "lm_head.weight".into(),
                other => format!("{other}.weight"),
            },
        }
    }
}

/// Hugging Face query/key rows (each head's rotary pairs in halves: row `s · d/2 + i`) in
/// llama.cpp's order (pairs adjacent: row `2i + s`).
pub fn rope_rows_to_pairs(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(w, heads, cols, true)
}

/// llama.cpp's query/key rows (rotary pairs adjacent) in Hugging Face's order (pairs in halves):
/// the inverse of [`rope_rows_to_pairs`], for writing a Hugging Face checkpoint.
pub fn rope_rows_to_halves(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(w, heads, cols, false)
}

fn move_rope_rows(w: &[f32], heads: usize, cols: usize, to_pairs: bool) -> Vec<f32> {
    let d = w.len() / cols / heads;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for s in 0..2 {
                let (halves, pairs) = (h * d + s * (d / 2) + i, h * d + 2 * i + s);
                let (src, dst) = if to_pairs { (halves, pairs) } else { (pairs, halves) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Shape and constants of a Llama model, from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden width.
    pub hidden: usize,
    /// MLP width.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Rotary base.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Vocabulary.
    pub vocab: usize,
}

impl LlamaConfig {
    /// Reads the `llama.*` metadata; an absent or malformed key is an error naming it.
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch = f.meta("general.architecture").and_then(MetaValue::as_str).unwrap_or("?");
        if arch != "llama" {
            return Err(ModelError::Input(format!(
                "{}: architecture {arch:?}; pare runs \"llama\" decoders from GGUF",
                f.path().display()
            )));
        }
        let num = |k: &str| -> Result<f64> {
            f.meta(&format!("llama.{k}"))
                .and_then(MetaValue::as_f64)
                .ok_or_else(|| ModelError::Input(format!("{}: no number llama.{k}", f.path().display())))
        };
        let (hidden, heads) = (num("embedding_length")? as usize, num("attention.head_count")? as usize);
        let kv_heads = num("attention.head_count_kv").unwrap_or(heads as f64) as usize;
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(ModelError::Input(format!(
                "{}: {heads} heads, {kv_heads} key/value heads and width {hidden} do not fit together",
                f.path().display()
            )));
        }
        let vocab = match f.meta("llama.vocab_size").and_then(MetaValue::as_u64) {
            Some(v) => v as usize,
            None => f.meta("tokenizer.ggml.tokens").and_then(MetaValue::as_array).map_or(0, |a| a.len()),
        };
        Ok(LlamaConfig {
            layers: num("block_count")? as usize,
            hidden,
            ffn: num("feed_forward_length")? as usize,
            heads,
            kv_heads,
            head_dim: hidden / heads,
            rope_base: num("rope.freq_base").unwrap_or(10_000.0) as f32,
            eps: num("attention.layer_norm_rms_epsilon")? as f32,
            vocab,
        })
    }
}

impl LlamaConfig {
    /// Reads a Hugging Face `config.json` of `model_type` "llama"; an absent key or a feature pare
    /// does not run (rotary scaling, biases) is an error naming it.
    pub fn from_hf(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ModelError::Format(pare_formats::FormatError::io(path, e)))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Input(format!("{}: not JSON: {e}", path.display())))?;
        let kind = v["model_type"].as_str().unwrap_or("?");
        if kind != "llama" {
            return Err(ModelError::Input(format!(
                "{}: model_type {kind:?}; pare runs \"llama\" decoders from Hugging Face directories",
                path.display()
            )));
        }
        for (k, why) in
            [("rope_scaling", "rotary scaling"), ("attention_bias", "attention biases"), ("mlp_bias", "MLP biases")]
        {
            if !(v[k].is_null() || v[k] == serde_json::Value::Bool(false)) {
                return Err(ModelError::Input(format!("{}: {k}: {why} are not supported", path.display())));
            }
        }
        let num = |k: &str| -> Result<f64> {
            v[k].as_f64().ok_or_else(|| ModelError::Input(format!("{}: no number {k}", path.display())))
        };
        let (hidden, heads) = (num("hidden_size")? as usize, num("num_attention_heads")? as usize);
        let kv_heads = v["num_key_value_heads"].as_f64().map_or(heads, |x| x as usize);
        let head_dim = v["head_dim"].as_f64().map_or(hidden.checked_div(heads).unwrap_or(0), |x| x as usize);
        if heads == 0 || kv_heads == 0 || heads * head_dim != hidden || heads % kv_heads != 0 {
            return Err(ModelError::Input(format!(
                "{}: {heads} heads of {head_dim}, {kv_heads} key/value heads and width {hidden} do not fit together",
                path.display()
            )));
        }
        Ok(LlamaConfig {
            layers: num("num_hidden_layers")? as usize,
            hidden,
            ffn: num("intermediate_size")? as usize,
            heads,
            kv_heads,
            head_dim,
            rope_base: v["rope_theta"].as_f64().unwrap_or(10_000.0) as f32,
            eps: num("rms_norm_eps")? as f32,
            vocab: num("vocab_size")? as usize,
        })
    }
}

struct Block {
    attn_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A Llama model: block-quantized matrices read in place, or f32.
pub struct Llama {
    /// Its configuration.
    pub config: LlamaConfig,
    embed: Weight,
    blocks: Vec<Block>,
    out_norm: Vec<f32>,
    output: Linear,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama").field("config", &self.config).finish()
    }
}

impl Llama {
    /// Loads `f`, checking every tensor's shape and values: Q4_0, Q4_1 and Q8_0 matrices stay in
    /// their stored blocks, read in place from the file map; other types are dequantized to f32.
    pub fn load(f: &GgufFile) -> Result<Self> {
        Self::load_with(f, false)
    }

    /// [`Llama::load`], or with `dequantize` every matrix widened to f32 at load (the float path).
    pub fn load_with(f: &GgufFile, dequantize: bool) -> Result<Self> {
        Self::from_source(f, LlamaConfig::from_gguf(f)?, Layout::Gguf, dequantize)
    }

    /// Loads a Hugging Face Llama directory (config.json and model.safetensors): float weights, the
    /// query and key rows put in llama.cpp's order on the way in.
    pub fn load_hf(dir: &std::path::Path) -> Result<Self> {
        let config = LlamaConfig::from_hf(&dir.join("config.json"))?;
        let file = pare_formats::TensorFile::open(dir.join("model.safetensors"))?;
        Self::from_source(&file, config, Layout::HuggingFace, true)
    }

    /// The model from any tensor source whose names follow `layout`.
    pub fn from_source(src: &dyn TensorSource, c: LlamaConfig, layout: Layout, dequantize: bool) -> Result<Self> {
        let (h, kv) = (c.hidden, c.kv_heads * c.head_dim);
        let path = src.path().to_path_buf();
        let tensor = |name: &str, rows: usize, cols: usize| -> Result<Vec<f32>> {
            let shape: Vec<usize> = if rows == 1 { vec![cols] } else { vec![rows, cols] };
            Ok(src.f32(name, &shape)?)
        };
        // `rope_heads`: the query/key heads whose rows a Hugging Face layout stores in halves.
        let matrix = |name: &str, out: usize, inp: usize, rope_heads: usize| -> Result<Weight> {
            let stored = src.stored(name).ok_or_else(|| {
                ModelError::Format(pare_formats::FormatError::MissingTensor {
                    path: path.clone(),
                    name: name.to_string(),
                })
            })?;
            let ty = match stored.ggml() {
                Some(GgmlType::Q4_0) => Some(BlockType::Q4_0),
                Some(GgmlType::Q4_1) => Some(BlockType::Q4_1),
                Some(GgmlType::Q8_0) => Some(BlockType::Q8_0),
                _ => None,
            };
            match ty {
                Some(ty) if !dequantize && layout == Layout::Gguf => {
                    let got = src.shape(name).unwrap_or_default();
                    if got != [out, inp] {
                        return Err(ModelError::Format(pare_formats::FormatError::Shape {
                            path: path.clone(),
                            name: name.to_string(),
                            got,
                            expected: vec![out, inp],
                        }));
                    }
                    let bytes = src.mapped(name)?;
                    // The scales are the only floats of a block; the quants are bounded integers.
                    check_block_scales(ty, &bytes).map_err(|b| {
                        ModelError::Input(format!(
                            "{}: tensor {name} has a non-finite scale in block {b}",
                            path.display()
                        ))
                    })?;
                    Weight::blocks(ty, bytes, out, inp)
                        .map_err(|e| ModelError::Input(format!("{}: tensor {name}: {e}", path.display())))
                }
                _ => {
                    let mut v = tensor(name, out, inp)?;
                    if layout == Layout::HuggingFace && rope_heads > 0 {
                        v = rope_rows_to_pairs(&v, rope_heads, inp);
                    }
                    Ok(Weight::dense_f32(&v, out, inp))
                }
            }
        };
        let name = |l: usize, part: &str| layout.name(Some(l), part);
        let linear = |n: String, out: usize, inp: usize, rope: usize| -> Result<Linear> {
            Ok(Linear { weight: matrix(&n, out, inp, rope)?, bias: vec![0.0; out] })
        };
        let mut blocks = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            blocks.push(Block {
                attn_norm: tensor(&name(l, "attn_norm"), 1, h)?,
                q: linear(name(l, "attn_q"), h, h, c.heads)?,
                k: linear(name(l, "attn_k"), kv, h, c.kv_heads)?,
                v: linear(name(l, "attn_v"), kv, h, 0)?,
                o: linear(name(l, "attn_output"), h, h, 0)?,
                ffn_norm: tensor(&name(l, "ffn_norm"), 1, h)?,
                gate: linear(name(l, "ffn_gate"), c.ffn, h, 0)?,
                up: linear(name(l, "ffn_up"), c.ffn, h, 0)?,
                down: linear(name(l, "ffn_down"), h, c.ffn, 0)?,
            });
        }
        let embed = matrix(&layout.name(None, "token_embd"), c.vocab, h, 0)?;
        let out_name = layout.name(None, "output");
        let output = match src.stored(&out_name) {
            Some(_) => linear(out_name, c.vocab, h, 0)?,
            None => Linear { weight: embed.clone(), bias: vec![0.0; c.vocab] },
        };
        let out_norm = tensor(&layout.name(None, "output_norm"), 1, h)?;
        Ok(Llama { config: c, embed, blocks, out_norm, output })
    }

    /// Every matrix of the model with its GGUF name and how it is held (for `inspect` and reports).
    pub fn matrices(&self) -> Vec<(String, &Weight)> {
        let mut v = Vec::new();
        for (l, b) in self.blocks.iter().enumerate() {
            for (s, lin) in [
                ("attn_q", &b.q),
                ("attn_k", &b.k),
                ("attn_v", &b.v),
                ("attn_output", &b.o),
                ("ffn_gate", &b.gate),
                ("ffn_up", &b.up),
                ("ffn_down", &b.down),
            ] {
                v.push((format!("blk.{l}.{s}.weight"), &lin.weight));
            }
        }
        v.push(("token_embd.weight".into(), &self.embed));
        v.push(("output.weight".into(), &self.output.weight));
        v
    }

    /// Bytes held by the weights (a tied output counted once).
    pub fn weight_bytes(&self) -> usize {
        let tied = matches!((&self.embed, &self.output.weight),
            (Weight::Blocks { data: a, .. }, Weight::Blocks { data: b, .. }) if a.as_ptr() == b.as_ptr());
        let all: usize = self.matrices().iter().map(|(_, w)| w.bytes()).sum();
        all - if tied { self.embed.bytes() } else { 0 }
    }

    /// Row `id` of the token embeddings.
    fn embed_row(&self, id: usize, out: &mut [f32]) {
        let h = self.config.hidden;
        match &self.embed {
            Weight::Blocks { ty, data, .. } => {
                let rb = h / pare_kernels::qblock::QK * ty.block_bytes();
                pare_kernels::qblock::dequantize_blocks(*ty, &data[id * rb..(id + 1) * rb], out);
            }
            Weight::DenseF32(p) => {
                for (kk, o) in out.iter_mut().enumerate() {
                    *o = p.get(kk, id);
                }
            }
            w => unreachable!("embeddings held as {}", w.format()),
        }
    }

    /// Logits (`ids.len() × vocab`, row-major) of every position of one sequence, attending causally.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.forward(ids, &mut KvCache::default(), true)
    }

    /// Runs `ids` after the positions already in `cache` (appending theirs) and returns the logits of
    /// every new position (`all`) or of the last one only.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache, all: bool) -> Result<Vec<f32>> {
        let c = &self.config;
        let (t, h) = (ids.len(), c.hidden);
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= c.vocab) {
            return Err(ModelError::Input(format!("token id {bad} is past the vocabulary of {}", c.vocab)));
        }
        if t == 0 {
            return Ok(Vec::new());
        }
        if cache.k.len() != c.layers {
            *cache = KvCache { k: vec![Vec::new(); c.layers], v: vec![Vec::new(); c.layers], len: 0 };
        }
        let start = cache.len;
        let mut x = vec![0f32; t * h];
        for (row, &id) in x.chunks_exact_mut(h).zip(ids) {
            self.embed_row(id as usize, row);
        }
        let qcache = RefCell::new(QuantCache::default());
        let kvw = c.kv_heads * c.head_dim;
        let (mut q, mut k, mut v) = (vec![0f32; t * h], vec![0f32; t * kvw], vec![0f32; t * kvw]);
        let mut att = vec![0f32; t * h];
        let (mut gate, mut up) = (vec![0f32; t * c.ffn], vec![0f32; t * c.ffn]);
        let mut normed = vec![0f32; t * h];
        let (cos, sin) = rope_tables(start, t, c.head_dim, c.rope_base);
        for (l, b) in self.blocks.iter().enumerate() {
            rms_norm(&x, &b.attn_norm, c.eps, &mut normed);
            let input = Input::new(&normed, t, h, &qcache);
            forward_group(&[&b.q, &b.k, &b.v], &input, vec![&mut q, &mut k, &mut v]);
            rotate(&mut q, c.heads, c.head_dim, &cos, &sin);
            rotate(&mut k, c.kv_heads, c.head_dim, &cos, &sin);
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            causal_attention(&q, &cache.k[l], &cache.v[l], start, t, c, &mut att);
            let input = Input::new(&att, t, h, &qcache);
            let residual = x.clone();
            b.o.forward(&input, &mut x, Activation::None, Some(&residual));
            rms_norm(&x, &b.ffn_norm, c.eps, &mut normed);
            let input = Input::new(&normed, t, h, &qcache);
            forward_group(&[&b.gate, &b.up], &input, vec![&mut gate, &mut up]);
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            let input = Input::new(&gate, t, c.ffn, &qcache);
            let residual = x.clone();
            b.down.forward(&input, &mut x, Activation::None, Some(&residual));
        }
        cache.len += t;
        let rows = if all { t } else { 1 };
        let last = &x[(t - rows) * h..];
        rms_norm(last, &self.out_norm, c.eps, &mut normed[..rows * h]);
        let mut logits = vec![0f32; rows * c.vocab];
        self.output.forward(&Input::new(&normed[..rows * h], rows, h, &qcache), &mut logits, Activation::None, None);
        Ok(logits)
    }
}

/// Keys and values of the positions run so far, per layer (`len × kv_heads · head_dim`, rotated keys).
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Positions held.
    pub len: usize,
}

/// `out = x / sqrt(mean(x²) + eps) · w`, row by row.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let h = w.len();
    for (row, o) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &g) in o.iter_mut().zip(row).zip(w) {
            *o = v * inv * g;
        }
    }
}

/// Cosines and sines of positions `start .. start + t`, pair `i`: angle `p · base^(−2i/d)`, the
/// frequency and the angle rounded to f32 as Hugging Face computes them.
fn rope_tables(start: usize, t: usize, d: usize, base: f32) -> (Vec<f32>, Vec<f32>) {
    let half = d / 2;
    let (mut cos, mut sin) = (vec![0f32; t * half], vec![0f32; t * half]);
    for i in 0..half {
        let freq = 1.0 / base.powf((2 * i) as f32 / d as f32);
        for p in 0..t {
            let a = ((start + p) as f32 * freq) as f64;
            cos[p * half + i] = a.cos() as f32;
            sin[p * half + i] = a.sin() as f32;
        }
    }
    (cos, sin)
}

/// Rotates adjacent pairs of every head of every row (llama.cpp's order of the query/key rows).
fn rotate(x: &mut [f32], heads: usize, d: usize, cos: &[f32], sin: &[f32]) {
    let half = d / 2;
    for (p, row) in x.chunks_exact_mut(heads * d).enumerate() {
        for head in row.chunks_exact_mut(d) {
            for i in 0..half {
                let (c, s) = (cos[p * half + i], sin[p * half + i]);
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * c - b * s;
                head[2 * i + 1] = a * s + b * c;
            }
        }
    }
}

/// Up to this many new positions, attention reads the cache in place ([`few_query_attention`]);
/// above it, each head's keys and values are packed for the GEMM kernel.
const FEW_QUERIES: usize = 8;

/// Causal attention for a few new positions (decoding), straight from the cache rows: query heads
/// are shared among the threads; each computes its scores, softmax and weighted sum of values.
fn few_query_attention(q: &[f32], k: &[f32], v: &[f32], start: usize, t: usize, c: &LlamaConfig, out: &mut [f32]) {
    let (d, group) = (c.head_dim, c.heads / c.kv_heads);
    let (hw, kvw) = (c.heads * d, c.kv_heads * d);
    let scale = 1.0 / (d as f32).sqrt();
    let n = start + t;
    let table = pare_kernels::dispatch::table();
    // One task per (position, head), in the order of the output's rows of `d` values.
    let tasks = t * c.heads;
    let shared = pare_kernels::par::SharedRows::new(&mut out[..t * hw], tasks, d);
    pare_kernels::par::for_each_row_block(tasks, 1, true, |block| {
        let outs = block.rows_mut(&shared);
        let mut scores = vec![0f32; n];
        for (task, o) in block.range().zip(outs.chunks_exact_mut(d)) {
            let (p, head) = (task / c.heads, task % c.heads);
            let g = head / group;
            let qh = &q[p * hw + head * d..p * hw + (head + 1) * d];
            let seen = start + p + 1;
            pare_kernels::attention::attend_row_f32_with(
                table,
                qh,
                &k[g * d..],
                &v[g * d..],
                kvw,
                seen,
                scale,
                &mut scores,
                o,
            );
        }
    });
}

/// Causal attention of `t` new positions (from `start`) over the `start + t` cached keys and values:
/// each query head `h` reads key/value head `h / (heads / kv_heads)`.
fn causal_attention(q: &[f32], k: &[f32], v: &[f32], start: usize, t: usize, c: &LlamaConfig, out: &mut [f32]) {
    if t <= FEW_QUERIES {
        return few_query_attention(q, k, v, start, t, c, out);
    }
    let (d, group) = (c.head_dim, c.heads / c.kv_heads);
    let (hw, kvw) = (c.heads * d, c.kv_heads * d);
    let n = start + t;
    let scale = 1.0 / (d as f32).sqrt();
    let table = pare_kernels::dispatch::table();
    let mut scores = vec![0f32; t * n];
    let mut kh = vec![0f32; n * d];
    let mut vh = vec![0f32; n * d];
    let mut qh = vec![0f32; t * d];
    let mut oh = vec![0f32; t * d];
    for head in 0..c.heads {
        let g = head / group;
        for p in 0..t {
            qh[p * d..(p + 1) * d].copy_from_slice(&q[p * hw + head * d..p * hw + (head + 1) * d]);
        }
        for p in 0..n {
            kh[p * d..(p + 1) * d].copy_from_slice(&k[p * kvw + g * d..p * kvw + (g + 1) * d]);
            vh[p * d..(p + 1) * d].copy_from_slice(&v[p * kvw + g * d..p * kvw + (g + 1) * d]);
        }
        let kp = pare_kernels::PackedF32::from_rows(&kh, n, d);
        let epi = pare_kernels::Epilogue { alpha: scale, ..Default::default() };
        pare_kernels::gemm_f32(&qh, d, t, &kp, &mut scores, n, &epi);
        for (p, row) in scores.chunks_exact_mut(n).enumerate() {
            let seen = start + p + 1;
            pare_kernels::norm::softmax_with(table, &mut row[..seen], None);
            row[seen..].fill(0.0);
        }
        let vp = pare_kernels::PackedF32::from_cols(&vh, n, d);
        pare_kernels::gemm_f32(&scores, n, t, &vp, &mut oh, d, &Default::default());
        for p in 0..t {
            out[p * hw + head * d..p * hw + (head + 1) * d].copy_from_slice(&oh[p * d..(p + 1) * d]);
        }
    }
}

/// The index of the first block of `data` whose f16 scale (or minimum) is not finite.
fn check_block_scales(ty: BlockType, data: &[u8]) -> std::result::Result<(), usize> {
    let halves = if ty == BlockType::Q4_1 { 2 } else { 1 };
    for (b, blk) in data.chunks_exact(ty.block_bytes()).enumerate() {
        for i in 0..halves {
            // f16 exponent all ones: infinity or NaN.
            if u16::from_le_bytes([blk[2 * i], blk[2 * i + 1]]) & 0x7c00 == 0x7c00 {
                return Err(b);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_row_orders_invert_each_other() {
        // Two heads of 4 rows, one column: Hugging Face rows h·4 + [0, 1 | 2, 3] are pairs (0, 2), (1, 3).
        let hf: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let pairs = rope_rows_to_pairs(&hf, 2, 1);
        assert_eq!(pairs, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(rope_rows_to_halves(&pairs, 2, 1), hf);
        let w: Vec<f32> = (0..3 * 64 * 5).map(|x| x as f32).collect();
        assert_eq!(rope_rows_to_halves(&rope_rows_to_pairs(&w, 3, 5), 3, 5), w);
    }

    #[test]
    fn hf_config_errors_name_the_problem() {
        let d = std::env::temp_dir().join(format!("pare-llama-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("config.json");
        std::fs::write(&p, r#"{"model_type": "bert"}"#).unwrap();
        assert!(LlamaConfig::from_hf(&p).unwrap_err().to_string().contains("\"llama\""));
        std::fs::write(&p, r#"{"model_type": "llama", "rope_scaling": {"type": "linear"}}"#).unwrap();
        assert!(LlamaConfig::from_hf(&p).unwrap_err().to_string().contains("rope_scaling"));
        std::fs::write(&p, r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 3}"#).unwrap();
        assert!(LlamaConfig::from_hf(&p).unwrap_err().to_string().contains("do not fit"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
