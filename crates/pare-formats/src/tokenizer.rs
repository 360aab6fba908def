//! tokenizer.json through the `tokenizers` crate (pure Rust), set up for sentence embedding:
//! no padding (batches are padded by the model runner), truncation to the model's maximum length.

use crate::error::{FormatError, Result};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// A loaded tokenizer.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("path", &self.path).finish()
    }
}

impl TextTokenizer {
    /// Loads `path`, disables the file's padding and truncates to `max_len` tokens (special tokens
    /// included) when given, or not at all.
    pub fn load(path: &Path, max_len: Option<usize>) -> Result<Self> {
        if !path.is_file() {
            return Err(FormatError::NotFound(path.to_path_buf()));
        }
        let err = |msg: String| FormatError::Tokenizer { path: path.to_path_buf(), msg };
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        inner.with_padding(None);
        let trunc = max_len.map(|max_length| TruncationParams { max_length, ..TruncationParams::default() });
        inner.with_truncation(trunc).map_err(|e| err(e.to_string()))?;
        Ok(TextTokenizer { inner, path: path.to_path_buf() })
    }

    /// Token ids of one text, special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| FormatError::Tokenizer { path: self.path.clone(), msg: e.to_string() })
    }

    /// Token ids without truncation (for building benchmark inputs of a chosen length).
    pub fn encode_untruncated(&self, text: &str) -> Result<Vec<u32>> {
        let mut t = self.inner.clone();
        t.with_truncation(None).map_err(|e| FormatError::Tokenizer { path: self.path.clone(), msg: e.to_string() })?;
        t.encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| FormatError::Tokenizer { path: self.path.clone(), msg: e.to_string() })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
