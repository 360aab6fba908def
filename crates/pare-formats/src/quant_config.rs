//! The `quantization_config` block of config.json in the compressed-tensors layout (the format Hugging
//! Face transformers and vLLM read): which modules are quantized, how their weights and inputs are
//! quantized, and which are left in float.

use crate::error::{FormatError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// `quant_method` of compressed-tensors.
pub const QUANT_METHOD: &str = "compressed-tensors";

/// One side (weights or input activations) of a quantization scheme.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantArgs {
    /// Bits per value.
    pub num_bits: u32,
    /// `int` or `float`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Zero point fixed at 0 (`true`) or stored.
    pub symmetric: bool,
    /// `tensor`, `channel`, `group`, `block` or `token`.
    pub strategy: Option<String>,
    /// Group size of the `group` strategy.
    #[serde(default)]
    pub group_size: Option<usize>,
    /// Computed at run time (`true`) or stored.
    #[serde(default)]
    pub dynamic: serde_json::Value,
    /// How ranges were observed (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
}

impl QuantArgs {
    /// 8-bit integer arguments.
    pub fn int8(symmetric: bool, strategy: &str, dynamic: bool, observer: Option<&str>) -> Self {
        QuantArgs {
            num_bits: 8,
            kind: "int".into(),
            symmetric,
            strategy: Some(strategy.into()),
            group_size: None,
            dynamic: serde_json::Value::Bool(dynamic),
            observer: observer.map(str::to_string),
        }
    }

    /// Whether values are quantized at run time.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic.as_bool().unwrap_or(false) || self.dynamic.as_str().is_some()
    }
}

/// A group of modules and how they are quantized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantScheme {
    /// Module class names (`Linear`, `Embedding`) or exact module names.
    pub targets: Vec<String>,
    /// Weight quantization.
    pub weights: Option<QuantArgs>,
    /// Input activation quantization.
    pub input_activations: Option<QuantArgs>,
    /// Output activation quantization.
    #[serde(default)]
    pub output_activations: Option<QuantArgs>,
    /// On-disk format of this group's weights (`int-quantized`), when it must be named: loaders
    /// otherwise infer one per module, e.g. a packed layout for embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// The `quantization_config` block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizationConfig {
    /// Always `compressed-tensors`.
    pub quant_method: String,
    /// On-disk format of the quantized weights, e.g. `int-quantized` (absent for sparsity alone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
    /// `compressed` for files written by pare.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub quantization_status: String,
    /// Groups by name (empty when only sparsity is described).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_groups: BTreeMap<String, QuantScheme>,
    /// Modules left unquantized even when a group targets them. Written when not empty; writers of
    /// quantized models add an empty list themselves (transformers iterates it unconditionally,
    /// while compressed-tensors reads a block that has one but no groups as a broken quantization
    /// block).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// Sparsity of the stored weights, when pruned (compressed-tensors `sparsity_config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity_config: Option<SparsityConfig>,
}

/// compressed-tensors `sparsity_config`: how pruned Linear weights are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparsityConfig {
    /// `sparse-bitmask` or `sparse-24-bitmask` (`dense`: stored dense).
    pub format: String,
    /// Fraction of zeros over the targeted weights.
    #[serde(default)]
    pub global_sparsity: f64,
    /// `unstructured`, `2:4`, `N:M`.
    #[serde(default = "unstructured")]
    pub sparsity_structure: String,
    /// Module classes or names stored sparse.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Modules stored dense although targeted.
    #[serde(default)]
    pub ignore: Option<Vec<String>>,
}

fn unstructured() -> String {
    "unstructured".into()
}

impl QuantizationConfig {
    /// A block that only describes sparsity.
    pub fn sparsity_only(sparsity: SparsityConfig) -> Self {
        QuantizationConfig {
            quant_method: QUANT_METHOD.into(),
            format: String::new(),
            quantization_status: String::new(),
            config_groups: BTreeMap::new(),
            ignore: Vec::new(),
            sparsity_config: Some(sparsity),
        }
    }

    /// Whether weights are quantized (some config group exists).
    pub fn is_quantized(&self) -> bool {
        !self.config_groups.is_empty()
    }
}

/// The kind of module a name refers to, for matching class targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// `torch.nn.Linear`.
    Linear,
    /// `torch.nn.Embedding`.
    Embedding,
}

impl QuantizationConfig {
    /// The block of a parsed config.json (read from `path`, for errors), if it has one.
    pub fn from_config(v: &serde_json::Value, path: &Path) -> Result<Option<Self>> {
        let Some(q) = v.get("quantization_config") else { return Ok(None) };
        let cfg: QuantizationConfig = serde_json::from_value(q.clone()).map_err(|e| FormatError::Config {
            path: path.to_path_buf(),
            msg: format!("quantization_config is not a compressed-tensors block: {e}"),
        })?;
        if cfg.quant_method != QUANT_METHOD {
            return Err(FormatError::Config {
                path: path.to_path_buf(),
                msg: format!("quant_method {:?} is not supported (pare reads {QUANT_METHOD:?})", cfg.quant_method),
            });
        }
        Ok(Some(cfg))
    }

    /// The scheme that applies to module `name` of kind `kind`, unless it is ignored.
    pub fn scheme_for(&self, name: &str, kind: ModuleKind) -> Option<&QuantScheme> {
        if self.ignore.iter().any(|i| i == name) {
            return None;
        }
        let class = match kind {
            ModuleKind::Linear => "Linear",
            ModuleKind::Embedding => "Embedding",
        };
        // Exact names take precedence over class targets.
        let groups = || self.config_groups.values();
        groups()
            .find(|s| s.targets.iter().any(|t| t == name))
            .or_else(|| groups().find(|s| s.targets.iter().any(|t| t == class)))
    }

    /// Target patterns pare does not interpret (regular expressions), which would be silently missed.
    pub fn unsupported_targets(&self) -> Vec<String> {
        self.config_groups
            .values()
            .flat_map(|s| s.targets.iter())
            .chain(self.ignore.iter())
            .filter(|t| t.starts_with("re:"))
            .cloned()
            .collect()
    }
}

/// Key of pare's own extension block in config.json, beside `quantization_config`.
pub const PARE_EXTENSION_KEY: &str = "pare_compression";

/// What pare records about a compressed model beyond the compressed-tensors block. Other readers
/// ignore it and still run the model correctly (with plain int8 activations).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PareExtension {
    /// Input channels of each Linear (by checkpoint name) kept in f32 at run time instead of being
    /// quantized with the rest of the activation row.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub activation_outliers: BTreeMap<String, Vec<u32>>,
    /// The static input range pare runs each Linear with (by checkpoint name): calibrated over the
    /// channels not in `activation_outliers`, which pare keeps in f32. The Linear's `input_scale` and
    /// `input_zero_point` tensors cover every channel, for readers that quantize them all; a file
    /// without this block (written before it existed) holds pare's ranges in those tensors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub activation_ranges: BTreeMap<String, InputRange>,
    /// Per-layer sizes after structured pruning (empty: every layer as config.json says).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerShape>,
}

/// A static input range in compressed-tensors' convention: `x ≈ (q − input_zero_point) · input_scale`
/// with `q` in [−128, 127] (pare's u8 zero point is `input_zero_point + 128`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRange {
    /// Step between quantized values (positive).
    pub input_scale: f32,
    /// The quantized value of 0 (0 for symmetric activations).
    #[serde(default)]
    pub input_zero_point: i32,
}

/// The size of one encoder layer after structured pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerShape {
    /// Attention heads kept.
    pub heads: usize,
    /// Feed-forward neurons kept.
    pub intermediate_size: usize,
}

/// Everything config.json says about how the weights are stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompressionConfig {
    /// The compressed-tensors block, if any.
    pub quantization: Option<QuantizationConfig>,
    /// pare's extension block.
    pub pare: PareExtension,
}

impl CompressionConfig {
    /// Reads both blocks from a config.json.
    pub fn from_config_file(path: &Path) -> Result<Self> {
        Self::from_config(&crate::read_json(path)?, path)
    }

    /// Both blocks of a parsed config.json (read from `path`, for errors).
    pub fn from_config(v: &serde_json::Value, path: &Path) -> Result<Self> {
        let quantization = QuantizationConfig::from_config(v, path)?;
        let pare = match v.get(PARE_EXTENSION_KEY) {
            None => PareExtension::default(),
            Some(b) => serde_json::from_value(b.clone()).map_err(|e| FormatError::Config {
                path: path.to_path_buf(),
                msg: format!("{PARE_EXTENSION_KEY} is malformed: {e}"),
            })?,
        };
        Ok(CompressionConfig { quantization, pare })
    }
}
