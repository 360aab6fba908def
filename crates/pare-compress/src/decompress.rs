//! Decompression: any model pare runs, written back as a plain float32 checkpoint (weights
//! dequantized and densified), for tools that read only dense models and for cross-checks.

use crate::error::Result;
use crate::output::{check_destination, read_config, write_model_dir};
use pare_formats::quant_config::PARE_EXTENSION_KEY;
use pare_formats::writer::TensorData;
use pare_formats::{ModelDir, TensorFile};
use pare_models::SentenceEncoder;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Suffixes of tensors that only describe a compressed encoding (quantization parameters, and the
/// parts of compressed-tensors' sparse layouts).
const ENCODING_SUFFIXES: [&str; 8] = [
    ".weight_scale",
    ".weight_zero_point",
    ".input_scale",
    ".input_zero_point",
    ".bitmask",
    ".row_offsets",
    ".shape",
    ".compressed",
];

/// Writes `src` as a dense float32 model to `out`. Returns the output directory.
pub fn decompress(src: &ModelDir, out: &Path, force: bool, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    check_destination(&src.root, out, force)?;
    let enc = SentenceEncoder::load(src)?;
    let file = TensorFile::open(src.file("model.safetensors"))?;
    let mut tensors: Vec<TensorData> =
        enc.model.export_f32().into_iter().map(|(name, shape, v)| TensorData::f32(name, &shape, &v)).collect();
    // Tensors outside the model's parameters (e.g. BERT's position_ids buffer) are kept as they are.
    let known: HashSet<String> = tensors.iter().map(|t| t.name.clone()).collect();
    let prefix = if file.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
    for info in file.infos() {
        let bare = info.name.strip_prefix(prefix).unwrap_or(&info.name);
        if known.contains(bare) || ENCODING_SUFFIXES.iter().any(|s| bare.ends_with(s)) {
            continue;
        }
        tensors.push(TensorData {
            name: info.name.clone(),
            dtype: file.dtype(&info.name)?,
            shape: info.shape.clone(),
            bytes: file.bytes(&info.name)?.to_vec(),
        });
    }
    let mut config = read_config(&src.root)?;
    if let Some(obj) = config.as_object_mut() {
        obj.remove("quantization_config");
        obj.remove("compression_config");
        obj.remove(PARE_EXTENSION_KEY);
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let dir = write_model_dir(&src.root, out, &config, &tensors, metadata)?;
    log(&format!("wrote a dense float32 model ({} tensors) to {}", tensors.len(), dir.display()));
    Ok(dir)
}
