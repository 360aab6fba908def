//! The model a compression starts from: loaded as pare runs it, with what its files say about how it
//! is already compressed.

use crate::error::Result;
use pare_formats::quant_config::{CompressionConfig, SparsityConfig};
use pare_formats::{ModelDir, TensorFile};
use pare_models::SentenceEncoder;

/// A loaded source model.
pub struct Source {
    /// Its directory.
    pub dir: ModelDir,
    /// config.json as JSON.
    pub config: serde_json::Value,
    /// The compression blocks of config.json.
    pub compression: CompressionConfig,
    /// The model, tokenizer and pooling.
    pub enc: SentenceEncoder,
    /// Its tensor file.
    pub file: TensorFile,
}

impl Source {
    /// Loads `dir`.
    pub fn load(dir: &ModelDir) -> Result<Self> {
        let path = dir.file("config.json");
        let config = pare_formats::read_json(&path)?;
        Ok(Source {
            dir: dir.clone(),
            compression: CompressionConfig::from_config(&config, &path)?,
            config,
            enc: SentenceEncoder::load(dir)?,
            file: TensorFile::open(dir.file("model.safetensors"))?,
        })
    }

    /// Whether its weights are quantized.
    pub fn is_quantized(&self) -> bool {
        self.compression.quantization.as_ref().is_some_and(|q| q.is_quantized())
    }

    /// Its sparsity description, when pruned.
    pub fn sparsity(&self) -> Option<&SparsityConfig> {
        self.compression.quantization.as_ref().and_then(|q| q.sparsity_config.as_ref())
    }
}
