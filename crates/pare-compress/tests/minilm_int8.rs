//! int8 all-MiniLM-L6-v2 against PyTorch float32 embeddings (tests/fixtures/minilm/reference.json):
//! size on disk, fidelity, and the compressed-tensors package reading pare's weights back.
//! Needs the real model: ignored by default, run by `scripts/test`.

mod common;

use common::{check_compressed_tensors, fidelity, minilm};
use pare_compress::quantize::{ActivationMode, QuantizeOptions, quantize};
use pare_formats::ModelDir;

/// Issue targets for the default scheme.
const MAX_FILE_BYTES: u64 = 24_000_000;
const MIN_MEAN_COSINE: f64 = 0.998;
const MIN_MIN_COSINE: f64 = 0.995;

#[test]
#[ignore = "needs the all-minilm-l6-v2 model (scripts/test fetches it)"]
fn int8_default_meets_size_and_fidelity() {
    let src = minilm();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("int8");
    let summary = quantize(&src, &out, &QuantizeOptions::default(), &mut |_| {}).unwrap();
    let bytes = std::fs::metadata(out.join("model.safetensors")).unwrap().len();
    let (mean, min) = fidelity(&out);
    eprintln!(
        "int8: {bytes} bytes ({:.3}× of {}), cosine to PyTorch f32 mean {mean:.5} min {min:.5}",
        bytes as f64 / summary.file_bytes_before as f64,
        summary.file_bytes_before
    );
    assert!(bytes <= MAX_FILE_BYTES, "{bytes} bytes > {MAX_FILE_BYTES}");
    assert!(mean >= MIN_MEAN_COSINE, "mean cosine {mean}");
    assert!(min >= MIN_MIN_COSINE, "min cosine {min}");
}

#[test]
#[ignore = "needs the all-minilm-l6-v2 model (scripts/test fetches it)"]
fn int8_static_calibrated_is_recorded_and_close() {
    let src = minilm();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("int8s");
    let opts = QuantizeOptions { activations: ActivationMode::Static, ..QuantizeOptions::default() };
    quantize(&src, &out, &opts, &mut |_| {}).unwrap();
    let cfg = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(cfg.contains("\"dynamic\": false") && cfg.contains("\"strategy\": \"tensor\""));
    assert!(cfg.contains(pare_compress::calibration::DEFAULT_NAME), "calibration source recorded");
    let (mean, min) = fidelity(&out);
    eprintln!("int8 static per-tensor: cosine mean {mean:.5} min {min:.5}");
    // Static per-tensor ranges are coarser than per-token ones; this guards against regressions.
    assert!(mean >= 0.997 && min >= 0.985, "static: mean {mean} min {min}");
}

#[test]
#[ignore = "needs the all-minilm-l6-v2 model and the Python environment of scripts/python-env"]
fn compressed_tensors_reads_pare_int8_weights() {
    let src = minilm();
    let tmp = tempfile::tempdir().unwrap();
    let (q, dense) = (tmp.path().join("int8"), tmp.path().join("dense"));
    quantize(&src, &q, &QuantizeOptions::default(), &mut |_| {}).unwrap();
    pare_compress::decompress::decompress(&ModelDir::open(&q).unwrap(), &dense, false, &mut |_| {}).unwrap();
    // The current release, as transformers drives it: 36 Linears and 3 embedding tables.
    let said = check_compressed_tensors(&q, &dense);
    assert!(said.contains("read 39 tensors (int-quantized, no sparsity)"), "{said}");
}
