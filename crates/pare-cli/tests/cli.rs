//! End-to-end tests of the `pare` binary on tiny generated models: outputs, and bad input answered
//! with one clear line and a non-zero exit code.

mod common;

use common::{parse_embeddings, s};
use pare_formats::writer::{TensorData, write_safetensors};
use pare_models::testing::{TinySpec, tiny_tensors, write_tiny_bert};
use std::path::Path;
use std::process::{Command, Output};

fn pare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pare"))
        .args(args)
        .env_remove("PARE_ISA")
        .env_remove("PARE_BLOCK_ACT")
        .output()
        .expect("run pare")
}

fn pare_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pare"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn tiny() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_tiny_bert(d.path(), &TinySpec::default()).unwrap();
    d
}

/// Asserts failure with exactly one stderr line that contains `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn embed_writes_json_lines_in_input_order() {
    let d = tiny();
    let input = "the model is small\n\nfast!\na small, fast model\n";
    let out = pare_stdin(&["embed", s(d.path()), "--threads", "2"], input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    for (l, want) in lines.iter().zip(input.lines()) {
        assert_eq!(l["text"], want);
        let e: Vec<f64> = l["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(e.len(), 32);
        let norm: f64 = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // --input / --output give the same result, written to the named file.
    let inp = d.path().join("in.txt");
    std::fs::write(&inp, input).unwrap();
    let outp = d.path().join("out.jsonl");
    let out2 = pare(&["embed", s(d.path()), "--input", s(&inp), "--output", s(&outp)]);
    assert!(out2.status.success());
    assert_eq!(std::fs::read_to_string(&outp).unwrap(), text);
}

#[test]
fn inspect_lists_tensors_and_totals() {
    let d = tiny();
    let out = pare(&["inspect", s(d.path())]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("embeddings.word_embeddings.weight"));
    assert!(text.contains("encoder.layer.1.output.dense"));
    let out = pare(&["inspect", s(d.path()), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tensors = v["tensors"].as_array().unwrap();
    let params: u64 = tensors
        .iter()
        .map(|t| t["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).product::<u64>())
        .sum();
    assert_eq!(v["totals"]["parameters"].as_u64().unwrap(), params);
    assert_eq!(v["totals"]["tensors"].as_u64().unwrap() as usize, tensors.len());
    assert_eq!(v["layers"].as_array().unwrap().len(), 12);
}

#[test]
fn bench_json_has_the_statistics() {
    let d = tiny();
    let out = pare(&["bench", s(d.path()), "--seq", "16", "--batch", "2", "--runs", "5", "--warmup", "1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "batch",
        "seq",
        "threads",
        "runs",
        "median_ms",
        "p90_ms",
        "mean_ms",
        "stddev_ms",
        "min_ms",
        "max_ms",
        "samples_ms",
    ] {
        assert!(!v[k].is_null(), "missing {k}");
    }
    assert_eq!(v["samples_ms"].as_array().unwrap().len(), 5);
    assert_eq!((v["batch"].as_u64(), v["seq"].as_u64(), v["threads"].as_u64()), (Some(2), Some(16), Some(2)));
    let (min, med, max) =
        (v["min_ms"].as_f64().unwrap(), v["median_ms"].as_f64().unwrap(), v["max_ms"].as_f64().unwrap());
    assert!(min <= med && med <= max);
}

#[test]
fn missing_directory() {
    assert_one_line_error(&pare(&["embed", "/no/such/model-dir"]), "no such file or directory");
    assert_one_line_error(&pare(&["inspect", "./no-such-dir"]), "no such file or directory");
}

#[test]
fn directory_without_config() {
    let d = tiny();
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    assert_one_line_error(&pare(&["inspect", s(d.path())]), "no config.json");
}

#[test]
fn truncated_safetensors() {
    let d = tiny();
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    assert_one_line_error(&pare(&["bench", s(d.path()), "--seq", "8", "--runs", "1"]), "truncated");
    std::fs::write(&p, &bytes[..5]).unwrap();
    assert_one_line_error(&pare(&["inspect", s(d.path())]), "not a valid safetensors file");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    assert_one_line_error(&pare(&["inspect", s(d.path())]), "not a valid safetensors file");
}

/// Rewrites the tiny model with `edit` applied to its tensors.
fn rewrite(dir: &Path, edit: impl Fn(&mut Vec<TensorData>)) {
    let mut t: Vec<TensorData> = tiny_tensors(&TinySpec::default())
        .into_iter()
        .map(|(name, (shape, v))| TensorData::f32(name, &shape, &v))
        .collect();
    edit(&mut t);
    write_safetensors(&dir.join("model.safetensors"), &t, None).unwrap();
}

#[test]
fn tensor_of_wrong_shape() {
    let d = tiny();
    rewrite(d.path(), |t| {
        let q = t.iter_mut().find(|x| x.name == "encoder.layer.1.attention.self.query.weight").unwrap();
        q.shape = vec![32, 16];
        q.bytes.truncate(32 * 16 * 4);
    });
    assert_one_line_error(
        &pare(&["inspect", s(d.path())]),
        "encoder.layer.1.attention.self.query.weight has shape [32, 16], expected [32, 32]",
    );
}

#[test]
fn missing_tensor_nan_weights_and_unknown_dtype() {
    let d = tiny();
    rewrite(d.path(), |t| t.retain(|x| x.name != "encoder.layer.0.output.dense.bias"));
    assert_one_line_error(&pare(&["inspect", s(d.path())]), "tensor encoder.layer.0.output.dense.bias is missing");
    rewrite(d.path(), |t| {
        let w = t.iter_mut().find(|x| x.name == "encoder.layer.0.intermediate.dense.weight").unwrap();
        w.bytes[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert_one_line_error(&pare(&["embed", s(d.path())]), "non-finite");
    rewrite(d.path(), |t| {
        let w = t.iter_mut().find(|x| x.name == "embeddings.LayerNorm.weight").unwrap();
        w.dtype = pare_formats::Dtype::I32;
    });
    assert_one_line_error(&pare(&["inspect", s(d.path())]), "dtype I32");
    // A dtype safetensors itself does not know.
    let p = d.path().join("model.safetensors");
    let header = br#"{"x":{"dtype":"Q5","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 4]);
    std::fs::write(&p, bytes).unwrap();
    assert_one_line_error(&pare(&["inspect", s(d.path())]), "not a valid safetensors file");
}

#[test]
fn unknown_zoo_name() {
    assert_one_line_error(&pare(&["embed", "no-such-model"]), "unknown model \"no-such-model\"");
    assert_one_line_error(&pare(&["fetch", "no-such-model"]), "unknown model");
}

#[test]
fn unreadable_input_file_leaves_no_output() {
    let d = tiny();
    let outp = d.path().join("out.jsonl");
    let out = pare(&["embed", s(d.path()), "--input", "/no/such/input.txt", "--output", s(&outp)]);
    assert_one_line_error(&out, "cannot read input /no/such/input.txt");
    assert!(!outp.exists());
    let bin = d.path().join("bin.txt");
    std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    assert_one_line_error(&pare(&["embed", s(d.path()), "--input", s(&bin)]), "not UTF-8");
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn nonsense_flags() {
    let d = tiny();
    for (args, needle) in [
        (vec!["bench", s(d.path()), "--threads", "0"], "--threads"),
        (vec!["bench", s(d.path()), "--runs", "-3"], "-3"),
        (vec!["bench", s(d.path()), "--batch", "many"], "many"),
        (vec!["embed"], "MODEL"),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let out = pare(&args);
        assert_one_line_error(&out, needle);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    assert_one_line_error(&pare(&["bench", s(d.path()), "--seq", "5000"]), "--seq 5000");
    let out = Command::new(env!("CARGO_BIN_EXE_pare"))
        .args(["inspect", s(d.path())])
        .env("PARE_ISA", "sse9")
        .output()
        .unwrap();
    assert_one_line_error(&out, "PARE_ISA=\"sse9\"");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_pare"))
        .args(["inspect", s(d.path())])
        .env("PARE_BLOCK_ACT", "int4")
        .output()
        .unwrap();
    assert_one_line_error(&out, "PARE_BLOCK_ACT=int4: expected q8, q8-all or f32");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn isa_cap_gives_the_same_embeddings() {
    let d = tiny();
    let inp = d.path().join("in.txt");
    std::fs::write(&inp, "the small model\n").unwrap();
    let run = |isa: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pare"))
            .args(["embed", s(d.path()), "--input", s(&inp)])
            .env("PARE_ISA", isa)
            .output()
            .unwrap();
        assert!(out.status.success());
        parse_embeddings(&out.stdout).remove(0)
    };
    let base = run("scalar");
    for isa in ["avx2", "avx512", "vnni", "amx"] {
        for (a, b) in run(isa).iter().zip(&base) {
            assert!((a - b).abs() < 1e-5, "{isa}");
        }
    }
}

/// A quantized copy of the tiny model.
fn quantized(d: &Path) -> std::path::PathBuf {
    let out = d.join("q8");
    let r = pare(&["quantize", s(d), "--scheme", "int8", "-o", s(&out)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stdout).lines().last(), Some(s(&out)));
    out
}

#[test]
fn quantize_writes_a_runnable_int8_model() {
    let d = tiny();
    let q = quantized(d.path());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(q.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["quantization_config"]["quant_method"], "compressed-tensors");
    assert_eq!(cfg["quantization_config"]["format"], "int-quantized");
    assert_eq!(cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"]["strategy"], "token");
    assert!(q.join("tokenizer.json").is_file() && q.join("1_Pooling/config.json").is_file());
    let out = pare(&["inspect", s(&q), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = v["tensors"].as_array().unwrap();
    let dtype = |name: &str| t.iter().find(|x| x["name"] == name).map(|x| x["dtype"].as_str().unwrap().to_string());
    assert_eq!(dtype("encoder.layer.0.attention.self.query.weight").as_deref(), Some("I8"));
    assert_eq!(dtype("encoder.layer.0.attention.self.query.weight_scale").as_deref(), Some("F32"));
    assert_eq!(dtype("embeddings.word_embeddings.weight").as_deref(), Some("I8"));
    assert_eq!(dtype("encoder.layer.0.output.LayerNorm.weight").as_deref(), Some("F32"));
    assert!(v["layers"][0]["format"].as_str().unwrap().starts_with("int8"));
    assert!(
        std::fs::metadata(q.join("model.safetensors")).unwrap().len()
            < std::fs::metadata(d.path().join("model.safetensors")).unwrap().len() / 2
    );
    // Float and int8 embeddings agree closely on the tiny model.
    let inp = d.path().join("in.txt");
    std::fs::write(&inp, "the model is small\nfast and small!\n").unwrap();
    let emb = |m: &Path| -> Vec<Vec<f64>> {
        let o = pare(&["embed", s(m), "--input", s(&inp)]);
        assert!(o.status.success());
        parse_embeddings(&o.stdout)
    };
    for (a, b) in emb(d.path()).iter().zip(emb(&q)) {
        let cos: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!(cos > 0.99, "cosine {cos}");
    }
    // Static activations from a calibration file.
    let cal = d.path().join("cal.txt");
    std::fs::write(&cal, "the small model\n\na fast model, and small\n").unwrap();
    let qs = d.path().join("qs");
    let r = pare(&["quantize", s(d.path()), "--scheme", "int8", "--calibrate", s(&cal), "-o", s(&qs)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let st = std::fs::read_to_string(qs.join("config.json")).unwrap();
    assert!(st.contains("\"strategy\": \"tensor\""));
    let out = pare(&["bench", s(&qs), "--seq", "8", "--runs", "2", "--warmup", "0"]);
    assert!(out.status.success());
}

#[test]
fn quantize_bad_input() {
    let d = tiny();
    let q = quantized(d.path());
    // Already quantized.
    assert_one_line_error(
        &pare(&["quantize", s(&q), "--scheme", "int8", "-o", s(&d.path().join("again"))]),
        "already quantized",
    );
    // Unknown scheme.
    let out = pare(&["quantize", s(d.path()), "--scheme", "int3", "-o", s(&d.path().join("x"))]);
    assert_one_line_error(&out, "int3");
    assert_eq!(out.status.code(), Some(2));
    // Empty calibration file (blank lines only).
    let cal = d.path().join("empty.txt");
    std::fs::write(&cal, "\n  \n").unwrap();
    assert_one_line_error(
        &pare(&["quantize", s(d.path()), "--scheme", "int8", "--calibrate", s(&cal), "-o", s(&d.path().join("y"))]),
        "holds no text",
    );
    // Missing calibration file.
    assert_one_line_error(
        &pare(&[
            "quantize",
            s(d.path()),
            "--scheme",
            "int8",
            "--calibrate",
            "/no/cal.txt",
            "-o",
            s(&d.path().join("y")),
        ]),
        "cannot read calibration file",
    );
    // Output exists and is not empty; --force replaces it.
    assert_one_line_error(&pare(&["quantize", s(d.path()), "--scheme", "int8", "-o", s(&q)]), "not empty (use --force");
    let r = pare(&["quantize", s(d.path()), "--scheme", "int8", "-o", s(&q), "--force"]);
    assert!(r.status.success());
    // The input directory itself.
    assert_one_line_error(
        &pare(&["quantize", s(d.path()), "--scheme", "int8", "-o", s(d.path()), "--force"]),
        "is the input model",
    );
    // Unknown layer to keep in float.
    assert_one_line_error(
        &pare(&["quantize", s(d.path()), "--scheme", "int8", "--keep-float", "nope", "-o", s(&d.path().join("z"))]),
        "--keep-float nope",
    );
    // Nothing half-written is left behind.
    for name in ["again", "x", "y", "z"] {
        assert!(!d.path().join(name).exists(), "{name} was created");
    }
    let staging: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
        .collect();
    assert!(staging.is_empty());
}

#[test]
fn decompress_roundtrip() {
    let d = tiny();
    let q = quantized(d.path());
    let dense = d.path().join("dense");
    let r = pare(&["decompress", s(&q), "-o", s(&dense)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let cfg = std::fs::read_to_string(dense.join("config.json")).unwrap();
    assert!(!cfg.contains("quantization_config"));
    let out = pare(&["inspect", s(&dense), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["tensors"].as_array().unwrap().iter().all(|t| t["dtype"] == "F32"));
}

#[test]
fn malformed_gguf_files() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.gguf");
    std::fs::write(&bad, b"GGML\x03\0\0\0rest").unwrap();
    assert_one_line_error(&pare(&["inspect", s(&bad)]), "not a GGUF file");
    let mut v2 = b"GGUF".to_vec();
    v2.extend(9u32.to_le_bytes());
    std::fs::write(&bad, &v2).unwrap();
    assert_one_line_error(&pare(&["inspect", s(&bad)]), "GGUF version 9");
    let mut cut = b"GGUF".to_vec();
    cut.extend(3u32.to_le_bytes());
    cut.extend(5u64.to_le_bytes());
    std::fs::write(&bad, &cut).unwrap();
    assert_one_line_error(&pare(&["inspect", s(&bad)]), "truncated");
}

#[test]
fn decoder_of_an_unsupported_architecture() {
    // A valid GGUF header with general.architecture = "gpt2" and nothing else.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    let key = b"general.architecture";
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key);
    b.extend(8u32.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(b"gpt2");
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("m.gguf");
    std::fs::write(&path, &b).unwrap();
    for args in [vec!["generate", s(&path), "--prompt", "Hi"], vec!["bench", s(&path)]] {
        let out = pare(&args);
        assert_one_line_error(&out, "architecture \"gpt2\"");
        assert!(String::from_utf8_lossy(&out.stderr).contains("\"llama\""), "names the supported architecture");
    }
}
