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

use crate::arch::{Architecture, Batch, LinearHook, Task, UnitKind, Units};
use crate::error::{ModelError, Result};
use crate::weight::{BlockActivations, Input, Linear, QuantCache, Weight, forward_group};
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

fn move_rope_rows<T: Copy + Default>(w: &[T], heads: usize, cols: usize, to_pairs: bool) -> Vec<T> {
    let d = w.len() / cols / heads;
    let mut out = vec![T::default(); w.len()];
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

/// A compressed-tensors `pack-quantized` matrix (`{base}.weight_packed`, `.weight_scale`,
/// `.weight_shape`: symmetric int4 codes in groups with f16 scales) as Q4_0 blocks, exactly; its query
/// and key rows moved to llama.cpp's order.
fn pack_quantized(src: &dyn TensorSource, base: &str, out: usize, inp: usize, rope_heads: usize) -> Result<Weight> {
    let bad = |msg: String| ModelError::Input(format!("{}: {base}: {msg}", src.path().display()));
    let t = pare_formats::pack_quantized::read_int4(src, base).map_err(bad)?;
    if (t.n, t.k) != (out, inp) {
        return Err(bad(format!("int4 weights of {}×{}, expected {out}×{inp}", t.n, t.k)));
    }
    if !t.group.is_multiple_of(32) {
        return Err(bad(format!("groups of {}: pare runs int4 groups that are multiples of 32", t.group)));
    }
    let mut bytes = pare_formats::pack_quantized::int4_to_q4_0(&t.codes, &t.scales, out, inp, t.group);
    if rope_heads > 0 {
        bytes = move_rope_rows(&bytes, rope_heads, inp / 32 * 18, true);
    }
    let data =
        pare_formats::source::MappedBytes::owned(&bytes).map_err(|e| bad(format!("cannot hold its blocks: {e}")))?;
    Weight::blocks(BlockType::Q4_0, data, out, inp).map_err(bad)
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
    /// The end-of-sequence token, when the checkpoint names one.
    pub eos: Option<u32>,
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
            eos: f.meta("tokenizer.ggml.eos_token_id").and_then(MetaValue::as_u64).map(|e| e as u32),
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
            eos: v["eos_token_id"].as_u64().map(|e| e as u32),
        })
    }
}

#[derive(Clone)]
struct Block {
    /// Query heads and key/value heads of this block (fewer than the config's after structured
    /// pruning).
    heads: Heads,
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

/// Attention heads of one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Heads {
    /// Query heads.
    q: usize,
    /// Key/value heads; each serves `q / kv` query heads.
    kv: usize,
    /// Width of a head.
    d: usize,
}

/// A Llama model: block-quantized matrices read in place, or f32.
#[derive(Clone)]
pub struct Llama {
    /// Its configuration.
    pub config: LlamaConfig,
    /// How its checkpoint names tensors.
    pub layout: Layout,
    /// Whether the output projection is the token embedding table (the file has no output matrix).
    tied: bool,
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
    /// Loads `f`, checking every tensor's shape and values: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q4_K, Q5_K, Q6_K matrices stay in
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
            if layout == Layout::HuggingFace
                && src.stored(name).is_none()
                && let Some(base) =
                    name.strip_suffix(".weight").filter(|b| src.stored(&format!("{b}.weight_packed")).is_some())
            {
                return pack_quantized(src, base, out, inp, rope_heads);
            }
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
                Some(GgmlType::Q5_0) => Some(BlockType::Q5_0),
                Some(GgmlType::Q5_1) => Some(BlockType::Q5_1),
                Some(GgmlType::Q6_K) => Some(BlockType::Q6_K),
                Some(GgmlType::Q4_K) => Some(BlockType::Q4_K),
                Some(GgmlType::Q5_K) => Some(BlockType::Q5_K),
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
                heads: Heads { q: c.heads, kv: c.kv_heads, d: c.head_dim },
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
        let tied = src.stored(&out_name).is_none();
        let output = match src.stored(&out_name) {
            Some(_) => linear(out_name, c.vocab, h, 0)?,
            None => Linear { weight: embed.clone(), bias: vec![0.0; c.vocab] },
        };
        let out_norm = tensor(&layout.name(None, "output_norm"), 1, h)?;
        let mut model = Llama { config: c, layout, tied, embed, blocks, out_norm, output };
        model.lay_out_blocks()?;
        Ok(model)
    }

    /// The token embedding table (`vocab × hidden`).
    pub fn token_embeddings(&self) -> &Weight {
        &self.embed
    }

    /// Replaces the token embedding table, and the output projection with it when that is tied.
    pub fn set_token_embeddings(&mut self, w: Weight) {
        if self.tied {
            self.output.weight = w.clone();
        }
        self.embed = w;
    }

    /// Whether the output projection is the token embedding table.
    pub fn is_tied(&self) -> bool {
        self.tied
    }

    /// The output projection.
    pub fn output(&self) -> &Linear {
        &self.output
    }

    /// The output projection, to change (of an untied model: a tied one's is the embedding table,
    /// changed with [`Llama::set_token_embeddings`]).
    pub fn output_mut(&mut self) -> &mut Linear {
        &mut self.output
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

    /// Sets what every block-quantized matrix is multiplied with (loading takes `PARE_BLOCK_ACT`'s
    /// choice, or the default), and lays out their rows for it; an error when a new layout cannot
    /// be held.
    pub fn set_block_activations(&mut self, act: BlockActivations) -> Result<()> {
        for lin in self.block_linears_mut() {
            lin.weight.set_block_activations(act);
        }
        self.embed.set_block_activations(act);
        self.output.weight.set_block_activations(act);
        self.lay_out_blocks()
    }

    /// The seven Linears of every block.
    fn block_linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.blocks
            .iter_mut()
            .flat_map(|b| [&mut b.q, &mut b.k, &mut b.v, &mut b.o, &mut b.gate, &mut b.up, &mut b.down])
    }

    /// [`Weight::lay_out_blocks`] for every matrix; a tied output projection shares the embedding
    /// table's new layout.
    fn lay_out_blocks(&mut self) -> Result<()> {
        self.embed.lay_out_blocks().map_err(ModelError::Input)?;
        for lin in self.block_linears_mut() {
            lin.weight.lay_out_blocks().map_err(ModelError::Input)?;
        }
        if !self.tied {
            self.output.weight.lay_out_blocks().map_err(ModelError::Input)?;
        }
        if self.tied {
            self.output.weight = self.embed.clone();
        }
        Ok(())
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
            w @ Weight::Blocks { .. } => w.dequantize_row(id, &mut out[..h]),
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
        self.check_ids(ids)?;
        if t == 0 {
            return Ok(Vec::new());
        }
        if cache.k.len() != c.layers {
            *cache = KvCache { k: vec![Vec::new(); c.layers], v: vec![Vec::new(); c.layers], len: 0 };
        }
        let start = cache.len;
        let mut x = self.embed_ids(ids);
        let qcache = RefCell::new(QuantCache::default());
        let rope = rope_tables(start, t, c.head_dim, c.rope_base);
        let mut scratch = Scratch::default();
        for (l, b) in self.blocks.iter().enumerate() {
            let kv = Some((&mut cache.k[l], &mut cache.v[l]));
            self.run_block(b, &mut x, 1, t, start, kv, &rope, &qcache, &mut scratch, None, None);
        }
        cache.len += t;
        let rows = if all { t } else { 1 };
        Ok(self.output_logits(&x[(t - rows) * h..]))
    }

    /// Logits of final hidden states (`rows × hidden`, the output of the last block): the output norm,
    /// then the output projection.
    pub fn output_logits(&self, hidden: &[f32]) -> Vec<f32> {
        let c = &self.config;
        let rows = hidden.len() / c.hidden;
        let mut normed = vec![0f32; rows * c.hidden];
        rms_norm(&hidden[..rows * c.hidden], &self.out_norm, c.eps, &mut normed);
        let mut logits = vec![0f32; rows * c.vocab];
        let qcache = RefCell::new(QuantCache::default());
        self.output.forward(&Input::new(&normed, rows, c.hidden, &qcache), &mut logits, Activation::None, None);
        logits
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&i| i as usize >= self.config.vocab) {
            Some(bad) => {
                Err(ModelError::Input(format!("token id {bad} is past the vocabulary of {}", self.config.vocab)))
            }
            None => Ok(()),
        }
    }

    /// Embedding rows of `ids`, `ids.len() × hidden`.
    fn embed_ids(&self, ids: &[u32]) -> Vec<f32> {
        let h = self.config.hidden;
        let mut x = vec![0f32; ids.len() * h];
        for (row, &id) in x.chunks_exact_mut(h).zip(ids) {
            self.embed_row(id as usize, row);
        }
        x
    }

    /// One block on `x`: `seqs` sequences of `t` new positions each, from position `start`. With
    /// `cache` (one sequence), keys and values are appended to it and attention reads all of it;
    /// without, each sequence attends causally to itself only. `hook` sees each Linear's input; with
    /// `stop`, the block ends once the input of that Linear has been seen (`x` is then not the
    /// block's output).
    #[allow(clippy::too_many_arguments)]
    fn run_block(
        &self,
        b: &Block,
        x: &mut [f32],
        seqs: usize,
        t: usize,
        start: usize,
        cache: Option<(&mut Vec<f32>, &mut Vec<f32>)>,
        rope: &(Vec<f32>, Vec<f32>),
        qcache: &RefCell<QuantCache>,
        scratch: &mut Scratch,
        mut hook: Option<LinearHook>,
        stop: Option<&str>,
    ) {
        let stops_in = |g: usize| stop.is_some_and(|s| GROUPS[g].contains(&s));
        let c = &self.config;
        let (rows, h, hd) = (seqs * t, c.hidden, b.heads);
        let (hw, kvw, ffn) = (hd.q * hd.d, hd.kv * hd.d, b.up.out_features());
        let mut see = |name: &str, v: &[f32], cols: usize| {
            if let Some(hk) = hook.as_mut() {
                hk(name, v, rows, cols);
            }
        };
        // Buffers kept across blocks (and sized to this one): fresh large allocations would be
        // page-faulted in again by every block of a long prefill.
        let Scratch { normed, q, k, v, att, gate, up, residual } = scratch;
        let sizes = [rows * h, rows * hw, rows * kvw, rows * kvw, rows * hw, rows * ffn, rows * ffn, rows * h];
        for (buf, n) in [&mut *normed, &mut *q, &mut *k, &mut *v, &mut *att, &mut *gate, &mut *up, &mut *residual]
            .into_iter()
            .zip(sizes)
        {
            buf.resize(n, 0.0);
        }
        rms_norm(x, &b.attn_norm, c.eps, normed);
        for name in GROUPS[0] {
            see(name, normed, h);
        }
        if stops_in(0) {
            return;
        }
        let input = Input::new(normed, rows, h, qcache);
        forward_group(&[&b.q, &b.k, &b.v], &input, vec![&mut *q, &mut *k, &mut *v]);
        rotate(q, hd.q, hd.d, t, &rope.0, &rope.1);
        rotate(k, hd.kv, hd.d, t, &rope.0, &rope.1);
        match cache {
            Some((kc, vc)) => {
                kc.extend_from_slice(k);
                vc.extend_from_slice(v);
                causal_attention(q, kc, vc, start, t, hd, att);
            }
            None => {
                for s in 0..seqs {
                    let (qs, ks) = (s * t * hw..(s + 1) * t * hw, s * t * kvw..(s + 1) * t * kvw);
                    causal_attention(&q[qs.clone()], &k[ks.clone()], &v[ks], start, t, hd, &mut att[qs]);
                }
            }
        }
        see(GROUPS[1][0], att, hw);
        if stops_in(1) {
            return;
        }
        residual.copy_from_slice(x);
        b.o.forward(&Input::new(att, rows, hw, qcache), x, Activation::None, Some(residual));
        rms_norm(x, &b.ffn_norm, c.eps, normed);
        for name in GROUPS[2] {
            see(name, normed, h);
        }
        if stops_in(2) {
            return;
        }
        let input = Input::new(normed, rows, h, qcache);
        forward_group(&[&b.gate, &b.up], &input, vec![&mut *gate, &mut *up]);
        for (g, u) in gate.iter_mut().zip(up.iter()) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
        see(GROUPS[3][0], gate, ffn);
        if stops_in(3) {
            return;
        }
        residual.copy_from_slice(x);
        b.down.forward(&Input::new(gate, rows, ffn, qcache), x, Activation::None, Some(residual));
    }

    /// Block `l` on the padded sequences of `b` (positions from 0, no cache), for calibration.
    fn calibration_block(&self, l: usize, b: &Batch, x: &mut [f32], hook: Option<LinearHook>, stop: Option<&str>) {
        let c = &self.config;
        let rope = rope_tables(0, b.seq, c.head_dim, c.rope_base);
        let qcache = RefCell::new(QuantCache::default());
        let mut scratch = Scratch::default();
        self.run_block(&self.blocks[l], x, b.batch, b.seq, 0, None, &rope, &qcache, &mut scratch, hook, stop);
    }

    fn block_linear(&self, l: usize, name: &str) -> &Linear {
        let b = &self.blocks[l];
        match name {
            "attn_q" => &b.q,
            "attn_k" => &b.k,
            "attn_v" => &b.v,
            "attn_output" => &b.o,
            "ffn_gate" => &b.gate,
            "ffn_up" => &b.up,
            "ffn_down" => &b.down,
            _ => panic!("no Linear named {name} in a Llama block"),
        }
    }
}

/// Activation buffers of a block, reused from block to block.
#[derive(Default)]
struct Scratch {
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    residual: Vec<f32>,
}

/// The Linears of a block by shared input, in the order the block computes them (llama.cpp's names).
const GROUPS: &[&[&str]] = &[&["attn_q", "attn_k", "attn_v"], &["attn_output"], &["ffn_gate", "ffn_up"], &["ffn_down"]];

impl Architecture for Llama {
    fn family(&self) -> &'static str {
        "llama"
    }

    fn task(&self) -> Task {
        Task::LanguageModel
    }

    fn hidden(&self) -> usize {
        self.config.hidden
    }

    fn layers(&self) -> usize {
        self.blocks.len()
    }

    fn input_groups(&self) -> &'static [&'static [&'static str]] {
        GROUPS
    }

    fn linear_name(&self, l: usize, name: &str) -> String {
        let full = self.layout.name(Some(l), name);
        full.strip_suffix(".weight").unwrap_or(&full).to_string()
    }

    fn linear(&self, l: usize, name: &str) -> &Linear {
        self.block_linear(l, name)
    }

    fn linear_mut(&mut self, l: usize, name: &str) -> &mut Linear {
        let b = &mut self.blocks[l];
        match name {
            "attn_q" => &mut b.q,
            "attn_k" => &mut b.k,
            "attn_v" => &mut b.v,
            "attn_output" => &mut b.o,
            "ffn_gate" => &mut b.gate,
            "ffn_up" => &mut b.up,
            "ffn_down" => &mut b.down,
            _ => panic!("no Linear named {name} in a Llama block"),
        }
    }

    fn has_bias(&self) -> bool {
        false
    }

    fn input_scalable(&self, name: &str) -> bool {
        // attn_output reads the attention heads, whose values are shared by several query heads
        // (grouped-query attention): a per-channel scale there does not fold into attn_v's rows.
        matches!(name, "attn_q" | "ffn_gate" | "ffn_down")
    }

    fn fold_input_scale(&mut self, l: usize, name: &str, s: &[f32]) -> bool {
        let b = &mut self.blocks[l];
        let width = match name {
            "attn_q" | "ffn_gate" => self.config.hidden,
            "ffn_down" => b.down.in_features(),
            _ => return false,
        };
        if s.len() != width || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return false;
        }
        match name {
            "attn_q" => {
                b.attn_norm.iter_mut().zip(s).for_each(|(g, s)| *g /= s);
                for lin in [&mut b.q, &mut b.k, &mut b.v] {
                    lin.scale_columns(s);
                }
            }
            "ffn_gate" => {
                b.ffn_norm.iter_mut().zip(s).for_each(|(g, s)| *g /= s);
                for lin in [&mut b.gate, &mut b.up] {
                    lin.scale_columns(s);
                }
            }
            _ => {
                // down reads silu(gate) · up: linear in up's rows.
                let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
                b.up.scale_rows(&inv);
                b.down.scale_columns(s);
            }
        }
        true
    }

    fn units(&self, l: usize) -> Vec<Units> {
        let b = &self.blocks[l];
        let group = b.heads.q / b.heads.kv * b.heads.d;
        vec![
            Units {
                kind: UnitKind::Head,
                count: b.heads.kv,
                reader: "attn_output",
                width: group,
                writers: vec![("attn_q", group), ("attn_k", b.heads.d), ("attn_v", b.heads.d)],
            },
            Units {
                kind: UnitKind::Neuron,
                count: b.up.out_features(),
                reader: "ffn_down",
                width: 1,
                writers: vec![("ffn_gate", 1), ("ffn_up", 1)],
            },
        ]
    }

    fn set_unit_count(&mut self, l: usize, kind: UnitKind, count: usize) -> Result<()> {
        let b = &mut self.blocks[l];
        let group = b.heads.q / b.heads.kv;
        let ok = match kind {
            UnitKind::Head => {
                let fits = count > 0
                    && b.q.out_features() == count * group * b.heads.d
                    && b.k.out_features() == count * b.heads.d
                    && b.v.out_features() == count * b.heads.d
                    && b.o.in_features() == count * group * b.heads.d;
                if fits {
                    b.heads = Heads { q: count * group, kv: count, d: b.heads.d };
                }
                fits
            }
            UnitKind::Neuron => {
                count > 0
                    && b.gate.out_features() == count
                    && b.up.out_features() == count
                    && b.down.in_features() == count
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ModelError::Input(format!("block {l}: the Linears' shapes do not hold {count} units of {kind:?}")))
        }
    }

    fn check_batch(&self, b: &Batch) -> Result<()> {
        if b.ids.len() != b.tokens() || b.mask.len() != b.tokens() {
            return Err(ModelError::Input("batch arrays do not hold batch × seq entries".into()));
        }
        self.check_ids(&b.ids)
    }

    fn embed_batch(&self, b: &Batch) -> Vec<f32> {
        self.embed_ids(&b.ids)
    }

    fn run_layer(&self, l: usize, b: &Batch, hidden: &mut [f32], hook: Option<LinearHook>) {
        let rows = b.tokens() * self.config.hidden;
        self.calibration_block(l, b, &mut hidden[..rows], hook, None);
    }

    fn layer_input_of(&self, l: usize, b: &Batch, hidden: &[f32], name: &str, take: LinearHook) {
        let mut x = hidden[..b.tokens() * self.config.hidden].to_vec();
        let mut only = |n: &str, v: &[f32], r: usize, cols: usize| {
            if n == name {
                take(n, v, r, cols);
            }
        };
        self.calibration_block(l, b, &mut x, Some(&mut only), Some(name));
    }

    fn export_weight(&self, l: usize, name: &str) -> Vec<f32> {
        let lin = self.block_linear(l, name);
        let w = lin.weight.to_dense();
        let heads = &self.blocks[l].heads;
        match (self.layout, name) {
            (Layout::HuggingFace, "attn_q") => rope_rows_to_halves(&w, heads.q, lin.in_features()),
            (Layout::HuggingFace, "attn_k") => rope_rows_to_halves(&w, heads.kv, lin.in_features()),
            _ => w,
        }
    }

    fn embedding_tables(&self) -> Vec<(String, usize, usize, Vec<f32>)> {
        let name = self.layout.name(None, "token_embd");
        let name = name.strip_suffix(".weight").unwrap_or(&name).to_string();
        vec![(name, self.config.vocab, self.config.hidden, self.embed.to_dense())]
    }

    fn other_parameters(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let h = self.config.hidden;
        let mut v = Vec::new();
        for (l, b) in self.blocks.iter().enumerate() {
            v.push((self.layout.name(Some(l), "attn_norm"), vec![h], b.attn_norm.clone()));
            v.push((self.layout.name(Some(l), "ffn_norm"), vec![h], b.ffn_norm.clone()));
        }
        v.push((self.layout.name(None, "output_norm"), vec![h], self.out_norm.clone()));
        if !self.tied {
            v.push((self.layout.name(None, "output"), vec![self.config.vocab, h], self.output.weight.to_dense()));
        }
        v
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

/// Rotates adjacent pairs of every head of every row (llama.cpp's order of the query/key rows); rows
/// are sequences of `t` positions, row `r` at table position `r % t`.
fn rotate(x: &mut [f32], heads: usize, d: usize, t: usize, cos: &[f32], sin: &[f32]) {
    let half = d / 2;
    for (r, row) in x.chunks_exact_mut(heads * d).enumerate() {
        let p = r % t;
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
fn few_query_attention(q: &[f32], k: &[f32], v: &[f32], start: usize, t: usize, c: Heads, out: &mut [f32]) {
    let (d, group) = (c.d, c.q / c.kv);
    let (hw, kvw) = (c.q * d, c.kv * d);
    let scale = 1.0 / (d as f32).sqrt();
    let n = start + t;
    let table = pare_kernels::dispatch::table();
    // One task per (position, head), in the order of the output's rows of `d` values.
    let tasks = t * c.q;
    let shared = pare_kernels::par::SharedRows::new(&mut out[..t * hw], tasks, d);
    pare_kernels::par::for_each_row_block(tasks, 1, true, |block| {
        let outs = block.rows_mut(&shared);
        let mut scores = vec![0f32; n];
        for (task, o) in block.range().zip(outs.chunks_exact_mut(d)) {
            let (p, head) = (task / c.q, task % c.q);
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
fn causal_attention(q: &[f32], k: &[f32], v: &[f32], start: usize, t: usize, c: Heads, out: &mut [f32]) {
    if t <= FEW_QUERIES {
        return few_query_attention(q, k, v, start, t, c, out);
    }
    let (d, group) = (c.d, c.q / c.kv);
    let (hw, kvw) = (c.q * d, c.kv * d);
    let n = start + t;
    let scale = 1.0 / (d as f32).sqrt();
    let table = pare_kernels::dispatch::table();
    let mut scores = vec![0f32; t * n];
    let mut kh = vec![0f32; n * d];
    let mut vh = vec![0f32; n * d];
    let mut qh = vec![0f32; t * d];
    let mut oh = vec![0f32; t * d];
    for head in 0..c.q {
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
    for (b, blk) in data.chunks_exact(ty.block_bytes()).enumerate() {
        for &i in ty.f16_offsets() {
            // f16 exponent all ones: infinity or NaN.
            if u16::from_le_bytes([blk[i], blk[i + 1]]) & 0x7c00 == 0x7c00 {
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
