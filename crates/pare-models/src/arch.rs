//! What compression needs of a model, whatever its architecture: its named Linears and which of them
//! read the same input, per-layer calibration hooks (embed, run one layer, capture one Linear's
//! input), its structural units (attention heads, feed-forward neurons) and how to remove some, the
//! parameters a writer stores, and the task it serves (which fixes the quality metric and the
//! throughput unit). BERT and Llama implement [`Architecture`]; the compressors, calibration and
//! writers work through it and never name an architecture.

use crate::error::Result;
use crate::weight::Linear;

/// Observes the input of a Linear during a forward pass (calibration): called with the Linear's name
/// (relative to its layer, one of [`Architecture::input_groups`]) and its input, `rows × cols`
/// row-major.
pub type LinearHook<'h> = &'h mut dyn FnMut(&str, &[f32], usize, usize);

/// What a model is used for: fixes how its quality and its speed are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Sentence embeddings (an encoder with pooling).
    SentenceEmbedding,
    /// Next-token prediction (a causal decoder).
    LanguageModel,
}

impl Task {
    /// Short identifier in reports.
    pub fn id(self) -> &'static str {
        match self {
            Task::SentenceEmbedding => "sentence-embedding",
            Task::LanguageModel => "language-model",
        }
    }

    /// How a variant is compared with its float baseline.
    pub fn fidelity_metric(self) -> &'static str {
        match self {
            Task::SentenceEmbedding => "cosine similarity of embeddings",
            Task::LanguageModel => "KL divergence of next-token distributions",
        }
    }

    /// The quality measured on the task's own data.
    pub fn quality_metric(self) -> &'static str {
        match self {
            Task::SentenceEmbedding => "Spearman correlation / retrieval accuracy",
            Task::LanguageModel => "perplexity",
        }
    }

    /// Unit of throughput.
    pub fn throughput_unit(self) -> &'static str {
        match self {
            Task::SentenceEmbedding => "sentences/s",
            Task::LanguageModel => "tokens/s",
        }
    }
}

/// A batch of token sequences, padded to a common length.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Sequences.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Token ids, `batch · seq`.
    pub ids: Vec<u32>,
    /// Token type ids, `batch · seq`.
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding, `batch · seq`.
    pub mask: Vec<u8>,
}

impl Batch {
    /// Pads `seqs` on the right to the longest one (mask 0 on padding, token id `pad_id`).
    pub fn pad(seqs: &[Vec<u32>], pad_id: u32) -> Self {
        let seq = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut b =
            Batch { batch: seqs.len(), seq, ids: Vec::new(), type_ids: vec![0; seqs.len() * seq], mask: Vec::new() };
        for s in seqs {
            b.ids.extend(s.iter().copied().chain(std::iter::repeat_n(pad_id, seq - s.len())));
            b.mask.extend(std::iter::repeat_n(1u8, s.len()).chain(std::iter::repeat_n(0, seq - s.len())));
        }
        b
    }

    /// `batch` copies of one sequence, mask all ones.
    pub fn repeat(ids: &[u32], batch: usize) -> Self {
        let seq = ids.len();
        Batch { batch, seq, ids: ids.repeat(batch), type_ids: vec![0; batch * seq], mask: vec![1; batch * seq] }
    }

    /// Tokens (rows), padding included.
    pub fn tokens(&self) -> usize {
        self.batch * self.seq
    }
}

/// Kinds of structural unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// Attention heads (with grouped-query attention: one key/value head and the query heads that
    /// read it).
    Head,
    /// Feed-forward neurons.
    Neuron,
}

/// The structural units of one kind in one layer: unit `u` is input columns `u·width .. (u+1)·width`
/// of the Linear `reader` and rows `u·w .. (u+1)·w` of each `(writer, w)`. Removing a unit removes
/// those columns and rows together, and the layer computes the same function of the units left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Units {
    /// Heads or neurons.
    pub kind: UnitKind,
    /// Units in the layer.
    pub count: usize,
    /// The Linear reading the units' outputs (relative name).
    pub reader: &'static str,
    /// Input columns of `reader` per unit.
    pub width: usize,
    /// The Linears producing the units, with their output rows per unit.
    pub writers: Vec<(&'static str, usize)>,
}

/// A model as compression sees it. Layer-relative Linear names are the ones of
/// [`Architecture::input_groups`]; checkpoint names come from [`Architecture::linear_name`].
pub trait Architecture: Send + Sync {
    /// Architecture family (`bert`, `llama`).
    fn family(&self) -> &'static str;

    /// The task it serves.
    fn task(&self) -> Task;

    /// Hidden width (the rows of the state passed between layers).
    fn hidden(&self) -> usize;

    /// Transformer layers.
    fn layers(&self) -> usize;

    /// The Linears of every layer, grouped by shared input, groups in the order the layer computes
    /// them; names relative to the layer.
    fn input_groups(&self) -> &'static [&'static [&'static str]];

    /// Checkpoint name of Linear `name` of layer `l`, without `.weight`.
    fn linear_name(&self, l: usize, name: &str) -> String;

    /// Linear `name` of layer `l`. Panics on a name not in [`Architecture::input_groups`].
    fn linear(&self, l: usize, name: &str) -> &Linear;

    /// [`Architecture::linear`], mutable.
    fn linear_mut(&mut self, l: usize, name: &str) -> &mut Linear;

    /// Whether its Linears have a bias stored with the checkpoint: compression may then move an
    /// output shift into it. Without one, biases stay zero.
    fn has_bias(&self) -> bool;

    /// Structural units of layer `l`.
    fn units(&self, l: usize) -> Vec<Units>;

    /// Records that layer `l` now has `count` units of `kind`, after the caller removed the others'
    /// rows and columns from the writers and the reader.
    fn set_unit_count(&mut self, l: usize, kind: UnitKind, count: usize) -> Result<()>;

    /// Checks `b` against the model (vocabulary, positions).
    fn check_batch(&self, b: &Batch) -> Result<()>;

    /// The state entering layer 0 for `b`: `tokens × hidden`.
    fn embed_batch(&self, b: &Batch) -> Vec<f32>;

    /// Runs layer `l` on `hidden` (its input, replaced by its output), calling `hook` with the input of
    /// each Linear. Sequences of `b` do not see each other; padding is never attended to by real
    /// tokens.
    fn run_layer(&self, l: usize, b: &Batch, hidden: &mut [f32], hook: Option<LinearHook>);

    /// The input of Linear `name` of layer `l` when the layer receives `hidden`, passed to `take`.
    /// Implementations compute only what is needed when they can.
    fn layer_input_of(&self, l: usize, b: &Batch, hidden: &[f32], name: &str, take: LinearHook) {
        let mut x = hidden.to_vec();
        self.run_layer(
            l,
            b,
            &mut x,
            Some(&mut |n: &str, v: &[f32], r: usize, c: usize| {
                if n == name {
                    take(n, v, r, c)
                }
            }),
        );
    }

    /// Weight of Linear `name` of layer `l` as dense f32, rows in the checkpoint's order.
    fn export_weight(&self, l: usize, name: &str) -> Vec<f32> {
        self.linear(l, name).weight.to_dense()
    }

    /// Every Linear as `(layer, name relative to the layer)`, in execution order.
    fn linear_ids(&self) -> Vec<(usize, &'static str)> {
        let groups = self.input_groups();
        (0..self.layers()).flat_map(|l| groups.iter().flat_map(|g| g.iter()).map(move |n| (l, *n))).collect()
    }

    /// Every Linear with its checkpoint name, in execution order.
    fn linears(&self) -> Vec<(String, &Linear)> {
        self.linear_ids().into_iter().map(|(l, n)| (self.linear_name(l, n), self.linear(l, n))).collect()
    }

    /// Embedding tables as `(checkpoint name without .weight, rows, columns, values)`.
    fn embedding_tables(&self) -> Vec<(String, usize, usize, Vec<f32>)>;

    /// Every other parameter (norms, an untied output projection) as `(checkpoint name, shape, values)`.
    fn other_parameters(&self) -> Vec<(String, Vec<usize>, Vec<f32>)>;

    /// Whether the input of group `name` (the first name of one of [`Architecture::input_groups`])
    /// can take a per-channel scale that [`Architecture::fold_input_scale`] folds into its producer.
    fn input_scalable(&self, _name: &str) -> bool {
        false
    }

    /// Divides input channel `j` of group `name` of layer `l` by `s[j]` where it is produced (a
    /// norm's weights, or the rows of the Linear producing it) and multiplies column `j` of the
    /// group's Linears by `s[j]`: the layer computes the same function, with the group's weights
    /// rescaled (activation-aware scaling before quantization). Returns false, changing nothing,
    /// when [`Architecture::input_scalable`] is false or `s` has the wrong length.
    fn fold_input_scale(&mut self, _l: usize, _name: &str, _s: &[f32]) -> bool {
        false
    }

    /// Checkpoint modules the model holds but never runs for its task: a writer drops them and
    /// records that it did.
    fn unused_modules(&self) -> &'static [&'static str] {
        &[]
    }
}
