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

    /// The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata: byte-level BPE (model
    /// `gpt2`) with the file's tokens and merges, control tokens (type 3) as special tokens, and the
    /// pre-tokenizer of GPT-2 (its byte-level regex split) for the `tokenizer.ggml.pre` values pare
    /// knows (`smollm`, `gpt2`, `default`), as transformers builds it from the same metadata. (A
    /// separate digit split would differ from it: `"\n\n  1"` must give `ĊĊĠ`, `Ġ`, `1`.) No
    /// truncation; a BOS token only when `tokenizer.ggml.add_bos_token` says so.
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Self> {
        use crate::gguf::MetaValue;
        use serde_json::json;
        let path = file.path().to_path_buf();
        let err = |msg: String| FormatError::Tokenizer { path: path.clone(), msg };
        let text = |key: &str| file.meta(key).and_then(MetaValue::as_str).map(str::to_string);
        let strings = |key: &str| -> Result<Vec<String>> {
            let a = file.meta(key).and_then(MetaValue::as_array).ok_or_else(|| err(format!("no {key} array")))?;
            a.iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| err(format!("{key} holds a non-string"))))
                .collect()
        };
        match text("tokenizer.ggml.model").as_deref() {
            Some("gpt2") => {}
            other => {
                return Err(err(format!("tokenizer model {other:?}: pare reads byte-level BPE (\"gpt2\") tokenizers")));
            }
        }
        let pre = text("tokenizer.ggml.pre").unwrap_or_else(|| "default".into());
        let byte_level =
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        let pre_tokenizer = match pre.as_str() {
            "smollm" | "gpt2" | "default" => byte_level,
            p => return Err(err(format!("pre-tokenizer {p:?}: pare reads \"smollm\", \"gpt2\" and \"default\""))),
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = file
            .meta("tokenizer.ggml.token_type")
            .and_then(MetaValue::as_array)
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
            .unwrap_or_default();
        let vocab: serde_json::Map<String, serde_json::Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        let special: Vec<serde_json::Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| types.get(*i) == Some(&3))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": true})
            })
            .collect();
        let bos = file.meta("tokenizer.ggml.bos_token_id").and_then(MetaValue::as_u64);
        let add_bos = matches!(file.meta("tokenizer.ggml.add_bos_token"), Some(MetaValue::Bool(true)));
        let post = match (add_bos, bos) {
            (true, Some(b)) => {
                let t = tokens.get(b as usize).ok_or_else(|| err(format!("BOS token id {b} past the vocabulary")))?;
                json!({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {t.clone(): {"id": t, "ids": [b], "tokens": [t]}}})
            }
            _ => serde_json::Value::Null,
        };
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": special, "normalizer": null,
            "pre_tokenizer": pre_tokenizer, "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let inner: Tokenizer = spec.to_string().parse().map_err(|e: tokenizers::Error| err(e.to_string()))?;
        Ok(TextTokenizer { inner, path })
    }

    /// Text of token ids (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| FormatError::Tokenizer { path: self.path.clone(), msg: e.to_string() })
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

    /// The tokenizer as a `tokenizer.json` document (what the `tokenizers` library and transformers load).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| FormatError::Tokenizer { path: self.path.clone(), msg: e.to_string() })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
