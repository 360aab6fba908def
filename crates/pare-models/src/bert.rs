//! BERT encoder (Devlin et al. 2019) in the Hugging Face `BertModel` layout: embeddings + LayerNorm,
//! then post-LN transformer layers (self-attention, residual, LayerNorm, GELU feed-forward, residual,
//! LayerNorm). Output: the last hidden state of every token.

use crate::arch::{Architecture, Task, UnitKind, Units};
pub use crate::arch::{Batch, LinearHook};
use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};
use crate::weight::{Embedding, Input, Linear, QuantCache, forward_group};
use pare_formats::quant_config::{CompressionConfig, QuantizationConfig};
use pare_formats::{BertConfig, TensorFile};
use pare_kernels::QuantRows;
use pare_kernels::norm::layer_norm_with;
use pare_kernels::par::{SharedRows, for_each_row_block};
use pare_kernels::{Activation, AttentionShape, attention_f32, layer_norm};
use std::cell::RefCell;

/// LayerNorm parameters.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale.
    pub gamma: Vec<f32>,
    /// Shift.
    pub beta: Vec<f32>,
    /// Epsilon.
    pub eps: f32,
}

impl LayerNorm {
    /// Normalises every row of `x` in place, on the kernel threads.
    pub fn apply(&self, x: &mut [f32]) {
        layer_norm(x, &self.gamma, &self.beta, self.eps);
    }

    /// Normalises every row of `x` in place, on the calling thread.
    pub fn apply_rows(&self, x: &mut [f32]) {
        layer_norm_with(pare_kernels::dispatch::table(), x, &self.gamma, &self.beta, self.eps);
    }
}

/// Per-thread buffers of the row-parallel part of a layer.
#[derive(Default)]
struct RowScratch {
    tmp: Vec<f32>,
    ffn: Vec<f32>,
    quant: QuantRows,
}

thread_local! {
    static ROW_SCRATCH: RefCell<RowScratch> = RefCell::new(RowScratch::default());
}

/// Rows per block of the row-parallel part: the row tile of the integer kernels.
const ROW_ALIGN: usize = 8;

/// Word, position and token-type embeddings, then LayerNorm.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// `[vocab][hidden]`.
    pub word: Embedding,
    /// `[max_positions][hidden]`.
    pub position: Embedding,
    /// `[type_vocab][hidden]`.
    pub token_type: Embedding,
    /// LayerNorm after the sum.
    pub norm: LayerNorm,
}

/// Checkpoint names of the embedding tables.
pub const EMBEDDING_NAMES: [&str; 3] =
    ["embeddings.word_embeddings", "embeddings.position_embeddings", "embeddings.token_type_embeddings"];

/// One transformer layer.
#[derive(Clone, Debug)]
pub struct BertLayer {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Attention output projection.
    pub attn_out: Linear,
    /// LayerNorm after attention + residual.
    pub attn_norm: LayerNorm,
    /// Feed-forward up projection (GELU after it).
    pub ffn_up: Linear,
    /// Feed-forward down projection.
    pub ffn_down: Linear,
    /// LayerNorm after feed-forward + residual.
    pub ffn_norm: LayerNorm,
    /// Attention heads.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
}

/// Buffers of one forward pass, reused across calls to avoid page faults on every batch.
#[derive(Debug, Default)]
pub struct Workspace {
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    ctx: Vec<f32>,
    quant: RefCell<QuantCache>,
}

impl Workspace {
    /// The hidden-state buffer: the input of the next layer and, after [`Bert::forward`], its output.
    pub fn hidden_mut(&mut self) -> &mut [f32] {
        &mut self.x
    }
}

fn resize(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// A BERT encoder.
#[derive(Clone, Debug)]
pub struct Bert {
    /// Configuration.
    pub config: BertConfig,
    /// Embeddings.
    pub embeddings: Embeddings,
    /// Transformer layers.
    pub layers: Vec<BertLayer>,
}

/// LayerNorm `name` (`.weight` and `.bias`, `h` values each).
fn layer_norm_of(r: &Checkpoint, name: &str, h: usize, eps: f32) -> Result<LayerNorm> {
    Ok(LayerNorm { gamma: r.f32(&format!("{name}.weight"), &[h])?, beta: r.f32(&format!("{name}.bias"), &[h])?, eps })
}

impl Bert {
    /// Loads a checkpoint: dense float, or compressed as `compression` (from config.json) describes.
    /// Every tensor is checked for presence, shape, dtype and finiteness.
    pub fn load(file: &TensorFile, config: &BertConfig, compression: &CompressionConfig) -> Result<Self> {
        let prefix = if !file.contains("embeddings.word_embeddings.weight")
            && file.contains("bert.embeddings.word_embeddings.weight")
        {
            "bert."
        } else {
            ""
        };
        let r = Checkpoint { file, prefix, compression };
        if let Some(t) = r.quant().map(QuantizationConfig::unsupported_targets).and_then(|t| t.into_iter().next()) {
            return Err(
                r.error(format!("quantization_config target {t:?}: regular-expression targets are not supported"))
            );
        }
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        let embeddings = Embeddings {
            word: r.embedding(EMBEDDING_NAMES[0], config.vocab_size, h)?,
            position: r.embedding(EMBEDDING_NAMES[1], config.max_position_embeddings, h)?,
            token_type: r.embedding(EMBEDDING_NAMES[2], config.type_vocab_size, h)?,
            norm: layer_norm_of(&r, "embeddings.LayerNorm", h, eps)?,
        };
        let shapes = &compression.pare.layers;
        if !shapes.is_empty() && shapes.len() != config.num_hidden_layers {
            return Err(r.error(format!(
                "{} records {} layer shapes for {} layers",
                pare_formats::quant_config::PARE_EXTENSION_KEY,
                shapes.len(),
                config.num_hidden_layers
            )));
        }
        let dh = config.head_dim();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let (heads, inter) =
                shapes.get(l).map_or((config.num_attention_heads, i), |s| (s.heads, s.intermediate_size));
            if heads == 0 || heads > config.num_attention_heads || inter == 0 || inter > i {
                return Err(r.error(format!("layer {l}: {heads} heads and {inter} neurons do not fit the config")));
            }
            let w = heads * dh;
            layers.push(BertLayer {
                query: r.linear(&format!("{p}.attention.self.query"), w, h)?,
                key: r.linear(&format!("{p}.attention.self.key"), w, h)?,
                value: r.linear(&format!("{p}.attention.self.value"), w, h)?,
                attn_out: r.linear(&format!("{p}.attention.output.dense"), h, w)?,
                attn_norm: layer_norm_of(&r, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                ffn_up: r.linear(&format!("{p}.intermediate.dense"), inter, h)?,
                ffn_down: r.linear(&format!("{p}.output.dense"), h, inter)?,
                ffn_norm: layer_norm_of(&r, &format!("{p}.output.LayerNorm"), h, eps)?,
                heads,
                head_dim: dh,
            });
        }
        Ok(Bert { config: config.clone(), embeddings, layers })
    }

    /// Every Linear layer with its checkpoint name (without the `.weight` suffix), in execution order.
    pub fn linears(&self) -> Vec<(String, &Linear)> {
        let mut v = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (name, lin) in layer.named_linears() {
                v.push((format!("encoder.layer.{l}.{name}"), lin));
            }
        }
        v
    }

    /// Mutable access to every Linear layer with its checkpoint name.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut v = Vec::new();
        for (l, layer) in self.layers.iter_mut().enumerate() {
            for (name, lin) in layer.named_linears_mut() {
                v.push((format!("encoder.layer.{l}.{name}"), lin));
            }
        }
        v
    }

    /// Every LayerNorm with its checkpoint name (without `.weight` / `.bias`), in execution order.
    pub fn layer_norms(&self) -> Vec<(String, &LayerNorm)> {
        let mut v = vec![("embeddings.LayerNorm".to_string(), &self.embeddings.norm)];
        for (l, layer) in self.layers.iter().enumerate() {
            v.push((format!("encoder.layer.{l}.attention.output.LayerNorm"), &layer.attn_norm));
            v.push((format!("encoder.layer.{l}.output.LayerNorm"), &layer.ffn_norm));
        }
        v
    }

    /// Every parameter as dense f32 (dequantized, densified) under its checkpoint name, with its shape:
    /// a plain float checkpoint of the model as pare runs it.
    pub fn export_f32(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let h = self.hidden();
        let mut out = Vec::new();
        let e = &self.embeddings;
        for (name, table) in EMBEDDING_NAMES.iter().zip([&e.word, &e.position, &e.token_type]) {
            out.push((format!("{name}.weight"), vec![table.rows(), h], table.to_dense()));
        }
        for (name, lin) in self.linears() {
            out.push((format!("{name}.weight"), vec![lin.out_features(), lin.in_features()], lin.weight.to_dense()));
            out.push((format!("{name}.bias"), vec![lin.out_features()], lin.bias.clone()));
        }
        for (name, n) in self.layer_norms() {
            out.push((format!("{name}.weight"), vec![n.gamma.len()], n.gamma.clone()));
            out.push((format!("{name}.bias"), vec![n.beta.len()], n.beta.clone()));
        }
        out
    }

    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.config.hidden_size
    }

    /// Checks token ids, type ids and length against the tables.
    pub fn check_batch(&self, b: &Batch) -> Result<()> {
        let c = &self.config;
        if b.ids.len() != b.tokens() || b.type_ids.len() != b.tokens() || b.mask.len() != b.tokens() {
            return Err(ModelError::Input("batch arrays do not hold batch × seq entries".into()));
        }
        if b.seq > c.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens is longer than the model's {} positions",
                b.seq, c.max_position_embeddings
            )));
        }
        if let Some(&id) = b.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(ModelError::Input(format!("token id {id} is outside the vocabulary of {}", c.vocab_size)));
        }
        if let Some(&t) = b.type_ids.iter().find(|&&t| t as usize >= c.type_vocab_size) {
            return Err(ModelError::Input(format!("token type {t} is outside the {} types", c.type_vocab_size)));
        }
        Ok(())
    }

    /// Sizes `ws` for `b` and copies a layer's input `hidden` into it; returns the values copied.
    fn stage(&self, b: &Batch, hidden: &[f32], ws: &mut Workspace) -> usize {
        let n = b.tokens() * self.hidden();
        for v in [&mut ws.x, &mut ws.q, &mut ws.k, &mut ws.v, &mut ws.ctx] {
            resize(v, n);
        }
        ws.x[..n].copy_from_slice(&hidden[..n]);
        n
    }

    /// Sum of the three embeddings for every token, then LayerNorm, into `x[tokens][hidden]`.
    pub fn embed(&self, b: &Batch, x: &mut [f32]) {
        let h = self.hidden();
        let e = &self.embeddings;
        for (t, row) in x[..b.tokens() * h].chunks_exact_mut(h).enumerate() {
            // (word + type) + position, the order of Hugging Face's BertEmbeddings.
            row.fill(0.0);
            e.word.add_row(b.ids[t] as usize, row);
            e.token_type.add_row(b.type_ids[t] as usize, row);
            e.position.add_row(t % b.seq, row);
        }
        e.norm.apply(&mut x[..b.tokens() * h]);
    }

    /// The last hidden state, `[batch · seq][hidden]`, inside `ws`. Runs on the kernel threads.
    pub fn forward<'w>(&self, b: &Batch, ws: &'w mut Workspace) -> Result<&'w [f32]> {
        self.forward_observed(b, ws, None)
    }

    /// [`Bert::forward`], calling `hook` with the input of every Linear layer.
    pub fn forward_observed<'w>(
        &self,
        b: &Batch,
        ws: &'w mut Workspace,
        mut hook: Option<LinearHook>,
    ) -> Result<&'w [f32]> {
        self.check_batch(b)?;
        let (t, h) = (b.tokens(), self.hidden());
        for v in [&mut ws.x, &mut ws.q, &mut ws.k, &mut ws.v, &mut ws.ctx] {
            resize(v, t * h);
        }
        self.embed(b, &mut ws.x);
        for (l, layer) in self.layers.iter().enumerate() {
            match hook.as_mut() {
                Some(h) => {
                    layer.forward_observed(b, ws, &mut |name, x, r, c| h(&format!("encoder.layer.{l}.{name}"), x, r, c))
                }
                None => layer.forward(b, ws),
            }
        }
        Ok(&ws.x[..t * h])
    }
}

/// A layer's Linears by shared input, in execution order.
const GROUPS: &[&[&str]] = &[
    &["attention.self.query", "attention.self.key", "attention.self.value"],
    &["attention.output.dense"],
    &["intermediate.dense"],
    &["output.dense"],
];

impl Architecture for Bert {
    fn family(&self) -> &'static str {
        "bert"
    }

    fn task(&self) -> Task {
        Task::SentenceEmbedding
    }

    fn hidden(&self) -> usize {
        self.config.hidden_size
    }

    fn layers(&self) -> usize {
        self.layers.len()
    }

    fn input_groups(&self) -> &'static [&'static [&'static str]] {
        GROUPS
    }

    fn linear_name(&self, l: usize, name: &str) -> String {
        format!("encoder.layer.{l}.{name}")
    }

    fn linear(&self, l: usize, name: &str) -> &Linear {
        match self.layers[l].named_linears().into_iter().find(|(n, _)| *n == name) {
            Some((_, lin)) => lin,
            None => panic!("no Linear named {name} in a BERT layer"),
        }
    }

    fn linear_mut(&mut self, l: usize, name: &str) -> &mut Linear {
        self.layers[l].linear_mut(name)
    }

    fn has_bias(&self) -> bool {
        true
    }

    fn units(&self, l: usize) -> Vec<Units> {
        let layer = &self.layers[l];
        let dh = layer.head_dim;
        vec![
            Units {
                kind: UnitKind::Head,
                count: layer.heads,
                reader: LINEAR_NAMES[3],
                width: dh,
                writers: vec![(LINEAR_NAMES[0], dh), (LINEAR_NAMES[1], dh), (LINEAR_NAMES[2], dh)],
            },
            Units {
                kind: UnitKind::Neuron,
                count: layer.ffn_up.out_features(),
                reader: LINEAR_NAMES[5],
                width: 1,
                writers: vec![(LINEAR_NAMES[4], 1)],
            },
        ]
    }

    fn set_unit_count(&mut self, l: usize, kind: UnitKind, count: usize) -> Result<()> {
        let layer = &mut self.layers[l];
        let ok = match kind {
            UnitKind::Head => {
                let w = count * layer.head_dim;
                let fits = count > 0
                    && [&layer.query, &layer.key, &layer.value].iter().all(|q| q.out_features() == w)
                    && layer.attn_out.in_features() == w;
                if fits {
                    layer.heads = count;
                }
                fits
            }
            UnitKind::Neuron => {
                count > 0 && layer.ffn_up.out_features() == count && layer.ffn_down.in_features() == count
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ModelError::Input(format!("layer {l}: the Linears' shapes do not hold {count} units of {kind:?}")))
        }
    }

    fn check_batch(&self, b: &Batch) -> Result<()> {
        Bert::check_batch(self, b)
    }

    fn embed_batch(&self, b: &Batch) -> Vec<f32> {
        let mut x = vec![0f32; b.tokens() * self.hidden()];
        self.embed(b, &mut x);
        x
    }

    fn run_layer(&self, l: usize, b: &Batch, hidden: &mut [f32], hook: Option<LinearHook>) {
        let mut ws = Workspace::default();
        let n = self.stage(b, hidden, &mut ws);
        self.layers[l].run(b, &mut ws, hook);
        hidden[..n].copy_from_slice(&ws.x[..n]);
    }

    fn layer_input_of(&self, l: usize, b: &Batch, hidden: &[f32], name: &str, take: LinearHook) {
        let mut ws = Workspace::default();
        self.stage(b, hidden, &mut ws);
        self.layers[l].input_of(b, &mut ws, name, take);
    }

    fn embedding_tables(&self) -> Vec<(String, usize, usize, Vec<f32>)> {
        let e = &self.embeddings;
        EMBEDDING_NAMES
            .iter()
            .zip([&e.word, &e.position, &e.token_type])
            .map(|(name, t)| (name.to_string(), t.rows(), self.hidden(), t.to_dense()))
            .collect()
    }

    fn unused_modules(&self) -> &'static [&'static str] {
        // BertModel's pooler (dense + tanh over [CLS]): sentence embeddings pool the last hidden state
        // as the sentence-transformers files say.
        &["pooler"]
    }

    fn other_parameters(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut v = Vec::new();
        for (name, n) in self.layer_norms() {
            v.push((format!("{name}.weight"), vec![n.gamma.len()], n.gamma.clone()));
            v.push((format!("{name}.bias"), vec![n.beta.len()], n.beta.clone()));
        }
        v
    }
}

/// Checkpoint names of a layer's Linears, in execution order.
pub const LINEAR_NAMES: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

impl BertLayer {
    /// The Linear of a checkpoint name relative to the layer (one of [`LINEAR_NAMES`]).
    pub fn linear_mut(&mut self, name: &str) -> &mut Linear {
        match self.named_linears_mut().into_iter().find(|(n, _)| *n == name) {
            Some((_, lin)) => lin,
            None => panic!("no Linear named {name} in a BERT layer"),
        }
    }

    /// [`BertLayer::named_linears`], mutable.
    pub fn named_linears_mut(&mut self) -> [(&'static str, &mut Linear); 6] {
        [
            (LINEAR_NAMES[0], &mut self.query),
            (LINEAR_NAMES[1], &mut self.key),
            (LINEAR_NAMES[2], &mut self.value),
            (LINEAR_NAMES[3], &mut self.attn_out),
            (LINEAR_NAMES[4], &mut self.ffn_up),
            (LINEAR_NAMES[5], &mut self.ffn_down),
        ]
    }

    /// The layer's Linears with their checkpoint names (relative to the layer).
    pub fn named_linears(&self) -> [(&'static str, &Linear); 6] {
        [
            (LINEAR_NAMES[0], &self.query),
            (LINEAR_NAMES[1], &self.key),
            (LINEAR_NAMES[2], &self.value),
            (LINEAR_NAMES[3], &self.attn_out),
            (LINEAR_NAMES[4], &self.ffn_up),
            (LINEAR_NAMES[5], &self.ffn_down),
        ]
    }

    /// One layer on `ws.x` (in place), using the other buffers of `ws` as scratch.
    pub fn forward(&self, b: &Batch, ws: &mut Workspace) {
        self.run(b, ws, None);
    }

    /// [`BertLayer::forward`], calling `hook` with the input of each Linear (names relative to the layer).
    pub fn forward_observed(&self, b: &Batch, ws: &mut Workspace, hook: LinearHook) {
        self.run(b, ws, Some(hook));
    }

    /// The layer in three parallel sections: query/key/value split by columns (each thread owns whole
    /// heads), attention split by heads, then everything after attention split by rows, each thread
    /// carrying its rows through output projection, LayerNorm, feed-forward and LayerNorm without
    /// waiting for the other (every step there is row-local).
    fn run(&self, b: &Batch, ws: &mut Workspace, mut hook: Option<LinearHook>) {
        let t = b.tokens();
        let h = self.query.in_features();
        let width = self.heads * self.head_dim;
        if let Some(hk) = hook.as_mut() {
            for n in &LINEAR_NAMES[..3] {
                hk(n, &ws.x[..t * h], t, h);
            }
        }
        self.attend(b, ws);

        let ctx = &ws.ctx[..t * width];
        match hook {
            Some(hk) => self.observed_rest(ctx, &mut ws.x[..t * h], t, &ws.quant, hk, None),
            None => {
                let xs = SharedRows::new(&mut ws.x, t, h);
                for_each_row_block(t, ROW_ALIGN, true, |blk| {
                    let r = blk.range();
                    let ctx = &ctx[r.start * width..r.end * width];
                    self.rows_section(ctx, blk.rows_mut(&xs), r.len());
                });
            }
        }
    }

    /// Everything after attention on all `t` rows at once, each Linear on the kernel threads, calling
    /// `hook` with each Linear's input; stops before computing the Linear named `stop`, if given
    /// (then `x` is left as it was).
    fn observed_rest(
        &self,
        ctx: &[f32],
        x: &mut [f32],
        t: usize,
        quant: &RefCell<QuantCache>,
        hook: LinearHook,
        stop: Option<&str>,
    ) {
        let h = self.query.in_features();
        let width = self.heads * self.head_dim;
        let inter = self.ffn_up.out_features();
        hook(LINEAR_NAMES[3], ctx, t, width);
        if stop == Some(LINEAR_NAMES[3]) {
            return;
        }
        let mut tmp = vec![0f32; t * h];
        self.attn_out.forward(&Input::new(ctx, t, width, quant), &mut tmp, Activation::None, Some(x));
        self.attn_norm.apply(&mut tmp);
        hook(LINEAR_NAMES[4], &tmp, t, h);
        if stop == Some(LINEAR_NAMES[4]) {
            return;
        }
        let mut ffn = vec![0f32; t * inter];
        self.ffn_up.forward(&Input::new(&tmp, t, h, quant), &mut ffn, Activation::Gelu, None);
        hook(LINEAR_NAMES[5], &ffn, t, inter);
        if stop == Some(LINEAR_NAMES[5]) {
            return;
        }
        self.ffn_down.forward(&Input::new(&ffn, t, inter, quant), x, Activation::None, Some(&tmp));
        self.ffn_norm.apply(x);
    }

    /// Runs the layer on `ws.x` only as far as the input of the Linear `name` (relative to the
    /// layer) and passes that input, `tokens × in_features`, to `take`. `ws.x` is left unchanged.
    pub fn input_of(&self, b: &Batch, ws: &mut Workspace, name: &str, take: LinearHook) {
        let t = b.tokens();
        let h = self.query.in_features();
        if LINEAR_NAMES[..3].contains(&name) {
            take(name, &ws.x[..t * h], t, h);
            return;
        }
        self.attend(b, ws);
        let width = self.heads * self.head_dim;
        let mut only = |n: &str, v: &[f32], r: usize, c: usize| {
            if n == name {
                take(n, v, r, c);
            }
        };
        // Stopping at `name` leaves `ws.x` untouched.
        self.observed_rest(&ws.ctx[..t * width], &mut ws.x[..t * h], t, &ws.quant, &mut only, Some(name));
    }

    /// Query, key and value of `ws.x` (one parallel section, split by columns so each thread owns whole
    /// heads), then attention into `ws.ctx`.
    fn attend(&self, b: &Batch, ws: &mut Workspace) {
        let (t, h) = (b.tokens(), self.query.in_features());
        let x = Input::new(&ws.x, t, h, &ws.quant);
        forward_group(&[&self.query, &self.key, &self.value], &x, vec![&mut ws.q, &mut ws.k, &mut ws.v]);
        let width = self.heads * self.head_dim;
        let shape = AttentionShape { batch: b.batch, seq: b.seq, heads: self.heads, head_dim: self.head_dim };
        let all_ones = b.mask.iter().all(|&m| m != 0);
        let mask = if all_ones { None } else { Some(&b.mask[..]) };
        attention_f32(&ws.q, &ws.k, &ws.v, width, mask, shape, &mut ws.ctx, width);
    }

    /// Everything after attention for `rows` rows: `x` (the layer input, becoming its output) and
    /// `ctx` (the attention output) hold those rows only.
    fn rows_section(&self, ctx: &[f32], x: &mut [f32], rows: usize) {
        let h = self.query.in_features();
        let inter = self.ffn_up.out_features();
        ROW_SCRATCH.with_borrow_mut(|sc| {
            let RowScratch { tmp, ffn, quant } = sc;
            tmp.resize(rows * h, 0.0);
            ffn.resize(rows * inter, 0.0);
            self.attn_out.forward_rows(ctx, rows, tmp, Activation::None, Some(x), quant);
            self.attn_norm.apply_rows(tmp);
            self.ffn_up.forward_rows(tmp, rows, ffn, Activation::Gelu, None, quant);
            self.ffn_down.forward_rows(ffn, rows, x, Activation::None, Some(tmp), quant);
            self.ffn_norm.apply_rows(x);
        });
    }
}
