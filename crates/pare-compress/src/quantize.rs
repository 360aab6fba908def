//! int8 quantization: Linear weights per output channel (symmetric, [−127, 127]), embedding tables per
//! row, LayerNorm parameters and biases kept in float. Activations are quantized at run time per token
//! (dynamic) or with one calibrated range per Linear input (static). The result is written in the
//! compressed-tensors `int-quantized` layout: `W.weight` (I8), `W.weight_scale` ([out, 1]), and for
//! static inputs `W.input_scale` ([1]) and `W.input_zero_point` ([1], I8).
//!
//! A few input channels of each Linear carry activations far larger than the rest (BERT's LayerNorm
//! outputs and GELU outputs have such channels); left in, they set every token's quantization range.
//! pare picks, per Linear, the `outliers` channels with the largest calibrated magnitude and keeps them
//! in f32 at run time (LLM.int8() decomposition, with a fixed calibrated set). The stored int8 weights
//! are unchanged; the channel lists go to config.json's `pare_quantization` block.

use crate::calibration;
use crate::error::{CompressError, Result};
use crate::output::{check_destination, read_config, write_model_dir};
use pare_formats::quant_config::{
    PARE_EXTENSION_KEY, PareExtension, QUANT_METHOD, QuantArgs, QuantScheme, QuantizationConfig,
};
use pare_formats::writer::TensorData;
use pare_formats::{ModelDir, TensorFile};
use pare_kernels::quant::{ActQuant, row_params};
use pare_models::bert::{EMBEDDING_NAMES, Workspace};
use pare_models::{Batch, SentenceEncoder};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How activations are quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationMode {
    /// Per token at run time.
    Dynamic,
    /// One range per Linear input, calibrated on sample text.
    Static,
}

/// Options of [`quantize`].
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// Dynamic (default) or static activations.
    pub activations: ActivationMode,
    /// Symmetric activations (zero point 128) instead of asymmetric.
    pub symmetric_activations: bool,
    /// Calibration samples for static activations, with the name of their source.
    pub calibration: Option<(String, Vec<String>)>,
    /// Linear layers (checkpoint names) to keep in float; `embeddings` keeps the embedding tables.
    pub keep_float: Vec<String>,
    /// Input channels per Linear kept in f32 at run time (0: none).
    pub outliers: usize,
    /// Replace a non-empty output directory.
    pub force: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            activations: ActivationMode::Dynamic,
            symmetric_activations: false,
            calibration: None,
            keep_float: Vec::new(),
            outliers: DEFAULT_OUTLIERS,
            force: false,
        }
    }
}

/// Samples of the embedded calibration set used when no file is given.
pub const DEFAULT_CALIBRATION_SAMPLES: usize = 128;

/// Outlier input channels kept in f32 per Linear, by default (measured on MiniLM: see the README).
pub const DEFAULT_OUTLIERS: usize = 4;

/// One tensor of the result.
#[derive(Clone, Debug)]
pub struct TensorLine {
    /// Name in the source.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// dtype before.
    pub from: String,
    /// dtype after.
    pub to: String,
    /// Bytes before (the tensor).
    pub bytes_before: usize,
    /// Bytes after (the tensor and its scales / zero points).
    pub bytes_after: usize,
}

/// What [`quantize`] did.
#[derive(Clone, Debug)]
pub struct QuantizeSummary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Every tensor of the source.
    pub tensors: Vec<TensorLine>,
    /// Size of the source model.safetensors.
    pub file_bytes_before: u64,
    /// Size of the output model.safetensors.
    pub file_bytes_after: u64,
    /// Description of the activation scheme.
    pub activations: String,
}

/// Symmetric int8 of each row of `w[rows][cols]`: values in [−127, 127] and one scale per row.
pub fn quantize_rows_symmetric(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; rows * cols];
    let mut scales = vec![0f32; rows];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        scales[r] = scale;
        if scale > 0.0 {
            for (o, v) in q[r * cols..(r + 1) * cols].iter_mut().zip(row) {
                *o = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
        }
    }
    (q, scales)
}

/// Per-channel minimum and maximum of one Linear's inputs over the calibration set.
#[derive(Clone, Debug)]
struct ChannelRanges {
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl ChannelRanges {
    /// The `n` channels of largest magnitude, ascending.
    fn outliers(&self, n: usize) -> Vec<u32> {
        let mag: Vec<f32> = self.lo.iter().zip(&self.hi).map(|(l, h)| l.abs().max(h.abs())).collect();
        let mut idx: Vec<u32> = (0..mag.len() as u32).collect();
        idx.sort_by(|&a, &b| mag[b as usize].total_cmp(&mag[a as usize]).then(a.cmp(&b)));
        idx.truncate(n.min(mag.len()));
        idx.sort_unstable();
        idx
    }

    /// Range over every channel but `skip`.
    fn range_without(&self, skip: &[u32]) -> (f32, f32) {
        let mut r = (0f32, 0f32);
        for (c, (l, h)) in self.lo.iter().zip(&self.hi).enumerate() {
            if !skip.contains(&(c as u32)) {
                r = (r.0.min(*l), r.1.max(*h));
            }
        }
        r
    }
}

/// Runs the float model on the samples and returns the per-channel range of every Linear's input.
fn calibrate(
    enc: &SentenceEncoder,
    samples: &[String],
    log: &mut dyn FnMut(&str),
) -> Result<HashMap<String, ChannelRanges>> {
    let mut ranges: HashMap<String, ChannelRanges> = HashMap::new();
    let mut ws = Workspace::default();
    let mut tokens = 0usize;
    for (i, s) in samples.iter().enumerate() {
        let ids = enc.tokenize(s)?;
        tokens += ids.len();
        let batch = Batch::repeat(&ids, 1);
        let mut hook = |name: &str, x: &[f32], _rows: usize, cols: usize| {
            let e = ranges
                .entry(name.to_string())
                .or_insert_with(|| ChannelRanges { lo: vec![f32::INFINITY; cols], hi: vec![f32::NEG_INFINITY; cols] });
            for row in x.chunks_exact(cols) {
                for (c, &v) in row.iter().enumerate() {
                    e.lo[c] = e.lo[c].min(v);
                    e.hi[c] = e.hi[c].max(v);
                }
            }
        };
        enc.model.forward_observed(&batch, &mut ws, Some(&mut hook))?;
        if (i + 1) % 64 == 0 || i + 1 == samples.len() {
            log(&format!("calibration: {}/{} samples, {tokens} tokens", i + 1, samples.len()));
        }
    }
    Ok(ranges)
}

fn describe(mode: ActivationMode, symmetric: bool) -> String {
    match (mode, symmetric) {
        (ActivationMode::Dynamic, false) => "dynamic per token, asymmetric u8".into(),
        (ActivationMode::Dynamic, true) => "dynamic per token, symmetric".into(),
        (ActivationMode::Static, false) => "static per tensor (calibrated), asymmetric u8".into(),
        (ActivationMode::Static, true) => "static per tensor (calibrated), symmetric".into(),
    }
}

/// Quantizes the model in `src` to int8 and writes it to `out`. `log` receives one line per tensor
/// and the totals.
pub fn quantize(
    src: &ModelDir,
    out: &Path,
    opts: &QuantizeOptions,
    log: &mut dyn FnMut(&str),
) -> Result<QuantizeSummary> {
    check_destination(&src.root, out, opts.force)?;
    if let Some(q) = QuantizationConfig::from_config_file(&src.file("config.json"))?
        && !q.config_groups.is_empty()
    {
        return Err(CompressError::Invalid(format!(
            "{}: the model is already quantized ({} format); quantize its float original instead",
            src.root.display(),
            q.format
        )));
    }
    let enc = SentenceEncoder::load(src)?;
    let file = TensorFile::open(src.file("model.safetensors"))?;
    let linears: Vec<String> = enc.model.linears().into_iter().map(|(n, _)| n).collect();
    for k in &opts.keep_float {
        if k != "embeddings" && !linears.contains(k) {
            return Err(CompressError::Invalid(format!(
                "--keep-float {k}: no Linear layer of that name (names look like {})",
                linears.first().map(String::as_str).unwrap_or("encoder.layer.0.attention.self.query")
            )));
        }
    }
    let keep_embeddings = opts.keep_float.iter().any(|k| k == "embeddings");
    let quantized: Vec<&String> = linears.iter().filter(|n| !opts.keep_float.contains(n)).collect();

    let static_acts = opts.activations == ActivationMode::Static;
    let needs_calibration = static_acts || opts.outliers > 0;
    let (calib_source, calib_samples) = match &opts.calibration {
        Some(c) => c.clone(),
        None => (calibration::DEFAULT_NAME.to_string(), calibration::default_samples(DEFAULT_CALIBRATION_SAMPLES)),
    };
    let ranges = if needs_calibration {
        log(&format!("calibrating activation ranges on {} samples of {calib_source}", calib_samples.len()));
        calibrate(&enc, &calib_samples, log)?
    } else {
        HashMap::new()
    };
    let mut outlier_map = BTreeMap::new();

    let prefix = if file.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
    let mut tensors = Vec::new();
    let mut lines = Vec::new();
    for info in file.infos() {
        let module = info.name.strip_suffix(".weight").map(|m| m.strip_prefix(prefix).unwrap_or(m));
        let is_linear = module.is_some_and(|m| quantized.iter().any(|q| q.as_str() == m));
        let is_embedding = !keep_embeddings && module.is_some_and(|m| EMBEDDING_NAMES.contains(&m));
        if !(is_linear || is_embedding) {
            tensors.push(TensorData {
                name: info.name.clone(),
                dtype: file.dtype(&info.name)?,
                shape: info.shape.clone(),
                bytes: file.bytes(&info.name)?.to_vec(),
            });
            lines.push(TensorLine {
                name: info.name.clone(),
                shape: info.shape.clone(),
                from: info.dtype.clone(),
                to: info.dtype.clone(),
                bytes_before: info.bytes,
                bytes_after: info.bytes,
            });
            continue;
        }
        let (rows, cols) = (info.shape[0], info.shape[1]);
        let w = file.f32(&info.name, &info.shape)?;
        let (q, scales) = quantize_rows_symmetric(&w, rows, cols);
        let base = info.name.strip_suffix(".weight").unwrap_or(&info.name).to_string();
        let mut after = q.len() + scales.len() * 4;
        tensors.push(TensorData::i8(info.name.clone(), &info.shape, &q));
        tensors.push(TensorData::f32(format!("{base}.weight_scale"), &[rows, 1], &scales));
        let stats = if is_linear && needs_calibration {
            Some(ranges.get(module.unwrap_or_default()).ok_or_else(|| {
                CompressError::Invalid(format!("calibration did not reach {base}; is the model complete?"))
            })?)
        } else {
            None
        };
        let outliers = stats.map(|r| r.outliers(opts.outliers)).unwrap_or_default();
        if !outliers.is_empty() {
            outlier_map.insert(base.clone(), outliers.clone());
        }
        if let (Some(r), true) = (stats, static_acts) {
            let (lo, hi) = r.range_without(&outliers);
            let mode =
                if opts.symmetric_activations { ActQuant::DynamicSymmetric } else { ActQuant::DynamicAsymmetric };
            let (scale, zero) = row_params(lo, hi, mode);
            tensors.push(TensorData::f32(format!("{base}.input_scale"), &[1], &[scale]));
            after += 4;
            if !opts.symmetric_activations {
                tensors.push(TensorData::i8(format!("{base}.input_zero_point"), &[1], &[(zero - 128) as i8]));
                after += 1;
            }
        }
        let line = TensorLine {
            name: info.name.clone(),
            shape: info.shape.clone(),
            from: info.dtype.clone(),
            to: "I8".into(),
            bytes_before: info.bytes,
            bytes_after: after,
        };
        log(&format!(
            "{:<52} {:>12} {} → I8 + scales  {} → {} bytes",
            line.name,
            format!("{:?}", line.shape),
            line.from,
            line.bytes_before,
            line.bytes_after
        ));
        lines.push(line);
    }

    let mut groups = BTreeMap::new();
    groups.insert(
        "group_0".to_string(),
        QuantScheme {
            targets: vec!["Linear".into()],
            weights: Some(QuantArgs::int8(true, "channel", false, Some("minmax"))),
            input_activations: Some(QuantArgs::int8(
                opts.symmetric_activations,
                if static_acts { "tensor" } else { "token" },
                !static_acts,
                if static_acts { Some("minmax") } else { None },
            )),
            output_activations: None,
        },
    );
    if !keep_embeddings {
        groups.insert(
            "group_1".to_string(),
            QuantScheme {
                targets: vec!["Embedding".into()],
                weights: Some(QuantArgs::int8(true, "channel", false, Some("minmax"))),
                input_activations: None,
                output_activations: None,
            },
        );
    }
    let qc = QuantizationConfig {
        quant_method: QUANT_METHOD.into(),
        format: "int-quantized".into(),
        quantization_status: "compressed".into(),
        config_groups: groups,
        ignore: opts.keep_float.iter().filter(|k| *k != "embeddings").cloned().collect(),
        sparsity_config: None,
    };
    let activations = describe(opts.activations, opts.symmetric_activations);
    let mut config = read_config(&src.root)?;
    config["quantization_config"] = serde_json::to_value(&qc).map_err(|e| CompressError::Invalid(e.to_string()))?;
    let ext = PareExtension { activation_outliers: outlier_map };
    let mut block = serde_json::to_value(&ext).map_err(|e| CompressError::Invalid(e.to_string()))?;
    block["version"] = env!("CARGO_PKG_VERSION").into();
    block["scheme"] = "int8".into();
    block["activations"] = activations.clone().into();
    block["outliers_per_linear"] = opts.outliers.into();
    block["calibration"] = if needs_calibration {
        serde_json::json!({"source": calib_source, "samples": calib_samples.len()})
    } else {
        serde_json::Value::Null
    };
    config[PARE_EXTENSION_KEY] = block;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let out_dir = write_model_dir(&src.root, out, &config, &tensors, metadata)?;
    let before = std::fs::metadata(src.file("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    let after = std::fs::metadata(out_dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    log(&format!(
        "model.safetensors {:.1} MB → {:.1} MB ({:.2}×); activations {activations}",
        before as f64 / 1e6,
        after as f64 / 1e6,
        after as f64 / before.max(1) as f64
    ));
    Ok(QuantizeSummary { out_dir, tensors: lines, file_bytes_before: before, file_bytes_after: after, activations })
}
