//! Quantizing a decoder GGUF to llama.cpp's block formats, tensor by tensor: each matrix is
//! dequantized from its stored type (the float baseline), quantized to the type its plan gives, and
//! streamed to the output, so memory holds one tensor at a time. Metadata, tokenizer and the tensors
//! that stay float (norms) are copied. Every tensor's fate is reported; a type whose blocks do not fit
//! a tensor's rows is an error naming the tensors, unless the user names the type to use instead.

use crate::error::{CompressError, Result};
use crate::ggml_quant;
use pare_formats::gguf::{GgmlType, GgufFile, MetaValue};
use pare_formats::gguf_write::{TensorSpec, write_gguf};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The GGML types `pare quantize` writes, by their lower-case names.
pub const SCHEMES: [(&str, GgmlType); 10] = [
    ("f32", GgmlType::F32),
    ("f16", GgmlType::F16),
    ("q8_0", GgmlType::Q8_0),
    ("q6_k", GgmlType::Q6_K),
    ("q5_1", GgmlType::Q5_1),
    ("q5_0", GgmlType::Q5_0),
    ("q5_k", GgmlType::Q5_K),
    ("q4_1", GgmlType::Q4_1),
    ("q4_0", GgmlType::Q4_0),
    ("q4_k", GgmlType::Q4_K),
];

/// The type of a scheme name (`q4_k`, `Q4_K`, ...).
pub fn parse_type(name: &str) -> Option<GgmlType> {
    SCHEMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, t)| *t)
}

/// What to store each tensor as.
#[derive(Clone, Debug, Default)]
pub struct GgufPlan {
    /// Type of every quantizable matrix without an override (`None`: keep the source's type,
    /// dequantized and requantized only where an override says).
    pub default: Option<GgmlType>,
    /// Type for matrices whose rows are not whole blocks of their planned type.
    pub fallback: Option<GgmlType>,
    /// Per-tensor types, by GGUF name.
    pub overrides: BTreeMap<String, GgmlType>,
    /// Importance weights (mean x² per input column) by GGUF tensor name.
    pub importance: BTreeMap<String, Vec<f32>>,
    /// Tensors already quantized (by GPTQ), by GGUF name: their type and stored bytes.
    pub prequantized: BTreeMap<String, (GgmlType, Vec<u8>)>,
    /// New values of tensors, by GGUF name (pruned or rescaled matrices, norms that absorbed a
    /// scale): a matrix is quantized from them instead of from the source; any other tensor is
    /// written from them as F32.
    pub values: BTreeMap<String, Vec<f32>>,
    /// Metadata keys added to the output (or replacing the source's).
    pub metadata: Vec<(String, MetaValue)>,
}

/// What became of one tensor.
#[derive(Clone, Debug)]
pub struct TensorFate {
    /// GGUF name.
    pub name: String,
    /// Shape, slowest dimension first (`[rows, cols]`).
    pub shape: Vec<usize>,
    /// Stored type in the source.
    pub from: GgmlType,
    /// Written type.
    pub to: GgmlType,
    /// Why, when it is not the plan's type.
    pub why: Option<String>,
}

/// What was written.
#[derive(Debug)]
pub struct GgufSummary {
    /// The output file.
    pub path: PathBuf,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorFate>,
    /// Bytes of the source and of the output.
    pub bytes: (u64, u64),
    /// Bits per weight of the matrices written (all of them, embeddings included).
    pub matrix_bpw: f64,
}

/// Whether llama.cpp would quantize a tensor: a matrix whose name ends in `weight`, not a norm.
pub fn quantizable(name: &str, dims: &[usize]) -> bool {
    dims.len() >= 2 && name.ends_with("weight") && !name.contains("_norm.weight")
}

/// llama.cpp's `general.file_type` for a file mostly of `ty`.
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q4_K => 14,
        GgmlType::Q5_K => 16,
        GgmlType::Q6_K => 18,
        _ => 0,
    }
}

/// Checks that a GGUF may be written to `out` from `src`: not an existing file (unless `force`),
/// not a directory, not the input itself. Commands call it before their long work.
pub fn check_output(src: &Path, out: &Path, force: bool) -> Result<()> {
    let bad = |m: String| Err(CompressError::Invalid(m));
    if out.exists() && !force {
        return bad(format!("{}: exists (use --force to replace it)", out.display()));
    }
    if out.is_dir() {
        return bad(format!("{}: is a directory; a GGUF output is a file", out.display()));
    }
    if let (Ok(a), Ok(b)) = (src.canonicalize(), out.canonicalize())
        && a == b
    {
        return bad(format!("{}: the output is the input model", out.display()));
    }
    Ok(())
}

/// Quantizes the GGUF at `src` into `out` as `plan` says; `log` gets one line per tensor.
pub fn quantize_gguf(
    src: &Path,
    out: &Path,
    plan: &GgufPlan,
    force: bool,
    log: &mut dyn FnMut(&str),
) -> Result<GgufSummary> {
    let bad = |m: String| CompressError::Invalid(m);
    check_output(src, out, force)?;
    let f = GgufFile::open(src)?;
    for (name, v) in &plan.values {
        match f.tensor(name) {
            None => {
                return Err(bad(format!(
                    "{}: new values given for tensor {name}, which the model does not have",
                    src.display()
                )));
            }
            Some(t) if t.numel() != v.len() => {
                return Err(bad(format!("new values of {name}: {} values for its {}", v.len(), t.numel())));
            }
            Some(_) if v.iter().any(|x| !x.is_finite()) => {
                return Err(bad(format!("new values of {name}: not all finite")));
            }
            Some(_) => {}
        }
    }
    for name in plan.overrides.keys().chain(plan.importance.keys()).chain(plan.prequantized.keys()) {
        match f.tensor(name) {
            None => {
                return Err(bad(format!(
                    "{}: the plan names tensor {name}, which the model does not have",
                    src.display()
                )));
            }
            Some(t) if !quantizable(&t.name, &t.dims) => {
                return Err(bad(format!(
                    "{}: the plan names {name}, which stays as stored (not a matrix)",
                    src.display()
                )));
            }
            Some(_) => {}
        }
    }

    // Decide every tensor's type first: a plan that does not fit fails before anything is written.
    let mut specs = Vec::with_capacity(f.tensors.len());
    let mut fates = Vec::with_capacity(f.tensors.len());
    let mut misfits = Vec::new();
    for t in &f.tensors {
        let mut why = None;
        let target = if quantizable(&t.name, &t.dims) {
            match plan.prequantized.get(&t.name).map(|p| p.0).or(plan.overrides.get(&t.name).copied()).or(plan.default)
            {
                Some(ty) => {
                    let (be, _) = ty.block().expect("a written type");
                    if t.dims[0].is_multiple_of(be) {
                        ty
                    } else if let Some(fb) =
                        plan.fallback.filter(|fb| t.dims[0].is_multiple_of(fb.block().expect("written").0))
                    {
                        why = Some(format!(
                            "rows of {} are not whole blocks of {be} for {}: --fallback {}",
                            t.dims[0],
                            ty.name(),
                            fb.name()
                        ));
                        fb
                    } else {
                        misfits.push((t.name.clone(), t.dims[0], ty));
                        ty
                    }
                }
                None if plan.values.contains_key(&t.name) => GgmlType::F32,
                None => t.ty,
            }
        } else if plan.values.contains_key(&t.name) {
            GgmlType::F32
        } else {
            t.ty
        };
        if t.ty.block().is_none() {
            return Err(bad(format!(
                "{}: tensor {} is stored as {}, which pare cannot read",
                src.display(),
                t.name,
                t.ty.name()
            )));
        }
        if let Some(imp) = plan.importance.get(&t.name)
            && imp.len() != t.dims[0]
        {
            return Err(bad(format!("importance of {}: {} values for its {} columns", t.name, imp.len(), t.dims[0])));
        }
        specs.push(TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ty: target });
        fates.push(why);
    }
    if let Some((_, cols, ty)) = misfits.first() {
        let (be, _) = ty.block().expect("written");
        let names: Vec<&str> = misfits.iter().take(4).map(|m| m.0.as_str()).collect();
        return Err(bad(format!(
            "{} of {} matrices have rows of {cols} values, not whole blocks of {be} for {} ({}{}); name a type for them with --fallback (q5_0, q8_0, ...) or choose a scheme with blocks of 32",
            misfits.len(),
            specs.iter().filter(|s| quantizable(&s.name, &s.dims)).count(),
            ty.name(),
            names.join(", "),
            if misfits.len() > 4 { ", ..." } else { "" }
        )));
    }
    let mut metadata = f.metadata.clone();
    let main = plan.default.unwrap_or(GgmlType::F32);
    let set = |m: &mut Vec<(String, MetaValue)>, k: &str, v: MetaValue| match m.iter_mut().find(|(key, _)| key == k) {
        Some(e) => e.1 = v,
        None => m.push((k.to_string(), v)),
    };
    if plan.default.is_some() {
        set(&mut metadata, "general.file_type", MetaValue::U32(file_type(main)));
    }
    set(&mut metadata, "general.quantization_version", MetaValue::U32(2));
    for (k, v) in &plan.metadata {
        set(&mut metadata, k, v.clone());
    }
    let tensors = f.tensors.clone();
    let mut summary = Vec::with_capacity(tensors.len());
    let mut produce = |i: usize| -> pare_formats::Result<Vec<u8>> {
        let (t, spec) = (&tensors[i], &specs[i]);
        let stored = f.bytes(t)?;
        let bytes = if let Some((_, b)) = plan.prequantized.get(&t.name) {
            b.clone()
        } else if spec.ty == t.ty && !plan.values.contains_key(&t.name) {
            stored.to_vec()
        } else if !quantizable(&t.name, &t.dims) {
            // A float tensor with new values (checked present above), written as F32.
            plan.values[&t.name].iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            let x = match plan.values.get(&t.name) {
                Some(v) => v.clone(),
                None => {
                    let mut x = vec![0f32; t.numel()];
                    pare_formats::gguf::dequantize(t.ty, stored, &mut x).map_err(|msg| {
                        pare_formats::FormatError::Config {
                            path: src.to_path_buf(),
                            msg: format!("tensor {}: {msg}", t.name),
                        }
                    })?;
                    x
                }
            };
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                return Err(pare_formats::FormatError::Config {
                    path: src.to_path_buf(),
                    msg: format!("tensor {} has a non-finite value at index {i}", t.name),
                });
            }
            let cols = t.dims[0];
            ggml_quant::quantize(spec.ty, &x, t.numel() / cols, cols, plan.importance.get(&t.name).map(Vec::as_slice))
                .map_err(|msg| pare_formats::FormatError::Config {
                path: src.to_path_buf(),
                msg: format!("tensor {}: {msg}", t.name),
            })?
        };
        let shape: Vec<usize> = t.dims.iter().rev().copied().collect();
        log(&format!(
            "{:<28} {:>14} {:>5} → {:<5} {:>10} bytes{}",
            t.name,
            format!("{shape:?}"),
            t.ty.name(),
            spec.ty.name(),
            bytes.len(),
            fates[i].as_ref().map(|w| format!("  ({w})")).unwrap_or_default()
        ));
        summary.push(TensorFate { name: t.name.clone(), shape, from: t.ty, to: spec.ty, why: fates[i].clone() });
        Ok(bytes)
    };
    write_gguf(out, &metadata, &specs, &mut produce)?;
    let (mut weights, mut bits) = (0f64, 0f64);
    for s in specs.iter().filter(|s| quantizable(&s.name, &s.dims)) {
        let n = s.dims.iter().product::<usize>() as f64;
        weights += n;
        bits += n * s.ty.bits_per_weight().unwrap_or(32.0);
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    Ok(GgufSummary {
        path: out.to_path_buf(),
        tensors: summary,
        bytes: (size(src), size(out)),
        matrix_bpw: bits / weights.max(1.0),
    })
}
