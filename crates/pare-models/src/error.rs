//! Errors of loading and running models.

use pare_formats::FormatError;

/// Result with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A problem with the model's files.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Inputs the model cannot take (token id past the vocabulary, sequence too long, ...).
    #[error("{0}")]
    Input(String),
}
