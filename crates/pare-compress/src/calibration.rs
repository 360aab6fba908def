//! Calibration text: a file of the user's (one sample per line) or a set embedded in the binary.
//!
//! - `builtin:wordnet` (the default): 4096 example sentences of WordNet 3.0 (Princeton University,
//!   WordNet 3.0 licence, notice in `data/calibration-wordnet.LICENSE`), short modern English on
//!   every topic, made by `scripts/make-calibration-wordnet` from Debian's wordnet-base 1:3.0-37.
//! - `builtin:kjv`: 1024 verses of the King James Version (public domain) drawn across the whole
//!   book, made by `scripts/make-calibration-text` from Debian's bible-kjv.
//!
//! Neither shares a sentence with the evaluation sets of pare's tests and reports.

use crate::error::{CompressError, Result};
use std::path::Path;

/// The WordNet set, one sample per line.
pub const WORDNET_TEXT: &str = include_str!("../data/calibration-wordnet.txt");
/// The KJV set, one sample per line.
pub const KJV_TEXT: &str = include_str!("../data/calibration-kjv.txt");

/// Name of the default set in reports and configs.
pub const DEFAULT_NAME: &str = "builtin:wordnet";

/// The built-in sets by name.
pub const BUILTIN: [(&str, &str); 2] = [("builtin:wordnet", WORDNET_TEXT), ("builtin:kjv", KJV_TEXT)];

/// Samples of `spec`: a built-in set's name (`builtin:wordnet`, `builtin:kjv`) or a file, whose
/// non-blank lines are the samples. An empty file or an unknown set is an error.
pub fn resolve(spec: &str) -> Result<Vec<String>> {
    if let Some(set) = spec.strip_prefix("builtin:") {
        return BUILTIN.iter().find(|(n, _)| *n == spec).map(|(_, t)| lines(t)).ok_or_else(|| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            CompressError::Invalid(format!("unknown calibration set {set:?}; built in: {}", names.join(", ")))
        });
    }
    load(Path::new(spec))
}

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

/// The first `n` samples of the default set.
pub fn default_samples(n: usize) -> Vec<String> {
    lines(WORDNET_TEXT).into_iter().take(n).collect()
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets() {
        assert_eq!(resolve("builtin:wordnet").unwrap().len(), 4096);
        assert_eq!(resolve("builtin:kjv").unwrap().len(), 1024);
        assert!(resolve("builtin:gutenberg").unwrap_err().to_string().contains("builtin:wordnet"));
        assert_eq!(default_samples(3), resolve(DEFAULT_NAME).unwrap()[..3]);
    }
}
