//! Helpers of the real-model tests: the model, fidelity to the PyTorch fixture, and the
//! compressed-tensors check.
#![allow(dead_code)]

use pare_formats::{ModelDir, zoo};
use pare_models::SentenceEncoder;
use std::path::Path;
use std::process::Command;

pub fn minilm() -> ModelDir {
    let dir = zoo::resolve("all-minilm-l6-v2", &mut |m| eprintln!("{m}")).expect("fetch all-minilm-l6-v2");
    ModelDir::open(dir).unwrap()
}

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// (mean, min) cosine of the model's embeddings to the fixture's PyTorch float32 embeddings.
pub fn fidelity(dir: &Path) -> (f64, f64) {
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/minilm/reference.json")).unwrap())
            .unwrap();
    let recs = fx["records"].as_array().unwrap();
    let texts: Vec<String> = recs.iter().map(|r| r["text"].as_str().unwrap().to_string()).collect();
    let enc = SentenceEncoder::load(&ModelDir::open(dir).unwrap()).unwrap();
    let embs = enc.embed(&texts).unwrap();
    let cos: Vec<f64> = recs
        .iter()
        .zip(&embs)
        .map(|(r, e)| {
            let want: Vec<f64> = r["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let dot: f64 = e.iter().zip(&want).map(|(a, b)| *a as f64 * b).sum();
            let na = e.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            let nb = want.iter().map(|b| b * b).sum::<f64>().sqrt();
            dot / (na * nb)
        })
        .collect();
    (cos.iter().sum::<f64>() / cos.len() as f64, cos.iter().copied().fold(1.0, f64::min))
}

/// Runs scripts/check_compressed_tensors.py (compressed-tensors reads `compressed`, every weight must
/// equal the one in `dense`, pare's own float export of it) and returns the line it prints: which
/// release read how many tensors in which layout.
pub fn check_compressed_tensors(compressed: &Path, dense: &Path) -> String {
    let env = Command::new(repo().join("scripts/python-env")).output().expect("run scripts/python-env");
    assert!(env.status.success(), "scripts/python-env: {}", String::from_utf8_lossy(&env.stderr));
    let python = String::from_utf8(env.stdout).unwrap().lines().last().unwrap().trim().to_string();
    let out = Command::new(&python)
        .arg(repo().join("scripts/check_compressed_tensors.py"))
        .args([compressed, dense])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("{}: {said}", compressed.display());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    said
}
