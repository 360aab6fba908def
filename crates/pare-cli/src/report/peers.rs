//! ONNX Runtime rows of `pare report --peers`, from the project's own script (bench/peers/ort_peer.py,
//! built into the binary), run on the same weights in the same sweep.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// The peer script.
const SCRIPT: &str = include_str!("../../../../bench/peers/ort_peer.py");

/// The Python that runs the peers: `PARE_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("PARE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Why the peers cannot run here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    let out = Command::new(python()).args(["-c", "import onnxruntime, onnx, numpy, safetensors, tokenizers"]).output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("import failed")
                .trim()
                .to_string(),
        ),
        Err(e) => Some(format!("cannot run {}: {e}", python())),
    }
}

/// What the script measured.
pub struct PeerRun {
    pub engine: String,
    pub file_bytes: u64,
    pub latency_ms: Vec<f64>,
    pub throughput_ms: Vec<f64>,
    pub embeddings: Vec<Vec<f32>>,
}

/// Runs ONNX Runtime (`variant` fp32 or int8 of its own graph, or the graph `onnx`) on the model in
/// `model_dir`, embedding `texts`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model_dir: &Path,
    variant: &str,
    onnx: Option<&Path>,
    work: &Path,
    texts: &[String],
    seq: usize,
    threads: usize,
    runs: usize,
    big: (usize, usize),
) -> Result<PeerRun> {
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let script = work.join("ort_peer.py");
    std::fs::write(&script, SCRIPT).with_context(|| format!("cannot write {}", script.display()))?;
    let texts_file = work.join("texts.json");
    std::fs::write(&texts_file, serde_json::to_vec(texts)?)?;
    let mut cmd = Command::new(python());
    cmd.arg(&script).arg(model_dir);
    match onnx {
        Some(file) => cmd.arg("--onnx").arg(file),
        None => cmd.args(["--variant", variant]),
    };
    let out = cmd
        .args(["--seq", &seq.to_string(), "--threads", &threads.to_string()])
        .args(["--runs", &runs.to_string(), "--big-batch", &big.0.to_string(), "--big-runs", &big.1.to_string()])
        .arg("--texts")
        .arg(&texts_file)
        .arg("--work")
        .arg(work)
        .output()
        .with_context(|| format!("cannot run {}", python()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "ONNX Runtime peer ({variant}) failed: {}",
            err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ONNX Runtime peer printed no JSON")?;
    let floats = |k: &str| -> Vec<f64> {
        v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default()
    };
    let embeddings = v["embeddings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e.as_array()
                        .map(|r| r.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(PeerRun {
        engine: v["engine"].as_str().unwrap_or("onnxruntime").to_string(),
        file_bytes: v["file_bytes"].as_u64().unwrap_or(0),
        latency_ms: floats("latency_ms"),
        throughput_ms: floats("throughput_ms"),
        embeddings,
    })
}
