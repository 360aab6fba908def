//! `pare export`: a model as another engine's file format (ONNX).

use crate::common;
use anyhow::{Result, bail};
use clap::ValueEnum;
use std::path::Path;

/// Formats `pare export` writes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// ONNX (opset 17): float weights as MatMul, int8 weights as integer products (MatMulInteger).
    Onnx,
}

/// Runs `pare export`.
pub fn run(model: &str, format: ExportFormat, output: &Path, force: bool, dequantize: bool) -> Result<()> {
    let ExportFormat::Onnx = format;
    let path = pare_formats::zoo::resolve(model, &mut |m| eprintln!("{m}"))?;
    if common::gguf_path(&path).is_some() || crate::decoder::is_decoder(&path) {
        bail!("{}: ONNX export covers BERT encoders; this is a Llama decoder", path.display());
    }
    let dir = common::model_dir(model)?;
    let opts = pare_compress::onnx::OnnxOptions { dequantize };
    let s = pare_compress::onnx::export_dir(&dir, output, force, opts, &mut |m| eprintln!("{m}"))?;
    println!("{}", s.out_dir.display());
    Ok(())
}
