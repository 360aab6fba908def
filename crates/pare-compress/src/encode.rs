//! Writing a model as a plan says: Linear weights int8 or float, dense or in a compressed-tensors sparse
//! layout (or pruned but stored dense, the portable form); embedding tables int8 or float; per-layer
//! sizes after structured pruning; and the config blocks that describe it all. Every compression ends
//! here.

use crate::error::{CompressError, Result};
use crate::output::{check_destination, write_model_dir};
use crate::source::Source;
use pare_formats::quant_config::{
    InputRange, LayerShape, PARE_EXTENSION_KEY, PareExtension, QUANT_METHOD, QuantArgs, QuantScheme,
    QuantizationConfig, SparsityConfig,
};
use pare_formats::sparse::{Matrix, bitmask_encode, bitmask24_encode};
use pare_formats::writer::TensorData;
use pare_models::Architecture;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How activations of int8 Linears are quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationMode {
    /// Per token at run time.
    Dynamic,
    /// One range per Linear input, calibrated on sample text.
    Static,
}

/// How to store weights in int8.
#[derive(Clone, Debug)]
pub struct QuantPlan {
    /// Dynamic or static activations.
    pub activations: ActivationMode,
    /// Symmetric activations (zero point 128).
    pub symmetric: bool,
    /// Outlier input channels kept in f32, per Linear.
    pub outliers: BTreeMap<String, Vec<u32>>,
    /// Static activation (scale, u8 zero point) per Linear that pare runs: over the channels it
    /// quantizes (the outlier channels, kept in f32, left out). Recorded in the `pare_compression`
    /// block.
    pub static_ranges: BTreeMap<String, (f32, i32)>,
    /// Static activation (scale, u8 zero point) per Linear over every input channel, written as
    /// compressed-tensors' `input_scale` / `input_zero_point` for readers that quantize every channel
    /// (a Linear missing here gets its `static_ranges` entry).
    pub full_ranges: BTreeMap<String, (f32, i32)>,
    /// Linears kept in float.
    pub keep_float: Vec<String>,
    /// Quantize the embedding tables too.
    pub embeddings: bool,
    /// Description of the activation scheme.
    pub describe: String,
    /// Requested outliers per Linear.
    pub outliers_per_linear: usize,
    /// Calibration source and samples, if any.
    pub calibration: Option<(String, usize)>,
}

/// The sparsity pattern of pruned Linear weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseLayout {
    /// Any pattern (`sparse-bitmask`).
    Unstructured,
    /// N of every M consecutive inputs kept (`sparse-24-bitmask` for 2:4, `sparse-bitmask` otherwise).
    NM(usize, usize),
}

impl SparseLayout {
    /// compressed-tensors' name of the layout that stores it packed.
    pub fn packed_format(self) -> &'static str {
        match self {
            SparseLayout::NM(2, 4) => "sparse-24-bitmask",
            _ => "sparse-bitmask",
        }
    }

    /// compressed-tensors `sparsity_structure`.
    pub fn structure(self) -> String {
        match self {
            SparseLayout::Unstructured => "unstructured".into(),
            SparseLayout::NM(n, m) => format!("{n}:{m}"),
        }
    }

    /// Parses a `sparsity_structure`.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "unstructured" {
            return Some(SparseLayout::Unstructured);
        }
        let (n, m) = s.split_once(':')?;
        Some(SparseLayout::NM(n.parse().ok()?, m.parse().ok()?))
    }
}

/// Per-layer sizes after structured pruning.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Structure {
    /// Heads and neurons kept in each layer.
    pub layers: Vec<LayerShape>,
    /// Heads removed from each layer (original indices), for Hugging Face's `pruned_heads`.
    pub removed_heads: BTreeMap<usize, Vec<usize>>,
    /// FFN neurons removed from each layer (original indices).
    pub removed_neurons: BTreeMap<usize, Vec<usize>>,
}

/// What to write.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// int8 storage, if any.
    pub quant: Option<QuantPlan>,
    /// Sparsity pattern of the Linear weights, if pruned.
    pub sparsity: Option<SparseLayout>,
    /// Store pruned Linear weights dense (zeros written out) with `sparsity_config.format: "dense"`,
    /// which every compressed-tensors reader loads, instead of packed in a bitmask layout.
    pub portable: bool,
    /// Per-layer sizes (structured pruning).
    pub structure: Option<Structure>,
    /// Fields added to the `pare_compression` block (method, sparsity, calibration, ...).
    pub info: serde_json::Map<String, serde_json::Value>,
}

/// One tensor of the result, for logs.
#[derive(Clone, Debug)]
pub struct TensorLine {
    /// Module or tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// How it is stored.
    pub stored: String,
    /// Bytes of f32 it replaces.
    pub dense_bytes: usize,
    /// Bytes written.
    pub bytes: usize,
}

/// What [`write`] did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// One line per parameter tensor.
    pub tensors: Vec<TensorLine>,
    /// Size of the source model.safetensors.
    pub file_bytes_before: u64,
    /// Size of the output model.safetensors.
    pub file_bytes_after: u64,
}

/// Symmetric int8 of each row of `w[rows][cols]`: values in [−127, 127] and one scale per row.
pub fn quantize_rows_symmetric(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; rows * cols];
    let mut scales = vec![0f32; rows];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let scale = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        scales[r] = scale;
        if scale > 0.0 {
            for (o, v) in q[r * cols..(r + 1) * cols].iter_mut().zip(row) {
                *o = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
        }
    }
    (q, scales)
}

/// The kept positions of an N:M pattern: in every group of `m` consecutive inputs, the `n` entries of
/// largest magnitude (ties to the lower index) — the nonzeros of a pruned weight, completed with zeros
/// when a group has fewer.
fn nm_kept(values: &[f32], n: usize, m: usize) -> Vec<bool> {
    let mut kept = vec![false; values.len()];
    for (g, group) in values.chunks(m).enumerate() {
        let mut idx: Vec<usize> = (0..group.len()).collect();
        idx.sort_by(|&a, &b| group[b].abs().total_cmp(&group[a].abs()).then(a.cmp(&b)));
        for &i in idx.iter().take(n) {
            kept[g * m + i] = true;
        }
    }
    kept
}

fn linear_tensors(
    name: &str,
    w: &[f32],
    out: usize,
    inp: usize,
    plan: &Plan,
    quantized: bool,
) -> Result<(Vec<TensorData>, String)> {
    let (matrix, mut extra, stored) = if quantized {
        let (q, scales) = quantize_rows_symmetric(w, out, inp);
        (Matrix::I8(q), vec![TensorData::f32(format!("{name}.weight_scale"), &[out, 1], &scales)], "I8")
    } else {
        (Matrix::F32(w.to_vec()), Vec::new(), "F32")
    };
    // The pattern the config claims holds, however the weights are stored.
    let kept24 = (plan.sparsity == Some(SparseLayout::NM(2, 4)) && inp.is_multiple_of(4)).then(|| nm_kept(w, 2, 4));
    if let Some(kept) = &kept24
        && let Some(g) =
            w.chunks(4).zip(kept.chunks(4)).position(|(v, k)| v.iter().zip(k).any(|(v, k)| *v != 0.0 && !k))
    {
        return Err(CompressError::Invalid(format!("{name}: group {g} has more than 2 nonzeros in 4")));
    }
    let (mut tensors, how) = match (plan.sparsity.filter(|_| !plan.portable), &kept24) {
        (None, _) => (
            vec![match &matrix {
                Matrix::I8(q) => TensorData::i8(format!("{name}.weight"), &[out, inp], q),
                Matrix::F32(v) => TensorData::f32(format!("{name}.weight"), &[out, inp], v),
            }],
            format!("{stored} dense"),
        ),
        (Some(_), Some(kept)) => {
            (bitmask24_encode(name, &matrix, kept, out, inp), format!("{stored} sparse-24-bitmask"))
        }
        (Some(_), None) => (bitmask_encode(name, &matrix, out, inp), format!("{stored} sparse-bitmask")),
    };
    tensors.append(&mut extra);
    Ok((tensors, how))
}

/// Writes `model` (the source's model, possibly modified) to `out` as `plan` says.
pub fn write(
    src: &Source,
    model: &dyn Architecture,
    plan: &Plan,
    out: &Path,
    force: bool,
    log: &mut dyn FnMut(&str),
) -> Result<Summary> {
    check_destination(&src.dir.root, out, force)?;
    let mut tensors: Vec<TensorData> = Vec::new();
    let mut lines = Vec::new();
    let quant = plan.quant.as_ref();
    // Embeddings and the other float parameters.
    let tables = model.embedding_tables();
    for (name, rows, h, dense) in &tables {
        let (rows, h) = (*rows, *h);
        let before = tensors.len();
        if quant.is_some_and(|q| q.embeddings) {
            let (q, scales) = quantize_rows_symmetric(dense, rows, h);
            tensors.push(TensorData::i8(format!("{name}.weight"), &[rows, h], &q));
            tensors.push(TensorData::f32(format!("{name}.weight_scale"), &[rows, 1], &scales));
        } else {
            tensors.push(TensorData::f32(format!("{name}.weight"), &[rows, h], dense));
        }
        let bytes = tensors[before..].iter().map(|t| t.bytes.len()).sum();
        let stored = if quant.is_some_and(|q| q.embeddings) { "I8 rows" } else { "F32" };
        lines.push(TensorLine {
            name: format!("{name}.weight"),
            shape: vec![rows, h],
            stored: stored.into(),
            dense_bytes: rows * h * 4,
            bytes,
        });
    }
    for (name, shape, v) in model.other_parameters() {
        tensors.push(TensorData::f32(name, &shape, &v));
    }
    // Linears.
    for (l, short) in model.linear_ids() {
        let (name, lin) = (model.linear_name(l, short), model.linear(l, short));
        let (out_f, in_f) = (lin.out_features(), lin.in_features());
        let w = model.export_weight(l, short);
        let quantized = quant.is_some_and(|q| !q.keep_float.contains(&name));
        let (mut t, stored) = linear_tensors(&name, &w, out_f, in_f, plan, quantized)?;
        if let (Some(q), true) = (quant, quantized)
            && let Some(&(scale, zero)) = q.full_ranges.get(&name).or(q.static_ranges.get(&name))
        {
            t.push(TensorData::f32(format!("{name}.input_scale"), &[1], &[scale]));
            if !q.symmetric {
                t.push(TensorData::i8(format!("{name}.input_zero_point"), &[1], &[(zero - 128) as i8]));
            }
        }
        let bytes = t.iter().map(|t| t.bytes.len()).sum();
        let nnz = w.iter().filter(|v| **v != 0.0).count();
        let line = TensorLine {
            name: format!("{name}.weight"),
            shape: vec![out_f, in_f],
            stored: format!("{stored}, density {:.3}", nnz as f64 / w.len().max(1) as f64),
            dense_bytes: w.len() * 4,
            bytes,
        };
        log(&format!(
            "{:<48} {:>12} {:<40} {:>9} → {:>9} bytes",
            line.name,
            format!("{:?}", line.shape),
            line.stored,
            line.dense_bytes,
            line.bytes
        ));
        lines.push(line);
        tensors.extend(t);
        if model.has_bias() {
            tensors.push(TensorData::f32(format!("{name}.bias"), &[out_f], &lin.bias));
        }
    }
    // Tensors of the source that are not parameters (e.g. BERT's position_ids buffer), under the
    // prefix the source's names carry (a checkpoint saved with a task head nests the model in one).
    let written: HashSet<String> = tensors.iter().map(|t| t.name.clone()).collect();
    let prefix: String = tables
        .first()
        .and_then(|(t, ..)| {
            let suffix = format!("{t}.weight");
            src.file.infos().iter().find_map(|i| i.name.strip_suffix(suffix.as_str()).map(str::to_string))
        })
        .unwrap_or_default();
    let modules: HashSet<String> = model
        .linears()
        .into_iter()
        .map(|(n, _)| n)
        .chain(tables.iter().map(|t| t.0.clone()))
        .chain(model.other_parameters().iter().map(|p| module_of(&p.0)))
        .collect();
    // Modules the model never runs for its task (BERT's pooler, a dense + tanh over [CLS], for
    // sentence embeddings pooled from the last hidden state) are copied as they are and listed in the
    // compression blocks' `ignore`: a loader that builds the whole architecture finds them, rather than
    // inventing random ones (which `pooler_output` would then return without a word).
    let unused = model.unused_modules();
    let mut unused_float: Vec<String> = Vec::new();
    let mut dropped = Vec::new();
    for info in src.file.infos() {
        let bare = info.name.strip_prefix(prefix.as_str()).unwrap_or(&info.name);
        if written.contains(bare) || modules.contains(&module_of(bare)) {
            continue;
        }
        if unused.iter().any(|u| bare.starts_with(&format!("{u}."))) && !unused_float.contains(&module_of(bare)) {
            unused_float.push(module_of(bare));
        }
        tensors.push(TensorData {
            name: bare.to_string(),
            dtype: src.file.dtype(&info.name)?,
            shape: info.shape.clone(),
            bytes: src.file.bytes(&info.name)?.to_vec(),
        });
    }

    if !unused_float.is_empty() {
        log(&format!("kept in float (unused for sentence embeddings): {}", unused_float.join(", ")));
    }
    // A source an earlier pare wrote may have dropped them: its record carries over, so that they stay
    // in the quantization block's `ignore`.
    let recorded: Vec<&str> = src
        .config
        .get(PARE_EXTENSION_KEY)
        .and_then(|b| b.get("dropped_unused"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for name in recorded {
        if !written.contains(name) && !dropped.iter().any(|d| d == name) {
            dropped.push(name.to_string());
        }
    }
    let config = config_json(src, model, plan, &dropped, &unused_float)?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let out_dir = write_model_dir(&src.dir.root, out, &config, &tensors, metadata)?;
    let before = std::fs::metadata(src.dir.file("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    let after = std::fs::metadata(out_dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    log(&format!(
        "model.safetensors {:.1} MB → {:.1} MB ({:.3}×)",
        before as f64 / 1e6,
        after as f64 / 1e6,
        after as f64 / before.max(1) as f64
    ));
    if let Some(layout) = plan.sparsity.filter(|_| !plan.portable) {
        log(&bitmask_warning(layout));
    }
    Ok(Summary { out_dir, tensors: lines, file_bytes_before: before, file_bytes_after: after })
}

/// The warning for an output stored in a bitmask layout: who reads it, and what happens elsewhere.
pub fn bitmask_warning(layout: SparseLayout) -> String {
    format!(
        "warning: the pruned Linears are stored in the {} layout, which pare and compressed-tensors ≤ 0.14 \
         read; transformers 5 with compressed-tensors ≥ 0.15 loads this model without an error but with \
         random weights in their place (--portable stores them dense, which loads there)",
        layout.packed_format()
    )
}

/// The module a tensor name belongs to (`pooler.dense.weight` → `pooler.dense`).
fn module_of(name: &str) -> String {
    name.rsplit_once('.').map_or(name.to_string(), |(m, _)| m.to_string())
}

/// config.json of the result: the source's, with the compression blocks replaced.
fn config_json(
    src: &Source,
    model: &dyn Architecture,
    plan: &Plan,
    dropped: &[String],
    unused_float: &[String],
) -> Result<serde_json::Value> {
    let mut config = src.config.clone();
    let obj = config.as_object_mut().ok_or_else(|| CompressError::Invalid("config.json is not an object".into()))?;
    for k in ["quantization_config", "compression_config", PARE_EXTENSION_KEY, "pruned_heads"] {
        obj.remove(k);
    }
    let linears = model.linears();
    let total: usize = linears.iter().map(|(_, l)| l.out_features() * l.in_features()).sum();
    let zeros: usize = linears.iter().map(|(_, l)| l.weight.to_dense().iter().filter(|v| **v == 0.0).count()).sum();
    let sparsity = plan.sparsity.map(|layout| SparsityConfig {
        format: if plan.portable { "dense".into() } else { layout.packed_format().into() },
        global_sparsity: zeros as f64 / total.max(1) as f64,
        sparsity_structure: layout.structure(),
        targets: Some(vec!["Linear".into()]),
        ignore: Some(unused_float.to_vec()),
    });
    // Modules left in float, unused ones copied in float, and dropped ones a loader would otherwise
    // build quantized (BERT's pooler is a Linear the `Linear` target covers).
    let mut qc = match plan.quant.as_ref() {
        Some(q) => {
            let mut ignore = q.keep_float.clone();
            for m in dropped.iter().map(|d| module_of(d)).chain(unused_float.iter().cloned()) {
                if !ignore.contains(&m) {
                    ignore.push(m);
                }
            }
            let static_acts = q.activations == ActivationMode::Static;
            let mut groups = BTreeMap::new();
            groups.insert(
                "group_0".to_string(),
                QuantScheme {
                    targets: vec!["Linear".into()],
                    weights: Some(QuantArgs::int8(true, "channel", false, Some("minmax"))),
                    input_activations: Some(QuantArgs::int8(
                        q.symmetric,
                        if static_acts { "tensor" } else { "token" },
                        !static_acts,
                        if static_acts { Some("minmax") } else { None },
                    )),
                    output_activations: None,
                    format: Some("int-quantized".into()),
                },
            );
            if q.embeddings {
                groups.insert(
                    "group_1".to_string(),
                    QuantScheme {
                        targets: vec!["Embedding".into()],
                        weights: Some(QuantArgs::int8(true, "channel", false, Some("minmax"))),
                        input_activations: None,
                        output_activations: None,
                        format: Some("int-quantized".into()),
                    },
                );
            }
            Some(QuantizationConfig {
                quant_method: QUANT_METHOD.into(),
                format: "int-quantized".into(),
                quantization_status: "compressed".into(),
                config_groups: groups,
                ignore,
                sparsity_config: None,
            })
        }
        None => None,
    };
    if let Some(s) = sparsity {
        match qc.as_mut() {
            Some(q) => q.sparsity_config = Some(s),
            None => qc = Some(QuantizationConfig::sparsity_only(s)),
        }
    }
    if let Some(qc) = qc {
        let mut block = serde_json::to_value(&qc).map_err(|e| CompressError::Invalid(e.to_string()))?;
        if qc.is_quantized() {
            // transformers iterates `ignore` whatever it holds.
            if block.get("ignore").is_none() {
                block["ignore"] = serde_json::json!([]);
            }
            // transformers then widens the int8 weights once at load (what it would do at the first
            // call anyway on CPU), which sentence-transformers needs: it calls `forward` directly.
            block["dequantize"] = true.into();
        }
        obj.insert("quantization_config".into(), block);
    }
    let ext = PareExtension {
        activation_outliers: plan.quant.as_ref().map(|q| q.outliers.clone()).unwrap_or_default(),
        activation_ranges: plan
            .quant
            .as_ref()
            .filter(|q| q.activations == ActivationMode::Static)
            .map(|q| {
                q.static_ranges
                    .iter()
                    .filter(|(n, _)| !q.keep_float.contains(n))
                    .map(|(n, &(scale, zero))| {
                        let zero_point = if q.symmetric { 0 } else { zero - 128 };
                        (n.clone(), InputRange { input_scale: scale, input_zero_point: zero_point })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        layers: plan.structure.as_ref().map(|st| st.layers.clone()).unwrap_or_default(),
    };
    let mut block = serde_json::to_value(&ext).map_err(|e| CompressError::Invalid(e.to_string()))?;
    let b = block.as_object_mut().expect("a struct serialises to an object");
    b.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    if let Some(q) = plan.quant.as_ref() {
        b.insert("scheme".into(), "int8".into());
        b.insert("activations".into(), q.describe.clone().into());
        b.insert("outliers_per_linear".into(), q.outliers_per_linear.into());
        b.insert(
            "calibration".into(),
            q.calibration
                .as_ref()
                .map_or(serde_json::Value::Null, |(s, n)| serde_json::json!({"source": s, "samples": n})),
        );
    }
    for (k, v) in &plan.info {
        b.insert(k.clone(), v.clone());
    }
    if !dropped.is_empty() {
        b.insert("dropped_unused".into(), serde_json::json!(dropped));
    }
    if plan.quant.is_some()
        || plan.sparsity.is_some()
        || plan.structure.is_some()
        || !plan.info.is_empty()
        || !dropped.is_empty()
    {
        obj.insert(PARE_EXTENSION_KEY.into(), block);
    }
    if let Some(st) = plan.structure.as_ref() {
        let ph: serde_json::Map<String, serde_json::Value> = st
            .removed_heads
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(l, v)| (l.to_string(), serde_json::json!(v)))
            .collect();
        obj.insert("pruned_heads".into(), serde_json::Value::Object(ph));
        let rn: serde_json::Map<String, serde_json::Value> =
            st.removed_neurons.iter().map(|(l, v)| (l.to_string(), serde_json::json!(v))).collect();
        if let Some(b) = obj.get_mut(PARE_EXTENSION_KEY).and_then(|b| b.as_object_mut()) {
            b.insert("removed_neurons".into(), serde_json::Value::Object(rn));
        }
    }
    Ok(config)
}
