//! Structured pruning: whole FFN neurons and attention heads removed, leaving smaller dense matrices.

use crate::encode::Structure;
use crate::error::{CompressError, Result};
use crate::source::Source;
use pare_models::bert::Bert;

/// Removes neurons and heads (not implemented yet).
pub fn prune(
    _model: &mut Bert,
    _src: &Source,
    _opts: &super::PruneOptions,
    _log: &mut dyn FnMut(&str),
) -> Result<Structure> {
    Err(CompressError::Invalid("structured pruning is not available yet".into()))
}
