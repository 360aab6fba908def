//! `pare prune`: remove weights (or whole neurons and heads) and store the result packed.

use crate::common;
use anyhow::Result;
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
    /// Calibration samples used: the first N.
    #[arg(long, value_name = "N", default_value_t = pare_compress::prune::DEFAULT_SAMPLES)]
    pub samples: usize,
    /// Output directory.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output directory if it exists and is not empty.
    #[arg(long)]
    pub force: bool,
}

/// Runs `pare prune`.
pub fn run(a: &PruneArgs) -> Result<()> {
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
        samples: a.samples,
        force: a.force,
    };
    pare_compress::prune::validate(&opts)?;
    let dir = common::model_dir(&a.model)?;
    let summary = pare_compress::prune::prune(&dir, &a.output, &opts, &mut |m| eprintln!("{m}"))?;
    println!("{}", summary.out_dir.display());
    Ok(())
}
