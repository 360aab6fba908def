//! `pare report` end to end on a generated model (offline: the task data sets are small stand-ins
//! placed in a private cache): every section printed, the three files written, figures that agree with
//! `pare embed` and the files on disk, re-analysis from report.json, and bad input refused.

mod common;

use common::{parse_embeddings_f32, s};
use pare_eval::metrics::mean_min_cosine;
use pare_models::testing::{TinySpec, write_tiny_bert};
use pare_report::{Kind, Report, SpeedVerdict};
use std::path::Path;
use std::process::{Command, Output};

const SPEC: TinySpec = TinySpec { hidden: 64, heads: 4, layers: 2, intermediate: 128, max_positions: 64, seed: 11 };

fn pare(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pare"))
        .args(args)
        .env("PARE_CACHE", cache)
        .env_remove("PARE_ISA")
        .env_remove("PARE_SPARSE")
        .output()
        .expect("run pare")
}

/// A private cache holding small stand-ins of the gensim test data.
fn cache(root: &Path) -> std::path::PathBuf {
    let c = root.join("cache");
    let d = c.join("datasets/gensim-test-data/4.4.0");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("lee.cor"),
        b"the model is small and fast\nthe model is fast\na small model\nthe end of the caf\xe9 model, and a fast one\n",
    )
    .unwrap();
    std::fs::write(d.join("similarities0-1.txt"), "1 0.8 0.5 0.2\n0 1 0.4 0.3\n0 0 1 0.1\n0 0 0 1\n").unwrap();
    std::fs::write(
        d.join("wordsim353.tsv"),
        "# stand-in\n# Word 1\tWord 2\tHuman (mean)\nmodel\tsmall\t5.0\nsmall\tfast\t3.0\nthe\tmodel\t1.0\nfast\tand\t2.0\n",
    )
    .unwrap();
    c
}

fn report(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).expect("report.json is a Report")
}

fn embed(cache: &Path, model: &str, texts: &[String], at: &Path) -> Vec<Vec<f32>> {
    let input = at.join("texts.txt");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();
    let o = pare(cache, &["embed", model, "--input", s(&input)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    parse_embeddings_f32(&o.stdout)
}

#[test]
fn quick_report_on_a_generated_model() {
    let t = tempfile::tempdir().unwrap();
    let model = t.path().join("tiny");
    write_tiny_bert(&model, &SPEC).unwrap();
    let c = cache(t.path());
    let out = t.path().join("out");
    let o = pare(&c, &["report", s(&model), "--quick", "--out", s(&out)]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(!stdout.contains('\x1b'), "no colour when stdout is not a terminal");
    for section in [
        "Model Size (MB)",
        "Inference Time",
        "Speed Improvement",
        "Fidelity",
        "Lee document similarity",
        "WordSim-353",
        "COMPRESSION PERFORMANCE SUMMARY",
        "PRUNING RATIO vs SPEEDUP AND FIDELITY",
        "KEY FINDINGS",
        "COMPRESSION TRADE-OFF ANALYSIS",
        "EFFICIENCY RANKING",
        "DEPLOYMENT RECOMMENDATIONS",
    ] {
        assert!(stdout.contains(section), "stdout lacks {section}");
    }
    assert!(stderr.contains("building SparseGPT 50%") && stderr.contains("timing round 2/2") && stderr.contains("ETA"));
    for f in ["report.json", "report.md", "report.html", "build.log"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let r = report(&out);
    assert_eq!(r.schema_version, pare_report::SCHEMA_VERSION);
    assert_eq!(r.settings.seq, 64, "cut to the model's positions");
    let ids: Vec<&str> = r.variants.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "original",
            "int8",
            "sparsegpt-50",
            "sparsegpt-90",
            "magnitude-50",
            "magnitude-90",
            "structured-50",
            "sparsegpt-50-int8"
        ]
    );
    let texts: Vec<String> = {
        let mut t = pare_eval::tasks::fidelity_sentences();
        t.extend(pare_eval::tasks::TaskData::load(&c.join("datasets/gensim-test-data/4.4.0")).unwrap().lee.docs);
        t
    };
    let original = embed(&c, s(&model), &texts, t.path());
    for v in &r.variants {
        let dir = Path::new(v.path.as_deref().unwrap());
        // Bytes on disk, as ls -l gives them.
        assert_eq!(v.file_bytes, std::fs::metadata(dir.join("model.safetensors")).unwrap().len(), "{}", v.id);
        assert!(v.latency.runs == 10 && v.latency.median_ms > 0.0 && v.latency.p90_ms >= v.latency.median_ms);
        // Every timed run kept, by round: 2 rounds × 5 runs at batch 1, 2 × 1 at the larger batch.
        let shape = |t: &pare_report::Timing| t.samples_ms.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(shape(&v.latency), [5, 5], "{}", v.id);
        assert_eq!(shape(v.throughput.as_ref().unwrap()), [1, 1], "{}", v.id);
        let ci = v.speedup_ci.unwrap_or_else(|| panic!("{}: 10 runs are tested", v.id));
        assert!(ci.low <= ci.high, "{}", v.id);
        let verdict =
            if v.kind == Kind::Original { SpeedVerdict::Baseline } else { pare_eval::analysis::verdict(Some(ci)) };
        assert_eq!(v.speed_verdict, verdict, "{}", v.id);
        assert!(v.nonzeros <= v.parameters && v.parameters > 0);
        // Fidelity, as pare embed gives it.
        let (mean, min) = mean_min_cosine(&embed(&c, s(dir), &texts, t.path()), &original);
        assert!((mean - v.fidelity.mean).abs() < 1e-5, "{}: {mean} vs {}", v.id, v.fidelity.mean);
        assert!((min - v.fidelity.worst).abs() < 1e-5, "{}", v.id);
        assert_eq!(v.fidelity.items, texts.len());
        assert!(v.tasks.contains_key("lee") && v.tasks.contains_key("wordsim"));
    }
    let orig = &r.variants[0];
    assert_eq!((orig.kind, orig.speedup, orig.size_ratio), (Kind::Original, 1.0, 1.0));
    let st = r.variant("structured-50").unwrap();
    assert!(st.parameters < orig.parameters, "structured pruning stores fewer parameters");
    let mag = r.variant("magnitude-90").unwrap();
    assert!(mag.nonzeros < orig.nonzeros / 2);
    // The Markdown holds what the terminal showed, without colour.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for f in &r.analysis.findings {
        assert!(md.contains(f.as_str()) && stdout.contains(f.as_str()));
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && !html.contains("<script"));

    // Re-analysis under another budget: measurements kept, recommendations by the rule.
    let again = t.path().join("again");
    let o = pare(&c, &["report", "--from", s(&out.join("report.json")), "--max-loss", "0.9", "--out", s(&again)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r2 = report(&again);
    assert_eq!(r2.variants, r.variants, "timings, speedups and speed tests again from the stored runs");
    // A schema-2 report.json (fidelity named after the cosine, throughput after sentences) reads as 3.
    let mut v2: serde_json::Value = serde_json::from_str(&pare_report::render::json(&r)).unwrap();
    v2["schema_version"] = 2.into();
    v2.as_object_mut().unwrap().remove("task");
    for v in v2["variants"].as_array_mut().unwrap() {
        let f = v["fidelity"].as_object_mut().unwrap();
        for (new, old) in [("mean", "mean_cos"), ("worst", "min_cos"), ("items", "texts")] {
            let x = f.remove(new).unwrap();
            f.insert(old.into(), x);
        }
        for t in ["latency", "throughput"] {
            if let Some(t) = v[t].as_object_mut() {
                let x = t.remove("items_per_s").unwrap();
                t.insert("sentences_per_s".into(), x);
            }
        }
    }
    let v2_json = t.path().join("v2.json");
    std::fs::write(&v2_json, serde_json::to_string(&v2).unwrap()).unwrap();
    let from2 = t.path().join("from2");
    let o = pare(&c, &["report", "--from", s(&v2_json), "--max-loss", "0.9", "--out", s(&from2)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r3 = report(&from2);
    assert_eq!((r3.variants, r3.task), (r2.variants.clone(), pare_report::TaskSpec::sentence_embedding()));
    // Without its timed runs a report cannot be analysed again.
    let mut broken = r.clone();
    broken.variants[1].latency.samples_ms = vec![Vec::new(); 2];
    let broken_json = t.path().join("broken.json");
    std::fs::write(&broken_json, pare_report::render::json(&broken)).unwrap();
    let o = pare(&c, &["report", "--from", s(&broken_json), "--out", s(&t.path().join("broken"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("variant int8 has no timed runs"), "{err}");
    assert_eq!(r2.settings.max_loss, 0.9);
    let smallest_ok =
        r.variants.iter().filter(|v| v.fidelity.mean >= 0.1).min_by_key(|v| v.file_bytes).map(|v| v.id.clone());
    let mobile = r2.analysis.recommendations.iter().find(|x| x.use_case == "Mobile/Edge").unwrap();
    let min_size = r.variants.iter().filter(|v| v.fidelity.mean >= 0.1).map(|v| v.file_bytes).min().unwrap();
    let chosen = r.variant(mobile.variant.as_deref().unwrap()).unwrap();
    assert!(chosen.file_bytes as f64 <= 1.01 * min_size as f64, "{:?} vs {smallest_ok:?}", mobile.variant);
}

#[test]
fn report_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let c = cache(t.path());
    let one_line = |args: &[&str], needle: &str| {
        let o = pare(&c, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: {err}");
    };
    let out = t.path().join("o");
    for ml in ["1.5", "-0.1", "NaN", "1"] {
        one_line(&["report", "x", "--max-loss", ml, "--out", s(&out)], "--max-loss");
    }
    one_line(&["report", "x", "--samples", "0", "--out", s(&out)], "--samples 0");
    let file = t.path().join("file");
    std::fs::write(&file, "x").unwrap();
    one_line(&["report", "x", "--out", s(&file)], "is a file");
    one_line(&["report", "--from", s(&t.path().join("missing.json")), "--out", s(&out)], "cannot read");
    one_line(&["report", "--from", s(&file), "--out", s(&out)], "not a pare report.json");
    let old = t.path().join("old.json");
    std::fs::write(&old, r#"{"schema_version": 1, "variants": []}"#).unwrap();
    one_line(&["report", "--from", s(&old), "--out", s(&out)], "schema_version 1 keeps no timed runs");
    std::fs::write(&old, r#"{"schema_version": 4}"#).unwrap();
    one_line(&["report", "--from", s(&old), "--out", s(&out)], "schema_version 4, this pare reads 3");
    std::fs::write(&old, r#"{"variants": []}"#).unwrap();
    one_line(&["report", "--from", s(&old), "--out", s(&out)], "no schema_version");
    one_line(&["report", s(&t.path().join("no-model")), "--out", s(&out)], "no-model");
    assert!(!out.join("report.json").exists());
}

#[test]
fn calibration_never_overlaps_the_fidelity_sentences() {
    let eval: Vec<String> = pare_eval::tasks::fidelity_sentences().iter().map(|t| t.trim().to_lowercase()).collect();
    for (name, text) in pare_compress::calibration::BUILTIN {
        for line in text.lines().map(|l| l.trim().to_lowercase()).filter(|l| !l.is_empty()) {
            assert!(
                !eval.iter().any(|e| !e.is_empty() && (e.contains(&line) || line.contains(e.as_str()))),
                "{name}: {line:?} is an evaluation text"
            );
        }
    }
}
