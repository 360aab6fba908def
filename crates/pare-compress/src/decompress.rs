//! Decompression: any model pare runs, written back as a plain float32 checkpoint (weights
//! dequantized and densified; a structured-pruned model keeps its smaller layers), for tools that
//! read only dense models and for cross-checks.

use crate::encode::{self, Summary};
use crate::error::Result;
use crate::quantize::inherited;
use crate::source::Source;
use pare_formats::ModelDir;
use std::path::Path;

/// Writes `src` as a dense float32 model to `out`.
pub fn decompress(src: &ModelDir, out: &Path, force: bool, log: &mut dyn FnMut(&str)) -> Result<Summary> {
    crate::output::check_destination(&src.root, out, force)?;
    let source = Source::load(src)?;
    let mut plan = inherited(&source)?;
    plan.sparsity = None;
    plan.quant = None;
    encode::write(&source, &source.enc.model, &plan, out, force, &mut |_| {})
        .inspect(|s| log(&format!("wrote a dense float32 model to {}", s.out_dir.display())))
}
