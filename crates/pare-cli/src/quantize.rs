//! `pare quantize`: int8 weights, embeddings and activations, written as a compressed-tensors model.

use crate::common;
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use pare_compress::quantize::{ActivationMode, QuantizeOptions};
use std::path::PathBuf;

/// Quantization schemes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Scheme {
    /// int8 weights (per output channel, symmetric), int8 embedding rows, u8 activations.
    Int8,
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
    /// Calibration text, a file (one sample per line) or `builtin:wordnet` / `builtin:kjv`; implies
    /// `--activations static`.
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
    /// Output directory.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output directory if it exists and is not empty.
    #[arg(long)]
    pub force: bool,
}

/// Runs `pare quantize`.
pub fn run(a: &QuantizeArgs) -> Result<()> {
    let Scheme::Int8 = a.scheme;
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
        force: a.force,
    };
    let summary = pare_compress::quantize(&dir, &a.output, &opts, &mut |m| eprintln!("{m}"))?;
    println!("{}", summary.out_dir.display());
    Ok(())
}
