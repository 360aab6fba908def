//! int8 quantization: Linear weights per output channel (symmetric, [−127, 127]), embedding tables per
//! row, LayerNorm parameters and biases kept in float. Activations are quantized at run time per token
//! (dynamic) or with one calibrated range per Linear input (static). The result is written in the
//! compressed-tensors `int-quantized` layout: `W.weight` (I8), `W.weight_scale` ([out, 1]), and for
//! static inputs `W.input_scale` ([1]) and `W.input_zero_point` ([1], I8). A pruned source stays
//! sparse (its int8 weights stored in the same sparse layout, or dense when `portable`).
//!
//! A few input channels of each Linear carry activations far larger than the rest (BERT's LayerNorm
//! outputs and GELU outputs have such channels); left in, they set every token's quantization range.
//! pare picks, per Linear, the `outliers` channels with the largest calibrated magnitude and keeps them
//! in f32 at run time (LLM.int8() decomposition, with a fixed calibrated set). The stored int8 weights
//! are unchanged; the channel lists go to config.json's `pare_compression` block. With static
//! activations the range pare runs, over the other channels, goes there too, while `W.input_scale`
//! and `W.input_zero_point` span every channel: a reader that quantizes the outlier channels with the
//! rest would otherwise clip them.

use crate::calibration;
use crate::encode::{self, Plan, QuantPlan, SparseLayout, Structure, Summary};
use crate::error::{CompressError, Result};
use crate::prune::Tokenize;
use crate::source::Source;
use pare_formats::ModelDir;
use pare_kernels::quant::{ActQuant, row_params};
use pare_models::{Architecture, Batch};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub use crate::encode::ActivationMode;

/// Options of [`quantize`].
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// Dynamic (default) or static activations.
    pub activations: ActivationMode,
    /// Symmetric activations (zero point 128) instead of asymmetric.
    pub symmetric_activations: bool,
    /// Calibration samples, with the name of their source (default: the built-in set).
    pub calibration: Option<(String, Vec<String>)>,
    /// Linear layers (checkpoint names) to keep in float; `embeddings` keeps the embedding tables.
    pub keep_float: Vec<String>,
    /// Input channels per Linear kept in f32 at run time (0: none).
    pub outliers: usize,
    /// A pruned source's weights stored dense (`sparsity_config.format: "dense"`), which every
    /// compressed-tensors reader loads, instead of in its bitmask layout.
    pub portable: bool,
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
            portable: false,
            force: false,
        }
    }
}

/// Samples of the embedded calibration set used when no file is given.
pub const DEFAULT_CALIBRATION_SAMPLES: usize = 128;

/// Outlier input channels kept in f32 per Linear, by default (measured on MiniLM: see the README).
pub const DEFAULT_OUTLIERS: usize = 4;

/// Per-channel minimum and maximum of one Linear's inputs over the calibration set.
#[derive(Clone, Debug)]
pub struct ChannelRanges {
    /// Minimum per input channel.
    pub lo: Vec<f32>,
    /// Maximum per input channel.
    pub hi: Vec<f32>,
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

/// Runs the model on each sample (one sequence per pass, so nothing is padding), layer by layer, and
/// passes every Linear's input to `see` with the Linear's checkpoint name: `(name, x, rows, cols)`.
pub fn observe_inputs(
    model: &dyn Architecture,
    tokenize: Tokenize,
    samples: &[String],
    log: &mut dyn FnMut(&str),
    see: pare_models::LinearHook,
) -> Result<()> {
    let mut tokens = 0usize;
    for (i, s) in samples.iter().enumerate() {
        let ids = tokenize(s)?;
        if !ids.is_empty() {
            tokens += ids.len();
            let batch = Batch::repeat(&ids, 1);
            model.check_batch(&batch)?;
            let mut x = model.embed_batch(&batch);
            for l in 0..model.layers() {
                let mut hook =
                    |name: &str, v: &[f32], rows: usize, cols: usize| see(&model.linear_name(l, name), v, rows, cols);
                model.run_layer(l, &batch, &mut x, Some(&mut hook));
            }
        }
        if (i + 1) % 64 == 0 || i + 1 == samples.len() {
            log(&format!("calibration: {}/{} samples, {tokens} tokens", i + 1, samples.len()));
        }
    }
    Ok(())
}

/// Runs the float model on the samples and returns the per-channel range of every Linear's input
/// (by checkpoint name).
pub fn calibrate(
    model: &dyn Architecture,
    tokenize: Tokenize,
    samples: &[String],
    log: &mut dyn FnMut(&str),
) -> Result<HashMap<String, ChannelRanges>> {
    let mut ranges: HashMap<String, ChannelRanges> = HashMap::new();
    observe_inputs(model, tokenize, samples, log, &mut |name, x, _rows, cols| {
        let e = ranges
            .entry(name.to_string())
            .or_insert_with(|| ChannelRanges { lo: vec![f32::INFINITY; cols], hi: vec![f32::NEG_INFINITY; cols] });
        for row in x.chunks_exact(cols) {
            for (c, &v) in row.iter().enumerate() {
                e.lo[c] = e.lo[c].min(v);
                e.hi[c] = e.hi[c].max(v);
            }
        }
    })?;
    Ok(ranges)
}

/// The importance of every Linear's input columns over the samples: the mean of x² per column over
/// every token (llama.cpp's imatrix), by checkpoint name. The samples run in padded batches, layer
/// by layer; padding rows are left out.
pub fn importance(
    model: &dyn Architecture,
    tokenize: Tokenize,
    samples: &[String],
    log: &mut dyn FnMut(&str),
) -> Result<HashMap<String, Vec<f32>>> {
    let seqs = samples.iter().map(|s| tokenize(s)).collect::<Result<Vec<_>>>()?;
    let mut cal = crate::prune::Calibration::from_sequences(model, seqs, "calibration".into())?;
    let mut sums: HashMap<String, (Vec<f64>, usize)> = HashMap::new();
    for l in 0..model.layers() {
        cal.observe_layer(model, l, &mut |name, row| {
            let e = sums.entry(model.linear_name(l, name)).or_insert_with(|| (vec![0f64; row.len()], 0));
            for (s, &v) in e.0.iter_mut().zip(row) {
                *s += f64::from(v) * f64::from(v);
            }
            e.1 += 1;
        });
    }
    log(&format!("calibration: {} samples, {} tokens", cal.samples, cal.tokens()));
    Ok(sums.into_iter().map(|(k, (s, n))| (k, s.iter().map(|v| (v / n.max(1) as f64) as f32).collect())).collect())
}

fn describe(mode: ActivationMode, symmetric: bool) -> String {
    match (mode, symmetric) {
        (ActivationMode::Dynamic, false) => "dynamic per token, asymmetric u8".into(),
        (ActivationMode::Dynamic, true) => "dynamic per token, symmetric".into(),
        (ActivationMode::Static, false) => "static per tensor (calibrated), asymmetric u8".into(),
        (ActivationMode::Static, true) => "static per tensor (calibrated), symmetric".into(),
    }
}

/// The int8 plan for `src`'s model: outlier channels and static ranges from calibration.
pub fn plan(src: &Source, opts: &QuantizeOptions, log: &mut dyn FnMut(&str)) -> Result<QuantPlan> {
    let linears: Vec<String> = Architecture::linears(&src.enc.model).into_iter().map(|(n, _)| n).collect();
    for k in &opts.keep_float {
        if k != "embeddings" && !linears.contains(k) {
            return Err(CompressError::Invalid(format!(
                "--keep-float {k}: no Linear layer of that name (names look like {})",
                linears.first().map(String::as_str).unwrap_or("?")
            )));
        }
    }
    let static_acts = opts.activations == ActivationMode::Static;
    let needs_calibration = static_acts || opts.outliers > 0;
    let (source, samples) = match &opts.calibration {
        Some(c) => c.clone(),
        None => (calibration::DEFAULT_NAME.to_string(), calibration::default_samples(DEFAULT_CALIBRATION_SAMPLES)),
    };
    let ranges = if needs_calibration {
        log(&format!("calibrating activation ranges on {} samples of {source}", samples.len()));
        let tokenize = |s: &str| -> Result<Vec<u32>> { Ok(src.enc.tokenize(s)?) };
        calibrate(&src.enc.model, &tokenize, &samples, log)?
    } else {
        HashMap::new()
    };
    let keep_float: Vec<String> = opts.keep_float.iter().filter(|k| *k != "embeddings").cloned().collect();
    let (mut outliers, mut static_ranges, mut full_ranges) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for name in linears.iter().filter(|n| !keep_float.contains(n)) {
        let Some(r) = ranges.get(name) else {
            if needs_calibration {
                return Err(CompressError::Invalid(format!(
                    "calibration did not reach {name}; is the model complete?"
                )));
            }
            continue;
        };
        let o = r.outliers(opts.outliers);
        if static_acts {
            let mode =
                if opts.symmetric_activations { ActQuant::DynamicSymmetric } else { ActQuant::DynamicAsymmetric };
            let (lo, hi) = r.range_without(&o);
            static_ranges.insert(name.clone(), row_params(lo, hi, mode));
            let (lo, hi) = r.range_without(&[]);
            full_ranges.insert(name.clone(), row_params(lo, hi, mode));
        }
        if !o.is_empty() {
            outliers.insert(name.clone(), o);
        }
    }
    Ok(QuantPlan {
        activations: opts.activations,
        symmetric: opts.symmetric_activations,
        outliers,
        static_ranges,
        full_ranges,
        keep_float,
        embeddings: !opts.keep_float.iter().any(|k| k == "embeddings"),
        describe: describe(opts.activations, opts.symmetric_activations),
        outliers_per_linear: opts.outliers,
        calibration: needs_calibration.then_some((source, samples.len())),
    })
}

/// The sparsity and structure a source already has, to keep when it is re-encoded. A pruned source
/// stored dense (`"format": "dense"`, pare's portable form) keeps its pattern too; how the result
/// stores it is the caller's choice ([`Plan::portable`]).
pub fn inherited(src: &Source) -> Result<Plan> {
    let sparsity = match src.sparsity() {
        Some(s) => match SparseLayout::parse(&s.sparsity_structure) {
            Some(layout) => Some(layout),
            // A dense model another tool describes in its own terms: nothing to keep.
            None if s.format == "dense" => None,
            None => {
                return Err(CompressError::Invalid(format!(
                    "sparsity_structure {:?} is not understood",
                    s.sparsity_structure
                )));
            }
        },
        None => None,
    };
    let layers = &src.compression.pare.layers;
    let structure = (!layers.is_empty()).then(|| {
        let per_layer = |v: Option<&serde_json::Value>| -> BTreeMap<usize, Vec<usize>> {
            v.and_then(|v| v.as_object())
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            Some((
                                k.parse().ok()?,
                                v.as_array()?.iter().filter_map(|x| x.as_u64().map(|x| x as usize)).collect(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let removed = per_layer(src.config.get("pruned_heads"));
        let neurons = per_layer(
            src.config.get(pare_formats::quant_config::PARE_EXTENSION_KEY).and_then(|b| b.get("removed_neurons")),
        );
        Structure { layers: layers.clone(), removed_heads: removed, removed_neurons: neurons }
    });
    let mut info = serde_json::Map::new();
    if let Some(old) = src.config.get(pare_formats::quant_config::PARE_EXTENSION_KEY).and_then(|v| v.as_object()) {
        for k in ["method", "sparsity", "nm", "scope", "pruning_calibration"] {
            if let Some(v) = old.get(k) {
                info.insert(k.to_string(), v.clone());
            }
        }
    }
    Ok(Plan { quant: None, sparsity, portable: false, structure, info })
}

/// Quantizes the model in `src` to int8 and writes it to `out`. `log` receives one line per tensor
/// and the totals.
pub fn quantize(src: &ModelDir, out: &Path, opts: &QuantizeOptions, log: &mut dyn FnMut(&str)) -> Result<Summary> {
    crate::output::check_destination(&src.root, out, opts.force)?;
    let source = Source::load(src)?;
    if source.is_quantized() {
        return Err(CompressError::Invalid(format!(
            "{}: the model is already quantized; quantize its float original instead",
            src.root.display()
        )));
    }
    let mut plan = inherited(&source)?;
    plan.quant = Some(self::plan(&source, opts, log)?);
    plan.portable = opts.portable;
    encode::write(&source, &source.enc.model, &plan, out, opts.force, log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pare_formats::TensorFile;
    use pare_formats::quant_config::{CompressionConfig, PARE_EXTENSION_KEY};
    use pare_formats::writer::{TensorData, write_safetensors};
    use pare_models::testing::{TinySpec, write_tiny_bert};
    use pare_models::{SentenceEncoder, Weight};

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn embed(dir: &Path, texts: &[String]) -> Vec<Vec<f32>> {
        SentenceEncoder::load(&ModelDir::open(dir).unwrap()).unwrap().embed(texts).unwrap()
    }

    #[test]
    fn static_ranges_cover_every_channel_for_other_readers_while_pare_runs_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("dense");
        write_tiny_bert(&src, &TinySpec::default()).unwrap();
        let samples: Vec<String> =
            ["the model is small", "fast and small!", "a small model, and a fast one?", "the end"]
                .map(String::from)
                .to_vec();
        let source = Source::load(&ModelDir::open(&src).unwrap()).unwrap();
        let tokenize = |s: &str| -> Result<Vec<u32>> { Ok(source.enc.tokenize(s)?) };
        let ranges = calibrate(&source.enc.model, &tokenize, &samples, &mut |_| {}).unwrap();
        for symmetric in [false, true] {
            let out = dir.path().join(format!("static-{symmetric}"));
            let opts = QuantizeOptions {
                activations: ActivationMode::Static,
                symmetric_activations: symmetric,
                calibration: Some(("test".into(), samples.clone())),
                ..QuantizeOptions::default()
            };
            quantize(&ModelDir::open(&src).unwrap(), &out, &opts, &mut |_| {}).unwrap();
            let file = TensorFile::open(out.join("model.safetensors")).unwrap();
            let cc = CompressionConfig::from_config_file(&out.join("config.json")).unwrap();
            let written = SentenceEncoder::load(&ModelDir::open(&out).unwrap()).unwrap();
            let mode = if symmetric { ActQuant::DynamicSymmetric } else { ActQuant::DynamicAsymmetric };
            let mut clipped_by_pare = 0;
            let mut old_layout = Vec::new();
            for (name, lin) in written.model.linears() {
                let r = &ranges[&name];
                // compressed-tensors' range: [−128 − zp, 127 − zp] steps, over every channel's
                // calibrated minimum and maximum (within half a step: the zero point is an integer).
                let scale = file.f32(&format!("{name}.input_scale"), &[1]).unwrap()[0];
                let zp = if symmetric {
                    0
                } else {
                    i32::from(file.i8(&format!("{name}.input_zero_point"), &[1]).unwrap()[0])
                };
                let (lo, hi) = (-(128 + zp) as f32 * scale, (127 - zp) as f32 * scale);
                let slack = scale * 0.501;
                for c in 0..r.lo.len() {
                    assert!(
                        lo <= r.lo[c] + slack && hi >= r.hi[c] - slack,
                        "{name} channel {c}: [{lo}, {hi}] vs [{}, {}]",
                        r.lo[c],
                        r.hi[c]
                    );
                }
                // pare's range: without its outlier channels, recorded in its block and run.
                let outliers = &cc.pare.activation_outliers[&name];
                let (own_scale, own_zero) = {
                    let (l, h) = r.range_without(outliers);
                    row_params(l, h, mode)
                };
                let rec = cc.pare.activation_ranges[&name];
                assert_eq!(rec.input_scale, own_scale, "{name}");
                assert_eq!(rec.input_zero_point, if symmetric { 0 } else { own_zero - 128 }, "{name}");
                let Weight::Int8 { act, .. } = &lin.weight else { panic!("{name}: not int8") };
                assert_eq!(*act, ActQuant::Static { scale: own_scale, zero: own_zero }, "{name}");
                if own_scale < scale {
                    clipped_by_pare += 1;
                }
                // The layout written before pare recorded its own ranges: its ranges in the tensors.
                old_layout.push(TensorData::f32(format!("{name}.input_scale"), &[1], &[own_scale]));
                if !symmetric {
                    old_layout.push(TensorData::i8(
                        format!("{name}.input_zero_point"),
                        &[1],
                        &[(own_zero - 128) as i8],
                    ));
                }
            }
            assert!(clipped_by_pare > 0, "the outlier channels widen no range: the test proves nothing");
            // That older layout loads as before and gives the same embeddings, bit for bit.
            let old = dir.path().join(format!("old-{symmetric}"));
            copy_dir(&out, &old);
            let mut config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
            config[PARE_EXTENSION_KEY].as_object_mut().unwrap().remove("activation_ranges");
            std::fs::write(old.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
            let replaced: Vec<String> = old_layout.iter().map(|t| t.name.clone()).collect();
            for info in file.infos().iter().filter(|i| !replaced.contains(&i.name)) {
                old_layout.push(TensorData {
                    name: info.name.clone(),
                    dtype: file.dtype(&info.name).unwrap(),
                    shape: info.shape.clone(),
                    bytes: file.bytes(&info.name).unwrap().to_vec(),
                });
            }
            write_safetensors(&old.join("model.safetensors"), &old_layout, None).unwrap();
            assert_eq!(embed(&old, &samples), embed(&out, &samples), "symmetric {symmetric}");
        }
    }
}
