//! `pare quantize`: for encoders, int8 weights, embeddings and activations, written as a
//! compressed-tensors model; for decoders (GGUF), llama.cpp's block formats, written as GGUF.

use crate::common;
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use pare_compress::quantize::{ActivationMode, QuantizeOptions};
use std::path::PathBuf;

/// Quantization schemes.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Scheme {
    /// Encoders: int8 weights (per output channel, symmetric), int8 embedding rows, u8 activations.
    Int8,
    /// Decoders: llama.cpp's Q8_0 (blocks of 32, 8.5 bits per weight).
    #[value(name = "q8_0")]
    Q8_0,
    /// Decoders: Q6_K (super-blocks of 256, 6.56 bits).
    #[value(name = "q6_k")]
    Q6K,
    /// Decoders: Q5_1 (blocks of 32 with a minimum, 6 bits).
    #[value(name = "q5_1")]
    Q5_1,
    /// Decoders: Q5_0 (blocks of 32, 5.5 bits).
    #[value(name = "q5_0")]
    Q5_0,
    /// Decoders: Q5_K (super-blocks of 256, 5.5 bits).
    #[value(name = "q5_k")]
    Q5K,
    /// Decoders: Q4_1 (blocks of 32 with a minimum, 5 bits).
    #[value(name = "q4_1")]
    Q4_1,
    /// Decoders: Q4_0 (blocks of 32, 4.5 bits).
    #[value(name = "q4_0")]
    Q4_0,
    /// Decoders: Q4_K (super-blocks of 256, 4.5 bits).
    #[value(name = "q4_k")]
    Q4K,
    /// Decoders: a format per matrix (Q4_0 to Q8_0, K-quants where rows allow) chosen by measured
    /// sensitivity to minimise the loss at `--bpw` bits per weight, embeddings included.
    Mixed,
    /// Decoders: every matrix as float32 (the float baseline, e.g. for other quantizers).
    #[value(name = "f32")]
    F32,
    /// Decoders: every matrix as float16.
    #[value(name = "f16")]
    F16,
    /// Decoders: the block matrices as group-wise symmetric int4 (one f16 scale per `--group`
    /// inputs), written as a Hugging Face Llama directory in compressed-tensors' pack-quantized layout.
    Int4,
}

impl Scheme {
    /// The GGML type of a decoder scheme.
    fn ggml(self) -> Option<pare_formats::gguf::GgmlType> {
        if self == Scheme::Mixed || self == Scheme::Int4 {
            return None;
        }
        let name = self.to_possible_value()?.get_name().to_string();
        pare_compress::gguf_quant::parse_type(&name)
    }
}

/// When activation ranges are decided.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Activations {
    /// Per token, at run time (default).
    Dynamic,
    /// One range per Linear input, calibrated on sample text (`--calibrate`, or the built-in set).
    Static,
}

/// Options of `pare quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Model directory or zoo name (float).
    pub model: String,
    /// Quantization scheme.
    #[arg(long, value_enum)]
    pub scheme: Scheme,
    /// Calibration text, a file (one sample per line) or `builtin:wordnet` / `builtin:kjv`. Encoders:
    /// implies `--activations static`. Decoders: weights are rounded by the importance of their input
    /// columns (mean x² over these tokens, llama.cpp's imatrix) instead of to nearest; with `--gptq`, GPTQ
    /// calibrates on them.
    #[arg(long, value_name = "FILE|builtin:NAME")]
    pub calibrate: Option<String>,
    /// Activation quantization: dynamic per token, or static per tensor.
    #[arg(long, value_enum)]
    pub activations: Option<Activations>,
    /// Symmetric activations instead of asymmetric (zero point).
    #[arg(long)]
    pub act_symmetric: bool,
    /// Keep this Linear layer in float (repeatable); `embeddings` keeps the embedding tables.
    #[arg(long, value_name = "NAME")]
    pub keep_float: Vec<String>,
    /// Input channels per Linear kept in f32 at run time (the largest calibrated activations); 0: none.
    #[arg(long, default_value_t = pare_compress::quantize::DEFAULT_OUTLIERS as u16, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub outliers: u16,
    /// Decoders: GPTQ (error feedback through the calibration inputs' Hessian, layer by layer) for the
    /// 32-value block schemes (q4_0, q4_1, q5_0, q5_1, q8_0), on `--calibrate` or the built-in text.
    #[arg(long)]
    pub gptq: bool,
    /// Decoders, with `--gptq`: act-order (columns quantized by decreasing input energy, every block's
    /// grid chosen first from the weights as given).
    #[arg(long)]
    pub act_order: bool,
    /// Decoders: activation-aware scaling (AWQ) before quantization: per-channel scales searched on
    /// `--calibrate` (or the built-in text) and folded into the RMSNorms and `ffn_up`; combines with
    /// `--gptq` and `--scheme mixed`.
    #[arg(long)]
    pub awq: bool,
    /// Decoders: calibration samples used (the first this many of `--calibrate`).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Decoders: the type of matrices whose rows are not whole blocks of the scheme's (K-quants need
    /// rows of 256); without it such matrices are an error.
    #[arg(long, value_name = "TYPE")]
    pub fallback: Option<Scheme>,
    /// Decoders: a JSON object of per-tensor types (`{"blk.0.ffn_down.weight": "q6_k", ...}`) that
    /// override the scheme.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Decoders, `--scheme mixed`: the bits per weight to reach over every matrix, embeddings included.
    #[arg(long, value_name = "BITS", allow_negative_numbers = true)]
    pub bpw: Option<f64>,
    /// Decoders, `--scheme mixed`: calibration tokens (in windows of 128) on which each matrix's
    /// sensitivity is measured.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub sensitivity_tokens: usize,
    /// Decoders, `--scheme mixed`: reuse the sensitivities stored in a GGUF that `--scheme mixed`
    /// wrote from the same model (its `pare.quantize.plan`) instead of measuring them again.
    #[arg(long, value_name = "GGUF")]
    pub sensitivity_from: Option<PathBuf>,
    /// Decoders, `--scheme int4`: inputs per scale (a multiple of 32 dividing every matrix's inputs).
    #[arg(long, value_name = "N")]
    pub group: Option<usize>,
    /// int8 of a pruned encoder: store its weights dense, zeros included (`sparsity_config` format
    /// `dense`), so that current transformers and compressed-tensors load them; without it they keep a
    /// bitmask layout, which only pare and compressed-tensors ≤ 0.14 read.
    #[arg(long)]
    pub portable: bool,
    /// Output directory (encoders, and decoders' int4) or GGUF file (decoders).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output directory if it exists and is not empty.
    #[arg(long)]
    pub force: bool,
}

/// Runs `pare quantize`.
pub fn run(a: &QuantizeArgs) -> Result<()> {
    if a.group.is_some() && a.scheme != Scheme::Int4 {
        bail!("--group sets the groups of --scheme int4");
    }
    if a.portable && a.scheme != Scheme::Int8 {
        bail!("--portable applies to --scheme int8 of a pruned encoder; the other schemes store every matrix dense");
    }
    if a.scheme == Scheme::Int4 {
        return run_int4(a);
    }
    if a.scheme != Scheme::Int8 {
        return run_gguf(a);
    }
    if a.fallback.is_some()
        || a.plan.is_some()
        || a.gptq
        || a.act_order
        || a.awq
        || a.samples.is_some()
        || a.bpw.is_some()
    {
        bail!(
            "--fallback, --plan, --gptq, --act-order, --awq, --samples and --bpw apply to decoder (GGUF) schemes, not int8"
        );
    }
    let path = pare_formats::zoo::resolve(&a.model, &mut |m| eprintln!("{m}"))?;
    if crate::decoder::is_decoder(&path) {
        bail!(
            "{}: a decoder; its schemes are llama.cpp's block formats (q8_0, q6_k, q5_1, q5_0, q5_k, q4_1, q4_0, q4_k, f32, f16), not int8",
            a.model
        );
    }
    let activations = match (a.activations, &a.calibrate) {
        (Some(Activations::Dynamic), Some(_)) => {
            bail!("--calibrate calibrates static activations; it contradicts --activations dynamic")
        }
        (Some(Activations::Static), _) | (None, Some(_)) => ActivationMode::Static,
        _ => ActivationMode::Dynamic,
    };
    let calibration = match &a.calibrate {
        Some(spec) => Some((spec.clone(), pare_compress::calibration::resolve(spec)?)),
        None => None,
    };
    let dir = common::model_dir(&a.model)?;
    let opts = QuantizeOptions {
        activations,
        symmetric_activations: a.act_symmetric,
        calibration,
        keep_float: a.keep_float.clone(),
        outliers: a.outliers.into(),
        portable: a.portable,
        force: a.force,
    };
    let summary = pare_compress::quantize(&dir, &a.output, &opts, &mut |m| eprintln!("{m}"))?;
    println!("{}", summary.out_dir.display());
    Ok(())
}

/// `pare quantize --scheme int4` of a decoder GGUF: a Hugging Face directory, pack-quantized.
fn run_int4(a: &QuantizeArgs) -> Result<()> {
    for (set, flag) in [
        (a.activations.is_some(), "--activations"),
        (a.act_symmetric, "--act-symmetric"),
        (!a.keep_float.is_empty(), "--keep-float"),
        (a.calibrate.is_some(), "--calibrate"),
        (a.gptq, "--gptq"),
        (a.act_order, "--act-order"),
        (a.awq, "--awq"),
        (a.samples.is_some(), "--samples"),
        (a.fallback.is_some(), "--fallback"),
        (a.plan.is_some(), "--plan"),
        (a.bpw.is_some(), "--bpw"),
    ] {
        if set {
            bail!("{flag} does not apply to --scheme int4 (round-to-nearest per group)");
        }
    }
    let path = pare_formats::zoo::resolve(&a.model, &mut |m| eprintln!("{m}"))?;
    let Some(gguf) = common::gguf_path(&path) else {
        bail!("{}: --scheme int4 quantizes a decoder GGUF; this is not one", a.model);
    };
    let group = a.group.unwrap_or(32);
    let out = pare_compress::decompress::quantize_int4_hf(&gguf, &a.output, a.force, group, &mut |m| eprintln!("{m}"))?;
    println!("{}", out.display());
    Ok(())
}

/// `pare quantize` of a decoder GGUF to a block format.
fn run_gguf(a: &QuantizeArgs) -> Result<()> {
    let mixed = a.scheme == Scheme::Mixed;
    match (mixed, a.bpw) {
        (true, None) => bail!("--scheme mixed needs --bpw (the bits per weight to reach, e.g. 4.5)"),
        (false, Some(_)) => bail!("--bpw sets the budget of --scheme mixed"),
        _ => {}
    }
    // Mixed plans start from Q4_0, the smallest format that fits every matrix of 32-value rows.
    let ty = a.scheme.ggml().unwrap_or(pare_formats::gguf::GgmlType::Q4_0);
    for (set, flag) in [
        (a.activations.is_some(), "--activations"),
        (a.act_symmetric, "--act-symmetric"),
        (!a.keep_float.is_empty(), "--keep-float"),
    ] {
        if set {
            bail!("{flag} applies to int8 encoders, not to the {} decoder scheme", ty.name());
        }
    }
    let path = pare_formats::zoo::resolve(&a.model, &mut |m| eprintln!("{m}"))?;
    let Some(gguf) = common::gguf_path(&path) else {
        bail!(
            "{}: --scheme {} quantizes a decoder GGUF; this is not one (int8 is the encoders' scheme)",
            a.model,
            ty.name().to_lowercase()
        );
    };
    pare_compress::gguf_quant::check_output(&gguf, &a.output, a.force)?;
    let fallback = match a.fallback {
        Some(Scheme::Int8) => bail!("--fallback int8: the fallback is a block format (q5_0, q8_0, ...)"),
        Some(s) => s.ggml(),
        None => None,
    };
    let mut overrides = std::collections::BTreeMap::new();
    if let Some(p) = &a.plan {
        let text =
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read --plan {}: {e}", p.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--plan {}: not JSON: {e}", p.display()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("--plan {}: not a JSON object of tensor → type", p.display()))?;
        for (name, t) in obj {
            let t = t
                .as_str()
                .and_then(pare_compress::gguf_quant::parse_type)
                .ok_or_else(|| anyhow::anyhow!("--plan {}: {name}: {t} is not a type pare writes", p.display()))?;
            overrides.insert(name.clone(), t);
        }
    }
    // A pruned model's zeros survive only formats whose grid holds an exact zero (and GPTQ then keeps
    // them pinned); others would fill them in while the file still claimed the pruning.
    let pruned_source = pare_formats::gguf::GgufFile::open(&gguf)?.metadata.iter().any(|(k, _)| k == "pare.prune");
    if pruned_source {
        use pare_formats::gguf::GgmlType::{F16, F32};
        let keeps = |t: pare_formats::gguf::GgmlType| matches!(t, F16 | F32) || pare_compress::gptq::holds_zero(t);
        let bad = if mixed {
            Some("mixed".to_string())
        } else {
            std::iter::once(ty)
                .chain(overrides.values().copied())
                .chain(fallback)
                .find(|t| !keeps(*t))
                .map(|t| t.name())
        };
        if let Some(t) = bad {
            bail!("{}: a pruned model (pare.prune); its zeros survive q4_0, q5_0, q8_0, f16 and f32, not {t}", a.model);
        }
    }
    let n_samples = a.samples.unwrap_or(512);
    if n_samples == 0 {
        bail!("--samples 0: calibration needs at least one sample");
    }
    if a.samples.is_some() && a.calibrate.is_none() && !a.gptq && !a.awq && !mixed {
        bail!("--samples applies to --calibrate, --gptq, --awq or --scheme mixed");
    }
    if a.act_order && !a.gptq {
        bail!("--act-order is an option of --gptq");
    }
    if a.awq && matches!(ty, pare_formats::gguf::GgmlType::F32 | pare_formats::gguf::GgmlType::F16) {
        bail!("--awq scales weights for a block format; {} keeps them as they are", ty.name());
    }
    let mut importance = std::collections::BTreeMap::new();
    let mut metadata = Vec::new();
    if mixed {
        let (types, json) = mixed_plan(a, &gguf, n_samples, &overrides)?;
        metadata.push(("pare.quantize.plan".to_string(), pare_formats::gguf::MetaValue::String(json.to_string())));
        overrides = types.0;
        importance = types.1;
    } else if let Some(spec) = a.calibrate.as_ref().filter(|_| !a.gptq && !a.awq) {
        // With --gptq the calibration text feeds GPTQ, whose grid search already weighs by the inputs.
        // Importance of each matrix's input columns (mean x² over the calibration tokens), from the
        // model as stored: its products are those of the float baseline.
        let samples = pare_compress::calibration::resolve(spec)?;
        let samples = &samples[..samples.len().min(n_samples)];
        let d = crate::decoder::open_path(&gguf, false)?;
        let tokenize = |s: &str| -> pare_compress::Result<Vec<u32>> { Ok(d.tok.encode_untruncated(s)?) };
        eprintln!("importance of every matrix's inputs from {} samples of {spec}", samples.len());
        let imp = pare_compress::quantize::importance(&d.llama, &tokenize, samples, &mut |m| eprintln!("{m}"))?;
        importance = imp.into_iter().map(|(k, v)| (format!("{k}.weight"), v)).collect();
    }
    let mut values = std::collections::BTreeMap::new();
    let mut scaled = None;
    if a.awq {
        let (spec, samples) = calibration_text(a, n_samples)?;
        let samples = &samples[..];
        let mut d = crate::decoder::open_path(&gguf, true)?;
        let mut cal = calibrate(&d, samples, &spec)?;
        eprintln!("AWQ on {} samples ({} tokens) of {spec}", cal.samples, cal.tokens());
        let types = |name: &str| -> Option<pare_formats::gguf::GgmlType> {
            Some(overrides.get(&format!("{name}.weight")).copied().unwrap_or(ty))
        };
        let groups = pare_compress::awq::scale_model(&mut d.llama, &mut cal, &types, &mut |m| eprintln!("{m}"))?;
        let scaled_groups = groups.iter().filter(|g| g.alpha > 0.0).count();
        eprintln!("AWQ scaled {scaled_groups} of {} groups", groups.len());
        metadata.push((
            "pare.quantize.awq".to_string(),
            pare_formats::gguf::MetaValue::String(
                serde_json::json!({
                    "calibration": spec, "samples": cal.samples, "tokens": cal.tokens(),
                    "groups": groups.iter().map(|g| serde_json::json!({"linears": g.linears, "alpha": g.alpha, "error_ratio": g.error_ratio})).collect::<Vec<_>>(),
                })
                .to_string(),
            ),
        ));
        // New values for the tensors the scales changed (the others keep their stored bytes).
        use pare_models::Architecture;
        let src = pare_formats::gguf::GgufFile::open(&gguf)?;
        let changed = |name: &str, v: &[f32]| -> Result<bool> { Ok(src.dequantize(name)? != v) };
        for (name, lin) in d.llama.linears() {
            let (name, w) = (format!("{name}.weight"), lin.weight.to_dense());
            if changed(&name, &w)? {
                values.insert(name, w);
            }
        }
        for (name, _, v) in d.llama.other_parameters() {
            if changed(&name, &v)? {
                values.insert(name, v);
            }
        }
        {
            // Rounding (of whatever GPTQ does not write) weighs the scaled inputs.
            let tokenize = |s: &str| -> pare_compress::Result<Vec<u32>> { Ok(d.tok.encode_untruncated(s)?) };
            let imp = pare_compress::quantize::importance(&d.llama, &tokenize, samples, &mut |m| eprintln!("{m}"))?;
            importance = imp.into_iter().map(|(k, v)| (format!("{k}.weight"), v)).collect();
        }
        scaled = Some(d);
    }
    let mut prequantized = std::collections::BTreeMap::new();
    if a.gptq {
        if !pare_compress::gptq::supports(ty) {
            bail!(
                "--gptq writes the 32-value block schemes (q4_0, q4_1, q5_0, q5_1, q8_0), not {}",
                ty.name().to_lowercase()
            );
        }
        let (spec, samples) = calibration_text(a, n_samples)?;
        let mut d = match scaled.take() {
            Some(d) => d,
            None => crate::decoder::open_path(&gguf, true)?,
        };
        if mixed {
            // GPTQ's stored bytes replace the importance-weighted rounding of the matrices it writes.
            eprintln!(
                "GPTQ on the mixed plan's 32-value block formats; the other matrices keep importance-weighted rounding"
            );
        }
        let mut cal = calibrate(&d, &samples, &spec)?;
        eprintln!("GPTQ on {} samples ({} tokens) of {spec}", cal.samples, cal.tokens());
        let types = |name: &str| -> Option<pare_formats::gguf::GgmlType> {
            Some(overrides.get(&format!("{name}.weight")).copied().unwrap_or(ty))
                .filter(|t| pare_compress::gptq::supports(*t))
        };
        let gopts = pare_compress::gptq::GptqOptions { act_order: a.act_order, keep_zeros: pruned_source };
        let q = pare_compress::gptq::quantize_model(&mut d.llama, &mut cal, &types, &gopts, &mut |m| eprintln!("{m}"))?;
        prequantized = q.into_iter().map(|(k, v)| (format!("{k}.weight"), v)).collect();
        metadata.push((
            "pare.quantize.gptq".to_string(),
            pare_formats::gguf::MetaValue::String(
                serde_json::json!({
                    "calibration": spec, "samples": cal.samples, "tokens": cal.tokens(),
                    "act_order": a.act_order, "keep_zeros": pruned_source,
                })
                .to_string(),
            ),
        ));
    }
    let plan = pare_compress::gguf_quant::GgufPlan {
        default: Some(ty),
        fallback,
        overrides,
        importance,
        prequantized,
        metadata,
        values,
    };
    let s = pare_compress::gguf_quant::quantize_gguf(&gguf, &a.output, &plan, a.force, &mut |m| eprintln!("{m}"))?;
    eprintln!(
        "{:.1} MB → {:.1} MB; matrices at {:.3} bits per weight",
        s.bytes.0 as f64 / 1e6,
        s.bytes.1 as f64 / 1e6,
        s.matrix_bpw
    );
    println!("{}", s.path.display());
    Ok(())
}

/// The calibration text of AWQ and GPTQ: `--calibrate` or the built-in default, its first
/// `n_samples` samples, and its name.
fn calibration_text(a: &QuantizeArgs, n_samples: usize) -> Result<(String, Vec<String>)> {
    let spec = a.calibrate.clone().unwrap_or_else(|| pare_compress::calibration::DEFAULT_NAME.to_string());
    let mut samples = pare_compress::calibration::resolve(&spec)?;
    samples.truncate(n_samples);
    Ok((spec, samples))
}

/// `samples` tokenized and embedded by the decoder `d`, ready for layer-by-layer calibration.
fn calibrate(d: &crate::decoder::Decoder, samples: &[String], spec: &str) -> Result<pare_compress::prune::Calibration> {
    let seqs = samples.iter().map(|s| d.tok.encode_untruncated(s)).collect::<Result<Vec<_>, _>>()?;
    Ok(pare_compress::prune::Calibration::from_sequences(&d.llama, seqs, spec.to_string())?)
}

/// The formats that can reproduce a grid stored as `stored`: requantizing a matrix to one of them
/// finds the source's own values (lossless by construction, not a compression result), so a mixed
/// plan leaves them out for that matrix. Q4_1 and Q5_1 store a scale and a minimum per 32 values:
/// both, and Q4_K and Q5_K (a scale and a minimum per 32-value sub-block), land on a Q4_1 grid (their
/// importance-weighted error on SmolLM2's Q4_1 matrices is 0, 0, 4% and 4% of Q4_0's, where a Q4_1 of
/// a float matrix keeps about 66%). A Q4_0 grid is a subset of Q5_0's.
fn source_grid(stored: pare_formats::gguf::GgmlType) -> Vec<pare_formats::gguf::GgmlType> {
    use pare_formats::gguf::GgmlType::*;
    match stored {
        Q4_1 | Q5_1 => vec![Q4_1, Q5_1, Q4_K, Q5_K],
        Q4_0 => vec![Q4_0, Q5_0],
        Q5_0 => vec![Q5_0],
        Q8_0 => vec![Q8_0],
        Q4_K => vec![Q4_K, Q5_K],
        Q5_K => vec![Q5_K],
        Q6_K => vec![Q6_K],
        _ => vec![],
    }
}

/// Formats a mixed plan may give a matrix: every block format pare writes, less those that
/// reproduce its stored grid ([`source_grid`]) and, with `--gptq`, less the formats GPTQ does not
/// write.
fn mixed_candidates(
    stored: pare_formats::gguf::GgmlType,
    cols: usize,
    gptq: bool,
) -> Vec<pare_formats::gguf::GgmlType> {
    use pare_formats::gguf::GgmlType::*;
    let grid = source_grid(stored);
    [Q4_0, Q4_K, Q4_1, Q5_0, Q5_K, Q5_1, Q6_K, Q8_0]
        .into_iter()
        .filter(|t| !grid.contains(t))
        .filter(|t| !gptq || pare_compress::gptq::supports(*t))
        .filter(|t| cols.is_multiple_of(t.block().expect("a block format").0))
        .collect()
}

type Mixed =
    (std::collections::BTreeMap<String, pare_formats::gguf::GgmlType>, std::collections::BTreeMap<String, Vec<f32>>);

/// `--scheme mixed --bpw B`: measures every matrix's sensitivity on the calibration text and
/// chooses the formats; returns them (with the importance used to round) and the plan as JSON.
fn mixed_plan(
    a: &QuantizeArgs,
    gguf: &std::path::Path,
    n_samples: usize,
    fixed: &std::collections::BTreeMap<String, pare_formats::gguf::GgmlType>,
) -> Result<(Mixed, serde_json::Value)> {
    use pare_compress::mixed;
    let bpw = a.bpw.expect("checked");
    let spec = a.calibrate.clone().unwrap_or_else(|| pare_compress::calibration::DEFAULT_NAME.to_string());
    let samples = pare_compress::calibration::resolve(&spec)?;
    let file = pare_formats::gguf::GgufFile::open(gguf)?;
    let stored: std::collections::BTreeMap<String, pare_formats::gguf::GgmlType> =
        file.tensors.iter().map(|t| (t.name.clone(), t.ty)).collect();
    let gptq = a.gptq;
    let candidates = |name: &str, cols: usize| -> Vec<pare_formats::gguf::GgmlType> {
        match fixed.get(name) {
            Some(t) => vec![*t],
            None => {
                mixed_candidates(stored.get(name).copied().unwrap_or(pare_formats::gguf::GgmlType::F32), cols, gptq)
            }
        }
    };
    // A budget below every plan fails before anything is measured.
    let items: Vec<(usize, Vec<pare_formats::gguf::GgmlType>)> = file
        .tensors
        .iter()
        .filter(|t| pare_compress::gguf_quant::quantizable(&t.name, &t.dims))
        .map(|t| (t.numel(), candidates(&t.name, t.dims[0])))
        .collect();
    pare_compress::mixed::check_budget(&items, bpw)?;
    let mut d = crate::decoder::open_path(gguf, true)?;
    let tokens = d.tok.encode_untruncated(&samples.join("\n"))?;
    let batch = mixed::windows(&tokens, 128, a.sensitivity_tokens)?;
    let imp_samples = &samples[..samples.len().min(n_samples)];
    eprintln!("importance of every matrix's inputs from {} samples of {spec}", imp_samples.len());
    let tokenize = |s: &str| -> pare_compress::Result<Vec<u32>> { Ok(d.tok.encode_untruncated(s)?) };
    let importance: std::collections::BTreeMap<String, Vec<f32>> =
        pare_compress::quantize::importance(&d.llama, &tokenize, imp_samples, &mut |m| eprintln!("{m}"))?
            .into_iter()
            .map(|(k, v)| (format!("{k}.weight"), v))
            .collect();
    let probe = pare_formats::gguf::GgmlType::Q4_0;
    let mut left_out: Vec<String> = Vec::new();
    let mut kinds: Vec<pare_formats::gguf::GgmlType> = Vec::new();
    for t in stored.values() {
        if !kinds.contains(t) {
            kinds.push(*t);
        }
    }
    for ty in kinds {
        let grid = source_grid(ty);
        if !grid.is_empty() {
            left_out.push(format!(
                "{} for matrices stored as {}",
                grid.iter().map(|t| t.name()).collect::<Vec<_>>().join("/"),
                ty.name()
            ));
        }
    }
    eprintln!(
        "sensitivity of every matrix: KL divergence of {} with it alone at {} on {} tokens of {spec} (windows of 128)",
        d.path.display(),
        probe.name(),
        batch.tokens(),
    );
    if !left_out.is_empty() {
        eprintln!(
            "left out as candidates, since they reproduce the stored grid (lossless by construction): {}",
            left_out.join("; ")
        );
    }
    let t0 = std::time::Instant::now();
    let source = serde_json::json!({
        "file": d.path.file_name().map(|n| n.to_string_lossy().to_string()),
        "bytes": std::fs::metadata(gguf)?.len(),
    });
    let measured_on = serde_json::json!({"calibration": spec, "tokens": batch.tokens(), "probe": probe.name()});
    let mut measured_on = measured_on;
    let sens = match &a.sensitivity_from {
        Some(p) => {
            let f = pare_formats::gguf::GgufFile::open(p)?;
            let text = f.metadata.iter().find(|(k, _)| k == "pare.quantize.plan").and_then(|(_, v)| match v {
                pare_formats::gguf::MetaValue::String(s) => Some(s.clone()),
                _ => None,
            });
            let Some(text) = text else {
                bail!("--sensitivity-from {}: not written by --scheme mixed (no pare.quantize.plan)", p.display())
            };
            let v: serde_json::Value = serde_json::from_str(&text)?;
            if v["source"]["file"] != source["file"] || v["source"]["bytes"] != source["bytes"] {
                bail!("--sensitivity-from {}: measured on {}, not on this model ({source})", p.display(), v["source"]);
            }
            eprintln!("sensitivities from {} (measured with {})", p.display(), v["measured_on"]);
            measured_on = v["measured_on"].clone();
            measured_on["reused_from"] = serde_json::json!(p.display().to_string());
            let mut sens = mixed::sensitivities_from_json(&v)?;
            for s in &mut sens {
                let cols = file.tensor(&s.name).map(|t| t.dims[0]).unwrap_or(0);
                let keep = candidates(&s.name, cols);
                s.options.retain(|(t, _)| keep.contains(t));
            }
            sens
        }
        None => mixed::sensitivities(&mut d.llama, &batch, &importance, probe, &candidates, &mut |m| eprintln!("{m}"))?,
    };
    let plan = mixed::allocate(&sens, bpw)?;
    let mut counts: std::collections::BTreeMap<String, (usize, usize)> = std::collections::BTreeMap::new();
    for s in &sens {
        let e = counts.entry(plan.types[&s.name].name()).or_default();
        e.0 += 1;
        e.1 += s.weights;
    }
    let mut worst: Vec<&mixed::Sensitivity> = sens.iter().collect();
    worst.sort_by(|x, y| y.measured.total_cmp(&x.measured));
    eprintln!(
        "mixed plan at {:.3} bits per weight (asked {bpw}) in {:.0} s; estimated KLD {:.4} (sum over matrices)",
        plan.bpw,
        t0.elapsed().as_secs_f64(),
        plan.estimated_kld
    );
    for (t, (n, w)) in &counts {
        eprintln!("  {t:<5} {n:>4} matrices, {:>6.1}M weights", *w as f64 / 1e6);
    }
    eprintln!(
        "  most sensitive at {}: {}",
        probe.name(),
        worst
            .iter()
            .take(6)
            .map(|s| format!("{} {:.4} → {}", s.name, s.measured, plan.types[&s.name].name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut json = plan.to_json();
    json["source"] = source;
    json["measured_on"] = measured_on;
    let types = plan.types;
    Ok(((types, importance), json))
}
