//! The Report value: everything a report shows, measured and analysed elsewhere. Serialised as
//! report.json (a documented contract, versioned by [`SCHEMA_VERSION`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of report.json's schema.
pub const SCHEMA_VERSION: u32 = 3;

/// A compression report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The pare that made it.
    pub pare: Build,
    /// Where it was measured.
    pub machine: Machine,
    /// The model compressed.
    pub model: ModelInfo,
    /// The task it serves: the fidelity statistic and the throughput unit.
    pub task: TaskSpec,
    /// How the sweep was run.
    pub settings: Settings,
    /// The task metrics and their data.
    pub tasks: Vec<TaskInfo>,
    /// Every variant measured, the original first.
    pub variants: Vec<Variant>,
    /// Findings, curves, trade-offs, ranking and recommendations, derived from the variants.
    pub analysis: Analysis,
    /// Wall time of the whole sweep, seconds.
    pub wall_seconds: f64,
}

/// Version of pare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Build {
    /// Crate version.
    pub version: String,
    /// Git commit, when built from a checkout.
    pub commit: Option<String>,
}

/// The machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Kernel tier in use, and why.
    pub isa: String,
    /// Kernel picked for each family.
    pub kernels: BTreeMap<String, String>,
    /// Worker threads of the measurements.
    pub threads: usize,
    /// Logical CPUs of the machine.
    pub logical_cpus: usize,
}

/// The original model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// As given on the command line.
    pub name: String,
    /// Model directory.
    pub path: String,
    /// Architecture family.
    pub architecture: String,
    /// Parameters.
    pub parameters: u64,
    /// Bytes of model.safetensors.
    pub file_bytes: u64,
}

/// How the sweep was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Largest fidelity loss (1 − mean cosine, or mean KLD) a variant may have to count as within budget.
    pub max_loss: f64,
    /// Reduced sweep.
    pub quick: bool,
    /// Tokens per sequence of the latency and throughput runs.
    pub seq: usize,
    /// Sequences per forward pass of the throughput runs.
    pub throughput_batch: usize,
    /// Rounds over all variants (runs alternate between variants, round by round).
    pub rounds: usize,
    /// Timed batch-1 runs per variant per round.
    pub runs_per_round: usize,
    /// Timed throughput runs per variant per round.
    pub throughput_runs_per_round: usize,
    /// Calibration text of the calibrated methods, and samples used.
    pub calibration: String,
    /// Calibration samples.
    pub calibration_samples: usize,
    /// What the fidelity is measured on.
    pub fidelity_texts: String,
    /// Number of fidelity texts.
    pub fidelity_count: usize,
}

/// A task metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Key in [`Variant::tasks`].
    pub id: String,
    /// Human name.
    pub name: String,
    /// The statistic.
    pub metric: String,
    /// Where the labelled data comes from.
    pub source: String,
    /// Scored items (pairs, or token positions).
    pub items: usize,
    /// Whether a higher value is better (correlations, agreement) or a lower one (perplexity).
    #[serde(default = "higher")]
    pub higher_is_better: bool,
}

fn higher() -> bool {
    true
}

/// What a variant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The model as given.
    Original,
    /// Quantized only.
    Quantized,
    /// Pruned only.
    Pruned,
    /// Pruned and quantized.
    Combined,
    /// Another engine on the same weights, for comparison.
    Peer,
}

/// One measured variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Short identifier, e.g. `sparsegpt-50`.
    pub id: String,
    /// Display name, e.g. `SparseGPT 50%`.
    pub label: String,
    /// What it is.
    pub kind: Kind,
    /// Compression method (`original`, `int8`, `magnitude`, `sparsegpt`, `wanda`, `nm`, `structured`,
    /// `sparsegpt+int8`, ...; `onnxruntime-fp32` / `onnxruntime-int8` for peers).
    pub method: String,
    /// Fraction pruned (weights, or heads and neurons for `structured`), when pruned.
    pub sparsity: Option<f64>,
    /// Engine that ran it.
    pub engine: String,
    /// How it was made (commands).
    pub recipe: String,
    /// Its model directory, when pare made it.
    pub path: Option<String>,
    /// Bytes of its model file on disk.
    pub file_bytes: u64,
    /// Parameters stored (after structured pruning: of the smaller matrices).
    pub parameters: u64,
    /// Nonzero parameters.
    pub nonzeros: u64,
    /// Linear layers that run a sparse kernel.
    pub sparse_layers: usize,
    /// Latency at batch 1.
    pub latency: Timing,
    /// Latency and throughput at the larger batch.
    pub throughput: Option<Timing>,
    /// Peak resident memory while loading and running it, bytes above the process before loading.
    pub peak_memory_bytes: Option<u64>,
    /// Agreement with the original's embeddings.
    pub fidelity: Fidelity,
    /// Task metrics by [`TaskInfo::id`].
    pub tasks: BTreeMap<String, f64>,
    /// Seconds to build it.
    pub build_seconds: Option<f64>,
    /// Original median latency / this median latency (at batch 1).
    pub speedup: f64,
    /// 95% interval of [`Variant::speedup`] by the speed test (the `speed_test` rule); `None` when the
    /// original or this variant has too few timed runs to test.
    pub speedup_ci: Option<Interval>,
    /// What the speed test says of this variant against the original.
    pub speed_verdict: SpeedVerdict,
    /// This file / the original file.
    pub size_ratio: f64,
}

/// A confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end (≥ `low`).
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies in the interval, ends included.
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// The speed test's verdict on a ratio of median latencies (reference / variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeedVerdict {
    /// The variant is the reference itself.
    Baseline,
    /// The interval lies above 1.
    Faster,
    /// The interval contains 1: the difference is within the noise of the run.
    NoMeasurableChange,
    /// The interval lies below 1.
    Slower,
    /// Too few timed runs to test.
    Untested,
}

/// Statistics of timed forward passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Sequences per pass.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Timed passes.
    pub runs: usize,
    /// Median, ms.
    pub median_ms: f64,
    /// 90th percentile (nearest rank), ms.
    pub p90_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Population standard deviation, ms.
    pub stddev_ms: f64,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Interquartile range / median.
    pub relative_iqr: f64,
    /// Items per second at the median, in [`TaskSpec::throughput_unit`] (sentences, or tokens).
    pub items_per_s: f64,
    /// Every timed pass, ms, by round: `samples_ms[r][i]` is the i-th pass of round r, in run order. pare's
    /// variants share the sweep's rounds (round r of every variant ran in the same pass over the variants);
    /// a peer, timed in its own process, has a single block.
    pub samples_ms: Vec<Vec<f64>>,
}

/// A variant's agreement with the original, in the task's statistic ([`TaskSpec::fidelity`]): the
/// cosine between embeddings of the fidelity texts, or the KL divergence between next-token
/// distributions at every position of the fidelity text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// Mean over the items.
    pub mean: f64,
    /// Worst item: the lowest cosine, or the largest KL divergence.
    pub worst: f64,
    /// Items compared (texts, or token positions).
    pub items: usize,
}

/// The task a report's model serves, which fixes how fidelity and throughput are expressed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// `sentence-embedding` or `language-model`.
    pub id: String,
    /// The fidelity statistic as tables and findings name it: `mean cosine`, `mean KLD`.
    pub fidelity: String,
    /// Its worst item's name: `min cosine`, `max KLD`.
    pub fidelity_worst: String,
    /// What the statistic compares.
    pub fidelity_of: String,
    /// Whether a higher value is better (cosine) or a lower one (KL divergence).
    pub higher_is_better: bool,
    /// Unit of [`Timing::items_per_s`]: `sentences/s`, `tokens/s`.
    pub throughput_unit: String,
}

impl TaskSpec {
    /// Sentence embeddings: cosine to the original's embeddings, sentences/s.
    pub fn sentence_embedding() -> Self {
        TaskSpec {
            id: "sentence-embedding".into(),
            fidelity: "mean cosine".into(),
            fidelity_worst: "min cosine".into(),
            fidelity_of: "cosine to the original's embeddings".into(),
            higher_is_better: true,
            throughput_unit: "sentences/s".into(),
        }
    }

    /// Language models: KL divergence from the original's next-token distributions, tokens/s.
    pub fn language_model() -> Self {
        TaskSpec {
            id: "language-model".into(),
            fidelity: "mean KLD".into(),
            fidelity_worst: "max KLD".into(),
            fidelity_of: "KL divergence from the original's next-token distributions".into(),
            higher_is_better: false,
            throughput_unit: "tokens/s".into(),
        }
    }

    /// The fidelity loss of a value: 1 − cosine, or the KL divergence itself.
    pub fn loss(&self, value: f64) -> f64 {
        if self.higher_is_better { 1.0 - value } else { value }
    }

    /// Whether a value is within a loss budget: cosine ≥ 1 − `max_loss`, or KLD ≤ `max_loss`.
    pub fn within(&self, value: f64, max_loss: f64) -> bool {
        if self.higher_is_better { value >= 1.0 - max_loss } else { value <= max_loss }
    }

    /// The budget's bound in words: `≥ 0.980`, `≤ 0.050`.
    pub fn bound(&self, max_loss: f64) -> String {
        if self.higher_is_better { format!("≥ {:.3}", 1.0 - max_loss) } else { format!("≤ {max_loss:.3}") }
    }

    /// Whether `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.higher_is_better { a > b } else { a < b }
    }
}

/// What the measurements say, each part by a stated rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The fidelity budget: a variant is within budget when its fidelity loss ≤ `max_loss`.
    pub max_loss: f64,
    /// The rules, by name (`budget`, `score`, `ranking`, `mobile_edge`, `speed_critical`, `production`, ...).
    pub rules: BTreeMap<String, String>,
    /// Key findings, one sentence each.
    pub findings: Vec<String>,
    /// Speedup, fidelity and size against the fraction pruned, per method.
    pub pruning_curves: Vec<Curve>,
    /// Size reduction against speed gain, per variant.
    pub tradeoffs: Vec<Tradeoff>,
    /// Variants on the Pareto front of (file size, median latency, fidelity): no other variant is
    /// at least as good on all three and better on one.
    pub pareto: Vec<String>,
    /// Efficiency ranking, best first.
    pub ranking: Vec<Rank>,
    /// Deployment recommendations.
    pub recommendations: Vec<Recommendation>,
}

/// One method's pruning curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Method.
    pub method: String,
    /// Display name.
    pub label: String,
    /// Points by increasing sparsity (0 is the original).
    pub points: Vec<CurvePoint>,
}

/// A point of a pruning curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Fraction pruned.
    pub sparsity: f64,
    /// Variant measured.
    pub variant: String,
    /// Its speedup.
    pub speedup: f64,
    /// Its mean fidelity ([`TaskSpec::fidelity`]).
    pub fidelity: f64,
    /// Its size ratio.
    pub size_ratio: f64,
}

/// Size reduction against speed gain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tradeoff {
    /// Variant.
    pub variant: String,
    /// 100 · (1 − size ratio).
    pub size_reduction_pct: f64,
    /// 100 · (speedup − 1).
    pub speed_gain_pct: f64,
    /// Fidelity loss: 1 − mean cosine, or mean KLD.
    pub fidelity_loss: f64,
}

/// A place in the ranking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rank {
    /// 1-based.
    pub rank: usize,
    /// Variant.
    pub variant: String,
    /// Efficiency score (see the `score` rule).
    pub score: f64,
    /// Fidelity within the budget.
    pub within_budget: bool,
    /// One line on why it stands here.
    pub note: String,
}

/// A recommendation for one use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The use (`Mobile/Edge`, `Speed-critical`, `Production`).
    pub use_case: String,
    /// The rule that chose it.
    pub rule: String,
    /// The variant chosen, if any meets the rule.
    pub variant: Option<String>,
    /// What the choice gives, or why nothing qualifies.
    pub reason: String,
}

impl Report {
    /// The variant called `id`.
    pub fn variant(&self, id: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.id == id)
    }

    /// The label of variant `id` (the id itself when unknown).
    pub fn label<'a>(&'a self, id: &'a str) -> &'a str {
        self.variant(id).map_or(id, |v| v.label.as_str())
    }
}
