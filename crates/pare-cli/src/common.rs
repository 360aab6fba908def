//! Shared pieces of the subcommands: resolving and loading models, thread pools, atomic output.

use anyhow::{Context, Result};
use pare_formats::{ModelDir, zoo};
use pare_models::SentenceEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Resolves a model argument (directory or zoo name, fetched on first use) to a checked directory.
pub fn model_dir(spec: &str) -> Result<ModelDir> {
    let path = zoo::resolve(spec, &mut |m| eprintln!("{m}"))?;
    Ok(ModelDir::open(path)?)
}

/// The GGUF file a resolved model path names: a `.gguf` file, or a directory holding exactly one and no
/// config.json.
pub fn gguf_path(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return (path.extension().and_then(|e| e.to_str()) == Some("gguf")).then(|| path.to_path_buf());
    }
    let mut found = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("gguf"));
    let first = found.next()?;
    (found.next().is_none() && !path.join("config.json").exists()).then_some(first)
}

/// Loads a model for sentence embedding.
pub fn load(spec: &str) -> Result<(ModelDir, SentenceEncoder)> {
    let dir = model_dir(spec)?;
    let enc = SentenceEncoder::load(&dir)?;
    Ok((dir, enc))
}

/// `pare fetch NAME`.
pub fn fetch(name: &str) -> Result<()> {
    let entry = zoo::lookup(name).ok_or_else(|| pare_formats::FormatError::UnknownModel {
        name: name.to_string(),
        known: zoo::ZOO.iter().chain(zoo::DATASETS).map(|e| e.name).collect::<Vec<_>>().join(", "),
    })?;
    let dir = zoo::fetch(entry, &mut |m| eprintln!("{m}"))?;
    println!("{}", dir.display());
    Ok(())
}

/// Sets the number of threads the kernels use.
pub fn threads(threads: usize) {
    pare_kernels::par::set_threads(threads);
}

/// Output to a file (through a temporary name, renamed on [`Output::finish`]) or to stdout.
pub enum Output {
    /// Standard output.
    Stdout(std::io::BufWriter<std::io::Stdout>),
    /// A temporary file to be renamed to the target.
    File { tmp: PathBuf, target: PathBuf, w: std::io::BufWriter<std::fs::File> },
}

impl Output {
    /// Opens `path`, or stdout when `None`.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let Some(target) = path else { return Ok(Output::Stdout(std::io::BufWriter::new(std::io::stdout()))) };
        let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            anyhow::bail!("{}: the output directory does not exist", dir.display());
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(Output::File { tmp, target: target.to_path_buf(), w: std::io::BufWriter::new(f) })
    }

    /// The writer.
    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(w) => w,
            Output::File { w, .. } => w,
        }
    }

    /// Flushes, and for a file renames it into place.
    pub fn finish(mut self) -> Result<()> {
        match &mut self {
            Output::Stdout(w) => w.flush().context("cannot write to stdout"),
            Output::File { tmp, target, w } => {
                w.flush().with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&*tmp, &*target).with_context(|| format!("cannot write {}", target.display()))?;
                // Renamed: nothing left for Drop to remove.
                *tmp = PathBuf::new();
                Ok(())
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Output::File { tmp, .. } = self
            && !tmp.as_os_str().is_empty()
        {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
