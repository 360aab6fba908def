//! Errors of model files: each names the file, tensor or field at fault in one line.

use std::path::PathBuf;

/// Result with [`FormatError`].
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// What can be wrong with a model on disk or its source.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Path does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    /// A model path that is not a directory.
    #[error("{0}: not a directory (a model is a directory with config.json and model.safetensors)")]
    NotADirectory(PathBuf),
    /// A required file is missing from a model directory.
    #[error("{dir}: no {file} in this model directory")]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// The missing file.
        file: String,
    },
    /// I/O failure on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file that does not parse or lacks a field.
    #[error("{path}: {msg}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A safetensors file that does not parse (truncated, corrupt header, ...).
    #[error("{path}: not a valid safetensors file: {msg}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("{path}: tensor {name} is missing")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A tensor of the wrong shape.
    #[error("{path}: tensor {name} has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Shape on disk.
        got: Vec<usize>,
        /// Shape the configuration implies.
        expected: Vec<usize>,
    },
    /// A tensor stored in a dtype pare cannot use there.
    #[error("{path}: tensor {name} has dtype {dtype}, which pare cannot read as {wanted}")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Dtype on disk.
        dtype: String,
        /// What was wanted.
        wanted: String,
    },
    /// A tensor holding NaN or infinity.
    #[error("{path}: tensor {name} holds {count} non-finite values (NaN or infinity), first at index {first}")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Number of non-finite values.
        count: usize,
        /// Flat index of the first.
        first: usize,
    },
    /// A malformed or unsupported GGUF file.
    #[error("{path}: {msg}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An invalid configuration value.
    #[error("{path}: {msg}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// tokenizer.json failed to load or encode.
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A zoo name pare does not know.
    #[error("unknown model {name:?}: not a directory and not in the zoo (known: {known})")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The zoo's names.
        known: String,
    },
    /// Fetching a zoo model failed.
    #[error("fetching {name}: {msg}")]
    Fetch {
        /// The zoo name.
        name: String,
        /// What went wrong.
        msg: String,
    },
}

impl FormatError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return FormatError::NotFound(path.into());
        }
        FormatError::Io { path: path.into(), source }
    }
}
