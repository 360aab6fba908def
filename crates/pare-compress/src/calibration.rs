//! Calibration text: a file of the user's (one sample per line) or the set embedded in the binary —
//! 1024 verses of the King James Version (public domain) drawn across the whole book, as
//! `scripts/make-calibration-text` makes them from Debian's bible-kjv (`bible -l0 gen1:1-rev22:21`).
//! It shares no sentence with the evaluation sets of pare's tests and reports.

use crate::error::{CompressError, Result};
use std::path::Path;

/// The embedded calibration set, one sample per line.
pub const DEFAULT_TEXT: &str = include_str!("../data/calibration-kjv.txt");

/// Name of the embedded set in reports and configs.
pub const DEFAULT_NAME: &str = "builtin:kjv";

/// Samples of a calibration file: its non-blank lines. An empty file is an error.
pub fn load(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)
        .map_err(|e| CompressError::Invalid(format!("cannot read calibration file {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CompressError::Invalid(format!("calibration file {} is not UTF-8 text", path.display())))?;
    let samples = lines(&text);
    if samples.is_empty() {
        return Err(CompressError::Invalid(format!(
            "calibration file {} holds no text (no non-blank line)",
            path.display()
        )));
    }
    Ok(samples)
}

/// The first `n` samples of the embedded set.
pub fn default_samples(n: usize) -> Vec<String> {
    lines(DEFAULT_TEXT).into_iter().take(n).collect()
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}
