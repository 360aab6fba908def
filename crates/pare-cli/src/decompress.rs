//! `pare decompress`: a plain float32 copy of any model pare runs.

use crate::common;
use anyhow::Result;
use std::path::Path;

/// Runs `pare decompress`.
pub fn run(model: &str, output: &Path, force: bool) -> Result<()> {
    let path = pare_formats::zoo::resolve(model, &mut |m| eprintln!("{m}"))?;
    if let Some(gguf) = common::gguf_path(&path) {
        let out = pare_compress::decompress::decompress_gguf(&gguf, output, force, &mut |m| eprintln!("{m}"))?;
        println!("{}", out.display());
        return Ok(());
    }
    if crate::decoder::is_decoder(&path) {
        let out = pare_compress::decompress::decompress_hf_llama(&path, output, force, &mut |m| eprintln!("{m}"))?;
        println!("{}", out.display());
        return Ok(());
    }
    let dir = common::model_dir(model)?;
    let out = pare_compress::decompress::decompress(&dir, output, force, &mut |m| eprintln!("{m}"))?;
    println!("{}", out.out_dir.display());
    Ok(())
}
