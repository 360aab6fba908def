//! Errors of compression.

use pare_formats::FormatError;
use pare_models::ModelError;

/// Result with [`CompressError`].
pub type Result<T, E = CompressError> = std::result::Result<T, E>;

/// What can go wrong compressing a model.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// A problem with the model's files.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A problem running the model (calibration).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Options that do not make sense, or input the method cannot take.
    #[error("{0}")]
    Invalid(String),
}
