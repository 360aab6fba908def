//! `pare export --format onnx`: the files it writes and its bad-input errors on tiny generated models,
//! and (ignored: needs all-minilm-l6-v2 and the Python environment of scripts/python-env) ONNX Runtime
//! running the exported float, int8 dynamic, int8 static and pruned + int8 graphs of the real model,
//! compared with pare's own embeddings of the same directories.

mod common;

use common::{ok, one_line, pare, parse_embeddings_f32, python, s};
use pare_models::testing::{TinyLlama, TinySpec, write_tiny_bert, write_tiny_llama};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tiny() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_tiny_bert(d.path(), &TinySpec::default()).unwrap();
    d
}

#[test]
fn export_writes_the_graph_and_the_tokenizer_files() {
    let d = tiny();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("onnx");
    let o = ok(pare(&["export", s(d.path()), "--format", "onnx", "-o", s(&out)]));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), s(&out));
    for f in ["model.onnx", "config.json", "tokenizer.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join("model.safetensors").exists(), "the weights live in the graph");
    // ModelProto starts with ir_version (field 1) = 8, then producer_name "pare".
    let bytes = std::fs::read(out.join("model.onnx")).unwrap();
    assert_eq!(&bytes[..8], &[0x08, 0x08, 0x12, 0x04, b'p', b'a', b'r', b'e']);

    // The int8 model is written as integers, every Linear layer of it (the tiny model's float
    // embedding tables keep the file from shrinking four times; the real model's test checks that).
    let q = t.path().join("int8");
    ok(pare(&["quantize", s(d.path()), "--scheme", "int8", "-o", s(&q)]));
    let qo = t.path().join("int8-onnx");
    let log = ok(pare(&["export", s(&q), "-o", s(&qo)]));
    let err = String::from_utf8_lossy(&log.stderr);
    assert!(err.contains("int8 Linear layers as integer products") && err.contains(", 0 in float"), "{err}");
    let (f, i) = (bytes.len() as f64, std::fs::metadata(qo.join("model.onnx")).unwrap().len() as f64);
    assert!(i < 0.9 * f, "int8 graph {i} bytes against float {f}");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(qo.join("config.json")).unwrap()).unwrap();
    assert!(
        cfg.get("quantization_config").is_none(),
        "the graph holds the weights; config.json must not describe them"
    );

    // --dequantize writes the int8 model's float values.
    let dq = t.path().join("dq");
    ok(pare(&["export", s(&q), "-o", s(&dq), "--dequantize"]));
    assert!(std::fs::metadata(dq.join("model.onnx")).unwrap().len() as f64 > 0.9 * f);
}

#[test]
fn export_refuses_bad_input_in_one_line() {
    let d = tiny();
    let t = tempfile::tempdir().unwrap();

    // A decoder: not covered.
    let llama = t.path().join("llama");
    write_tiny_llama(&llama, &TinyLlama::default()).unwrap();
    one_line(pare(&["export", s(&llama), "-o", s(&t.path().join("x"))]), "covers BERT encoders");
    assert!(!t.path().join("x").exists(), "nothing written");

    // An output directory that exists and is not empty.
    let busy = t.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    one_line(pare(&["export", s(d.path()), "-o", s(&busy)]), "exists and is not empty");
    assert_eq!(std::fs::read_to_string(busy.join("keep.txt")).unwrap(), "mine", "left as it was");
    // --force replaces it.
    ok(pare(&["export", s(d.path()), "-o", s(&busy), "--force"]));
    assert!(busy.join("model.onnx").is_file() && !busy.join("keep.txt").exists());

    // A missing model.
    one_line(pare(&["export", s(&t.path().join("nope")), "-o", s(&t.path().join("y"))]), "nope");

    // A format pare does not write: a usage error (exit 2), one line.
    let o = pare(&["export", s(d.path()), "--format", "tflite", "-o", s(&t.path().join("z"))]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{err}");
    assert!(err.contains("tflite"), "{err}");

    // A corrupt weights file.
    let bad = t.path().join("bad");
    write_tiny_bert(&bad, &TinySpec::default()).unwrap();
    let w = bad.join("model.safetensors");
    let len = std::fs::metadata(&w).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&w).unwrap().set_len(len / 2).unwrap();
    one_line(pare(&["export", s(&bad), "-o", s(&t.path().join("w"))]), "model.safetensors");
    assert!(!t.path().join("w").exists(), "nothing written");
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

const TEXTS: &str = "Model compression makes neural networks smaller and faster.\n\
The cat sat on the mat.\n\
Quantization stores weights in fewer bits, and pruning removes the weights that matter least.\n\
A short one.\n\
ONNX Runtime runs exported graphs on many platforms, from servers to phones, with its own kernels.\n\
Sparse matrices skip the zeros; dense ones are simpler to multiply.\n";

/// ONNX Runtime's sentence embeddings of the exported `dir`: one text at a time, and as one padded batch.
fn ort(py: &Path, dir: &Path, texts: &Path) -> (Vec<Vec<f32>>, Vec<Vec<f32>>, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_onnx.py");
    let o = Command::new(py).arg(script).arg(dir).arg(texts).output().unwrap();
    assert!(o.status.success(), "check_onnx.py {}: {}", dir.display(), String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = |k: &str| -> Vec<Vec<f32>> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
            .collect()
    };
    (rows("embeddings"), rows("batched"), v["ops"].clone())
}

fn embed(dir: &Path, texts: &Path) -> Vec<Vec<f32>> {
    let o = ok(pare(&["embed", s(dir), "--input", s(texts), "--threads", "1"]));
    parse_embeddings_f32(&o.stdout)
}

fn min_cos(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| cosine(x, y)).fold(f64::INFINITY, f64::min)
}

/// Float graphs follow pare's float model to float rounding (measured: 1 − 1e-7).
const FLOAT_COS: f64 = 0.9999;
/// int8 graphs follow pare's int8 run of the same directory (measured on all-minilm-l6-v2, AVX2:
/// static 1.0000000 (the same integers), dynamic 0.99989 (per-token ranges computed by other float
/// operations now and then round an activation the other way)).
const INT8_COS: f64 = 0.999;

#[test]
#[ignore = "needs all-minilm-l6-v2 and the Python environment (scripts/python-env)"]
fn onnx_runtime_runs_the_exported_minilm_as_pare_does() {
    let py = PathBuf::from(python());
    let t = tempfile::tempdir().unwrap();
    let texts = t.path().join("texts.txt");
    std::fs::write(&texts, TEXTS).unwrap();
    let src = String::from_utf8(ok(pare(&["fetch", "all-minilm-l6-v2"])).stdout).unwrap().trim().to_string();
    let src = PathBuf::from(src);
    let model = |name: &str| t.path().join(name);
    ok(pare(&["quantize", s(&src), "--scheme", "int8", "-o", s(&model("int8"))]));
    ok(pare(&["quantize", s(&src), "--scheme", "int8", "--activations", "static", "-o", s(&model("static"))]));
    ok(pare(&["prune", s(&src), "--method", "magnitude", "--sparsity", "0.5", "-o", s(&model("mag50"))]));
    ok(pare(&["quantize", s(&model("mag50")), "--scheme", "int8", "-o", s(&model("mag50-int8"))]));

    let cases: [(&str, &Path, f64, &[&str]); 5] = [
        ("float", &src, FLOAT_COS, &["MatMul"]),
        ("int8 dynamic", &model("int8"), INT8_COS, &["MatMulInteger"]),
        ("int8 static", &model("static"), INT8_COS, &["QuantizeLinear", "DequantizeLinear"]),
        ("pruned 50%", &model("mag50"), FLOAT_COS, &["MatMul"]),
        ("pruned 50% + int8", &model("mag50-int8"), INT8_COS, &["MatMulInteger"]),
    ];
    let mut float_bytes = 0;
    for (label, dir, tol, ops) in cases {
        let out = t.path().join(format!("{}.onnx", label.replace([' ', '%', '+'], "_")));
        ok(pare(&["export", s(dir), "-o", s(&out)]));
        let (single, batched, found) = ort(&py, &out, &texts);
        let pare_emb = embed(dir, &texts);
        let c = min_cos(&single, &pare_emb);
        let cb = min_cos(&batched, &single);
        let bytes = std::fs::metadata(out.join("model.onnx")).unwrap().len();
        eprintln!("{label}: ONNX Runtime vs pare min cosine {c:.7}; padded batch vs one by one {cb:.7}; {bytes} bytes");
        assert!(c >= tol, "{label}: ONNX Runtime against pare, min cosine {c} < {tol}");
        assert!(cb >= 0.99999, "{label}: padding changes the embeddings (min cosine {cb})");
        for op in ops {
            assert!(found.get(op).is_some(), "{label}: no {op} in the graph: {found}");
        }
        if label == "float" {
            float_bytes = bytes;
        }
        if tol == INT8_COS {
            assert!(bytes * 3 < float_bytes, "{label}: int8 graph {bytes} bytes against float {float_bytes}");
        }
    }

    // The float export of an int8 model is the int8 model's float values: pare decompress's model.
    let dq = t.path().join("int8-dequantized.onnx");
    ok(pare(&["export", s(&model("int8")), "-o", s(&dq), "--dequantize"]));
    let dec = t.path().join("int8-decompressed");
    ok(pare(&["decompress", s(&model("int8")), "-o", s(&dec)]));
    let (single, _, _) = ort(&py, &dq, &texts);
    let c = min_cos(&single, &embed(&dec, &texts));
    assert!(c >= FLOAT_COS, "dequantized export against pare decompress: min cosine {c}");
}
