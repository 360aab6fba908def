//! `pare prune`: remove weights (or whole neurons and heads) and store the result packed.

use crate::common;
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use pare_compress::prune::{Method, PruneOptions, Scope, parse_nm};
use std::path::PathBuf;

/// Pruning methods.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// Smallest |w|, per layer or global.
    Magnitude,
    /// |w|·‖x‖ from calibration activations, within each output row.
    Wanda,
    /// Second-order pruning with weight reconstruction, layer by layer.
    Sparsegpt,
    /// N:M semi-structured (default 2:4).
    Nm,
    /// Whole FFN neurons and attention heads, smaller dense matrices.
    Structured,
}

/// Scope of magnitude pruning.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScopeArg {
    /// Within each Linear.
    Layer,
    /// Over all Linears together.
    Global,
}

/// Options of `pare prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Model directory or zoo name.
    pub model: String,
    /// Method.
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Fraction removed, in [0, 1) (weights; for `structured`, neurons and heads).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub sparsity: f64,
    /// N:M pattern of `nm`: N kept of every M.
    #[arg(long, default_value = "2:4")]
    pub nm: String,
    /// Scope of `magnitude`.
    #[arg(long, value_enum, default_value_t = ScopeArg::Layer)]
    pub scope: ScopeArg,
    /// Calibration text: a file (one sample per line) or a built-in set, `builtin:wordnet` (default)
    /// or `builtin:kjv`.
    #[arg(long, value_name = "FILE|builtin:NAME")]
    pub calibrate: Option<String>,
    /// Calibration samples used: the first N (default: 4096 for encoders, 512 for decoders).
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Decoders: store the pruned matrices in this block format, quantized jointly with the pruning
    /// (GPTQ on the calibration text, the pruned weights kept exactly zero): q4_0, q5_0 or q8_0; or
    /// f16 (the default) or f32. GGUF has no sparse layout, so the zeros are stored densely.
    #[arg(long, value_name = "TYPE")]
    pub quantize: Option<String>,
    /// Encoders: store the pruned weights dense, zeros included (`sparsity_config` format `dense`), so
    /// that current transformers and compressed-tensors load them; the file does not shrink. Without
    /// it they are stored packed in a bitmask layout, which only pare and compressed-tensors ≤ 0.14 read.
    #[arg(long)]
    pub portable: bool,
    /// Output directory (encoders) or GGUF file (decoders).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output if it exists (a directory only when it is not empty).
    #[arg(long)]
    pub force: bool,
}

/// Calibration samples of decoders by default (as `pare quantize --gptq`).
const DECODER_SAMPLES: usize = 512;

/// Runs `pare prune`.
pub fn run(a: &PruneArgs) -> Result<()> {
    let path = pare_formats::zoo::resolve(&a.model, &mut |m| eprintln!("{m}"))?;
    let decoder = crate::decoder::is_decoder(&path);
    let opts = options(a, decoder)?;
    if decoder {
        if a.portable {
            bail!("--portable applies to encoder directories; a GGUF stores pruned matrices dense already");
        }
        return run_decoder(a, &path, &opts);
    }
    if a.quantize.is_some() {
        bail!("--quantize applies to decoders (GGUF); an encoder is pruned as stored (quantize it with pare quantize)");
    }
    let dir = common::model_dir(&path.display().to_string())?;
    let summary = pare_compress::prune::prune(&dir, &a.output, &opts, &mut |m| eprintln!("{m}"))?;
    println!("{}", summary.out_dir.display());
    Ok(())
}

fn options(a: &PruneArgs, decoder: bool) -> Result<PruneOptions> {
    let opts = PruneOptions {
        method: match a.method {
            MethodArg::Magnitude => Method::Magnitude,
            MethodArg::Wanda => Method::Wanda,
            MethodArg::Sparsegpt => Method::SparseGpt,
            MethodArg::Nm => Method::Nm,
            MethodArg::Structured => Method::Structured,
        },
        sparsity: a.sparsity,
        nm: parse_nm(&a.nm)?,
        scope: match a.scope {
            ScopeArg::Layer => Scope::Layer,
            ScopeArg::Global => Scope::Global,
        },
        calibration: match &a.calibrate {
            Some(spec) => Some((spec.clone(), pare_compress::calibration::resolve(spec)?)),
            None => None,
        },
        samples: a.samples.unwrap_or(if decoder { DECODER_SAMPLES } else { pare_compress::prune::DEFAULT_SAMPLES }),
        portable: a.portable,
        force: a.force,
    };
    pare_compress::prune::validate(&opts)?;
    Ok(opts)
}

/// `pare prune` of a decoder GGUF: the matrices of every block pruned through the model seam (layer by
/// layer on the calibration text), then written as GGUF: f16 or f32 as they are, or quantized to a
/// block format by GPTQ with the pruned weights pinned at zero.
fn run_decoder(a: &PruneArgs, path: &std::path::Path, opts: &PruneOptions) -> Result<()> {
    use pare_formats::gguf::GgmlType;
    let Some(gguf) = common::gguf_path(path) else {
        bail!("{}: pare prunes decoders stored as GGUF, and this one is a Hugging Face directory", a.model);
    };
    if opts.method == Method::Structured {
        bail!(
            "--method structured on a decoder: GGUF holds one width per model, not per layer; use sparsegpt, wanda, nm or magnitude"
        );
    }
    let ty = match &a.quantize {
        None => GgmlType::F16,
        Some(t) => pare_compress::gguf_quant::parse_type(t)
            .filter(|t| matches!(t, GgmlType::F16 | GgmlType::F32) || pare_compress::gptq::holds_zero(*t))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--quantize {t}: pruned weights are stored in q4_0, q5_0, q8_0 (grids that hold an exact zero), f16 or f32"
                )
            })?,
    };
    pare_compress::gguf_quant::check_output(&gguf, &a.output, a.force)?;
    let crate::decoder::Decoder { mut llama, tok, .. } = crate::decoder::open_path(&gguf, true)?;
    let tokenize = |s: &str| -> pare_compress::Result<Vec<u32>> { Ok(tok.encode_untruncated(s)?) };
    let pruned = pare_compress::prune::prune_model(&mut llama, &tokenize, opts, &mut |m| eprintln!("{m}"))?;
    let mut info = pruned.info;
    // The pruned values of every block matrix (GPTQ's stored bytes, where it writes, take precedence).
    let mut values = std::collections::BTreeMap::new();
    let (mut total, mut zeros) = (0usize, 0usize);
    for (name, lin) in pare_models::Architecture::linears(&llama) {
        let w = lin.weight.to_dense();
        total += w.len();
        zeros += w.iter().filter(|v| **v == 0.0).count();
        values.insert(format!("{name}.weight"), w);
    }
    info.insert("zeros".into(), serde_json::json!(zeros as f64 / total.max(1) as f64));
    info.insert("pruned_weights".into(), serde_json::json!(zeros));
    let mut prequantized = std::collections::BTreeMap::new();
    if pare_compress::gptq::holds_zero(ty) {
        let mut cal = pare_compress::prune::Calibration::new(&llama, &tokenize, opts)?;
        eprintln!(
            "GPTQ to {} on {} samples ({} tokens) of {}, pruned weights kept zero",
            ty.name(),
            cal.samples,
            cal.tokens(),
            cal.source
        );
        let gopts = pare_compress::gptq::GptqOptions { keep_zeros: true, ..Default::default() };
        let q = pare_compress::gptq::quantize_model(&mut llama, &mut cal, &|_| Some(ty), &gopts, &mut |m| {
            eprintln!("{m}")
        })?;
        prequantized = q.into_iter().map(|(k, v)| (format!("{k}.weight"), v)).collect();
        info.insert(
            "quantization".into(),
            serde_json::json!({"type": ty.name(), "method": "gptq", "keep_zeros": true}),
        );
    } else {
        eprintln!(
            "GGUF has no sparse layout: the zeros are stored densely as {} (--quantize q4_0 stores them in 4.5 bits per weight)",
            ty.name()
        );
    }
    let plan = pare_compress::gguf_quant::GgufPlan {
        default: Some(ty),
        values,
        prequantized,
        metadata: vec![(
            "pare.prune".to_string(),
            pare_formats::gguf::MetaValue::String(serde_json::Value::Object(info).to_string()),
        )],
        ..Default::default()
    };
    let s = pare_compress::gguf_quant::quantize_gguf(&gguf, &a.output, &plan, a.force, &mut |_| {})?;
    eprintln!(
        "{:.1}% of the block matrices' weights pruned; {:.1} MB → {:.1} MB; matrices at {:.3} bits per weight",
        100.0 * zeros as f64 / total.max(1) as f64,
        s.bytes.0 as f64 / 1e6,
        s.bytes.1 as f64 / 1e6,
        s.matrix_bpw
    );
    println!("{}", s.path.display());
    Ok(())
}
