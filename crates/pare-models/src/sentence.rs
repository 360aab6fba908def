//! Sentence embeddings: tokenizer → BERT → pooling over the attention mask → optional L2 normalisation,
//! following the sentence-transformers files of the model directory.

use crate::bert::{Batch, Bert, Workspace};
use crate::error::{ModelError, Result};
use pare_formats::quant_config::CompressionConfig;
use pare_formats::sentence::{Pooling, SentenceConfig};
use pare_formats::tokenizer::TextTokenizer;
use pare_formats::{BertConfig, ModelDir, TensorFile};

/// Sequences embedded per forward pass by [`SentenceEncoder::embed`].
pub const EMBED_BATCH: usize = 16;

/// A model directory loaded for sentence embedding.
#[derive(Debug)]
pub struct SentenceEncoder {
    /// The encoder.
    pub model: Bert,
    /// Tokenizer, truncating to the model's maximum length.
    pub tokenizer: TextTokenizer,
    /// Pooling and normalisation.
    pub sentence: SentenceConfig,
    /// Truncation length in tokens.
    pub max_len: usize,
}

impl SentenceEncoder {
    /// Loads config.json, model.safetensors, tokenizer.json and the sentence-transformers files.
    pub fn load(dir: &ModelDir) -> Result<Self> {
        let config = BertConfig::load(&dir.file("config.json"))?;
        let sentence = SentenceConfig::load(&dir.root)?;
        let max_len =
            sentence.max_seq_length.unwrap_or(config.max_position_embeddings).min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::load(&dir.file("tokenizer.json"), Some(max_len))?;
        let file = TensorFile::open(dir.file("model.safetensors"))?;
        let compression = CompressionConfig::from_config_file(&dir.file("config.json"))?;
        let model = Bert::load(&file, &config, &compression)?;
        Ok(SentenceEncoder { model, tokenizer, sentence, max_len })
    }

    /// Token ids of one text (special tokens added, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text)?)
    }

    /// Embeddings of already tokenised sequences, run as one padded batch.
    pub fn embed_ids(&self, seqs: &[Vec<u32>], ws: &mut Workspace) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        if seqs.iter().any(Vec::is_empty) {
            return Err(ModelError::Input("a sequence has no tokens".into()));
        }
        let batch = Batch::pad(seqs, 0);
        let h = self.model.hidden();
        let states = self.model.forward(&batch, ws)?;
        Ok((0..batch.batch)
            .map(|b| {
                let rows = &states[b * batch.seq * h..(b + 1) * batch.seq * h];
                let mask = &batch.mask[b * batch.seq..(b + 1) * batch.seq];
                let mut v = pool(self.sentence.pooling, rows, mask, h);
                if self.sentence.normalize {
                    normalize(&mut v);
                }
                v
            })
            .collect())
    }

    /// Embeddings of `texts`, in input order. Texts are sorted by length and run in batches of
    /// [`EMBED_BATCH`], so that padding stays small.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        let mut ws = Workspace::default();
        for chunk in order.chunks(EMBED_BATCH) {
            let seqs: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            for (&i, e) in chunk.iter().zip(self.embed_ids(&seqs, &mut ws)?) {
                out[i] = e;
            }
        }
        Ok(out)
    }
}

/// Pools the rows of one sequence over its mask.
pub fn pool(mode: Pooling, rows: &[f32], mask: &[u8], h: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; h];
    match mode {
        Pooling::Cls => v.copy_from_slice(&rows[..h]),
        Pooling::Mean => {
            let mut n = 0usize;
            for (row, &m) in rows.chunks_exact(h).zip(mask) {
                if m != 0 {
                    n += 1;
                    for (a, x) in v.iter_mut().zip(row) {
                        *a += x;
                    }
                }
            }
            let inv = 1.0 / (n.max(1) as f32);
            v.iter_mut().for_each(|a| *a *= inv);
        }
        Pooling::Max => {
            v.fill(f32::NEG_INFINITY);
            for (row, &m) in rows.chunks_exact(h).zip(mask) {
                if m != 0 {
                    for (a, x) in v.iter_mut().zip(row) {
                        *a = a.max(*x);
                    }
                }
            }
        }
    }
    v
}

/// L2 normalisation, `v / max(‖v‖, 1e-12)`.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}
