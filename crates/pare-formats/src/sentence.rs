//! The sentence-transformers files shipped beside a model: modules.json (the pipeline),
//! the pooling config, and sentence_bert_config.json (maximum sequence length).

use crate::error::{FormatError, Result};
use crate::read_json;
use serde::Deserialize;
use std::path::Path;

/// How token vectors become one sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens of the attention mask.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over the tokens of the attention mask.
    Max,
}

/// The sentence-embedding pipeline after the transformer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentenceConfig {
    /// Pooling mode.
    pub pooling: Pooling,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
    /// Truncation length in tokens, special tokens included.
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct StConfig {
    max_seq_length: Option<usize>,
}

impl SentenceConfig {
    /// Reads the files under `dir`. Without modules.json: mean pooling and L2 normalisation, the
    /// usual sentence-embedding recipe.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut cfg = SentenceConfig { pooling: Pooling::Mean, normalize: true, max_seq_length: None };
        let modules = dir.join("modules.json");
        if modules.is_file() {
            let list: Vec<Module> = read_json(&modules)?;
            cfg.normalize = list.iter().any(|m| m.kind.ends_with("models.Normalize"));
            if let Some(p) = list.iter().find(|m| m.kind.ends_with("models.Pooling")) {
                let pc = dir.join(&p.path).join("config.json");
                let pf: PoolingFile = read_json(&pc)?;
                cfg.pooling = match (pf.pooling_mode_mean_tokens, pf.pooling_mode_cls_token, pf.pooling_mode_max_tokens)
                {
                    (true, false, false) if !pf.pooling_mode_mean_sqrt_len_tokens => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    (false, false, true) => Pooling::Max,
                    _ => {
                        return Err(FormatError::Config {
                            path: pc,
                            msg: "pare supports exactly one of mean, cls or max pooling".into(),
                        });
                    }
                };
            }
        }
        let st = dir.join("sentence_bert_config.json");
        if st.is_file() {
            cfg.max_seq_length = read_json::<StConfig>(&st)?.max_seq_length;
        }
        Ok(cfg)
    }
}
