//! Writing a derived model directory: every file of the source is copied except the two pare rewrites
//! (config.json and model.safetensors); everything is staged and renamed into place at the end.

use crate::error::{CompressError, Result};
use pare_formats::writer::{StagedDir, TensorData, write_atomic, write_safetensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Checks that `out` may be written: it must not be the source, and must not exist as a non-empty
/// directory unless `force`.
pub fn check_destination(src: &Path, out: &Path, force: bool) -> Result<()> {
    if let (Ok(a), Ok(b)) = (src.canonicalize(), out.canonicalize())
        && a == b
    {
        return Err(CompressError::Invalid(format!("{}: the output directory is the input model", out.display())));
    }
    if out.exists() {
        if !out.is_dir() {
            return Err(CompressError::Invalid(format!("{}: exists and is not a directory", out.display())));
        }
        let non_empty = std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true);
        if non_empty && !force {
            return Err(CompressError::Invalid(format!(
                "{}: output directory exists and is not empty (use --force to replace it)",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Writes `out`: the source's other files, `config` as config.json and `tensors` as model.safetensors.
pub fn write_model_dir(
    src: &Path,
    out: &Path,
    config: &serde_json::Value,
    tensors: &[TensorData],
    metadata: HashMap<String, String>,
) -> Result<PathBuf> {
    write_dir_with(src, out, config, |dir| {
        Ok(write_safetensors(&dir.join("model.safetensors"), tensors, Some(metadata))?)
    })
}

/// Writes `out`: the source's other files (not config.json or model.safetensors), `config` as
/// config.json, and whatever `write` puts into the staging directory it is given.
pub fn write_dir_with(
    src: &Path,
    out: &Path,
    config: &serde_json::Value,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let staged = StagedDir::new(out)?;
    let skip = [staged.path(""), out.to_path_buf()];
    copy_tree(src, &staged.path(""), Path::new(""), &skip)?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| CompressError::Invalid(e.to_string()))?;
    write_atomic(&staged.path("config.json"), &json)?;
    write(&staged.path(""))?;
    Ok(staged.commit()?)
}

/// Copies the files of `src` (recursively) into `dst`, except config.json and model.safetensors at the
/// top, the directories in `skip` (the output being written, when it lies inside the source) and nested
/// model directories (any directory with its own model.safetensors).
fn copy_tree(src: &Path, dst: &Path, rel: &Path, skip: &[PathBuf]) -> Result<()> {
    let dir = src.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|e| pare_formats::FormatError::io(&dir, e))?;
    for e in entries {
        let e = e.map_err(|e| pare_formats::FormatError::io(&dir, e))?;
        let name = e.file_name();
        let r = rel.join(&name);
        if rel.as_os_str().is_empty() && (name == "config.json" || name == "model.safetensors") {
            continue;
        }
        let path = e.path();
        let same = |p: &PathBuf| match (p.canonicalize(), path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if skip.iter().any(same) {
            continue;
        }
        if path.is_dir() {
            if path.join("model.safetensors").exists() {
                continue;
            }
            std::fs::create_dir_all(dst.join(&r)).map_err(|e| pare_formats::FormatError::io(dst.join(&r), e))?;
            copy_tree(src, dst, &r, skip)?;
        } else if path.is_file() {
            std::fs::copy(&path, dst.join(&r)).map_err(|e| pare_formats::FormatError::io(&path, e))?;
        }
    }
    Ok(())
}
