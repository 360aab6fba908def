//! all-MiniLM-L6-v2 against embeddings computed by PyTorch + transformers in float32
//! (tests/fixtures/minilm/reference.json, made by make_reference.py beside it).
//! Needs the real model: ignored by default, run by `scripts/test` (which fetches it first).

use pare_formats::{ModelDir, zoo};
use pare_models::SentenceEncoder;
use serde::Deserialize;

/// Cosine to the PyTorch embedding, at least.
const MIN_COSINE: f64 = 0.99999;
/// Largest element-wise difference to the PyTorch embedding, at most.
const MAX_ABS_DIFF: f64 = 1e-4;

#[derive(Deserialize)]
struct Record {
    text: String,
    token_ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Fixture {
    records: Vec<Record>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/minilm/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture json")
}

fn minilm() -> SentenceEncoder {
    let dir = zoo::resolve("all-minilm-l6-v2", &mut |m| eprintln!("{m}")).expect("fetch all-minilm-l6-v2");
    SentenceEncoder::load(&ModelDir::open(dir).unwrap()).expect("load")
}

#[test]
#[ignore = "needs the all-minilm-l6-v2 model (scripts/test fetches it)"]
fn minilm_matches_pytorch() {
    let fx = fixture();
    assert_eq!(fx.records.len(), 32);
    let enc = minilm();
    let texts: Vec<String> = fx.records.iter().map(|r| r.text.clone()).collect();
    // Batched embedding (padding inside batches) and one-by-one must both match.
    let batched = enc.embed(&texts).unwrap();
    let mut worst = (1.0f64, 0.0f64);
    for (r, e) in fx.records.iter().zip(&batched) {
        let ids = enc.tokenize(&r.text).unwrap();
        assert_eq!(ids, r.token_ids, "token ids of {:?}", r.text);
        let single = enc.embed(std::slice::from_ref(&r.text)).unwrap().remove(0);
        for got in [e, &single] {
            let dot: f64 = got.iter().zip(&r.embedding).map(|(a, b)| *a as f64 * *b as f64).sum();
            let na: f64 = got.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = r.embedding.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
            let cos = dot / (na * nb);
            let diff = got.iter().zip(&r.embedding).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
            worst = (worst.0.min(cos), worst.1.max(diff));
            assert!(cos >= MIN_COSINE, "{:?}: cosine {cos}", r.text);
            assert!(diff <= MAX_ABS_DIFF, "{:?}: max |diff| {diff}", r.text);
        }
    }
    eprintln!("all-MiniLM-L6-v2 vs PyTorch: min cosine {:.7}, max |diff| {:.2e}", worst.0, worst.1);
}
