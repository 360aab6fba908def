//! pare-formats: reading model directories (safetensors through mmap, config.json, tokenizer.json,
//! the sentence-transformers files) and obtaining models from the zoo.

pub mod config;
pub mod error;
pub mod gguf;
pub mod gguf_write;
pub mod onnx;
pub mod pack_quantized;
pub mod quant_config;
pub mod sentence;
pub mod source;
pub mod sparse;
pub mod tensors;
pub mod tokenizer;
pub mod writer;
pub mod zoo;

pub use config::BertConfig;
pub use error::{FormatError, Result};
pub use safetensors::Dtype;
pub use tensors::{TensorFile, TensorInfo};

/// A JSON file, parsed as `T`; an unreadable or malformed file is an error naming it.
pub fn read_json<T: for<'a> serde::Deserialize<'a>>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| FormatError::Json { path: path.to_path_buf(), msg: e.to_string() })
}

use std::path::{Path, PathBuf};

/// The files of a Hugging Face model directory that pare reads.
#[derive(Clone, Debug)]
pub struct ModelDir {
    /// The directory.
    pub root: PathBuf,
}

impl ModelDir {
    /// Checks that `root` is a directory holding `config.json` and `model.safetensors`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.exists() {
            return Err(FormatError::NotFound(root));
        }
        if !root.is_dir() {
            return Err(FormatError::NotADirectory(root));
        }
        let dir = ModelDir { root };
        for f in ["config.json", "model.safetensors"] {
            let p = dir.root.join(f);
            if !p.is_file() {
                return Err(FormatError::MissingFile { dir: dir.root.clone(), file: f.to_string() });
            }
        }
        Ok(dir)
    }

    /// Path of a file inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}
