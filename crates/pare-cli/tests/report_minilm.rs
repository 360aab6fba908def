//! `pare report --quick --peers` on all-minilm-l6-v2: figures agree with `pare bench`, `pare embed` and
//! the files on disk, the ONNX Runtime rows (its float graph, its own int8, pare's exported int8) are
//! there, and report.html renders in headless Chromium with its plots drawn. Needs the model, the gensim
//! test data, Debian's chromium and the Python environment of scripts/python-env (scripts/test provides
//! them all): ignored by default.

mod common;

use common::{parse_embeddings_f32, python, s};
use pare_eval::metrics::mean_min_cosine;
use pare_report::Report;
use std::path::Path;
use std::process::{Command, Output};

fn pare(args: &[&str]) -> Output {
    pare_with(args, &[])
}

fn pare_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_pare"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("PARE_ISA")
        .output()
        .expect("run pare");
    assert!(o.status.success(), "pare {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn embed(model: &str, input: &Path) -> Vec<Vec<f32>> {
    parse_embeddings_f32(&pare(&["embed", model, "--input", s(input)]).stdout)
}

/// Pixels of `png` within a small distance of `rgb`.
fn count_colour(rgba: &[u8], channels: usize, rgb: [u8; 3]) -> usize {
    rgba.chunks_exact(channels).filter(|p| (0..3).all(|i| (i32::from(p[i]) - i32::from(rgb[i])).abs() <= 12)).count()
}

/// The colour `c` drawn with `opacity` over white.
fn hex(c: &str, opacity: f64) -> [u8; 3] {
    let v = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8].map(|x| (f64::from(x) * opacity + 255.0 * (1.0 - opacity)).round() as u8)
}

#[test]
#[ignore = "needs all-minilm-l6-v2, the gensim test data, chromium and scripts/python-env (scripts/test provides them)"]
fn quick_report_agrees_and_renders() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("report");
    let python = python();
    pare_with(&["report", "all-minilm-l6-v2", "--quick", "--peers", "--out", s(&out)], &[("PARE_PYTHON", &python)]);
    let r: Report = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();

    // ONNX Runtime: its float graph is the original model; pare's int8 graph is pare's int8 model (the
    // fidelity of the two agree closely); ONNX Runtime's own int8 is there to compare with.
    let fid = |id: &str| r.variant(id).unwrap_or_else(|| panic!("no {id} row")).fidelity.mean;
    assert!(fid("onnxruntime-fp32") > 0.9999, "ONNX Runtime float: {}", fid("onnxruntime-fp32"));
    assert!(
        (fid("onnxruntime-pare-int8") - fid("int8")).abs() < 5e-4,
        "pare's int8 graph in ONNX Runtime {} against pare's int8 {}",
        fid("onnxruntime-pare-int8"),
        fid("int8")
    );
    let ort_int8 = r.variant("onnxruntime-int8").unwrap();
    eprintln!(
        "mean cosine to the original: pare int8 {:.5}, in ONNX Runtime {:.5}, ONNX Runtime's own int8 {:.5}",
        fid("int8"),
        fid("onnxruntime-pare-int8"),
        ort_int8.fidelity.mean
    );

    // Bytes on disk.
    for v in r.variants.iter().filter(|v| v.kind != pare_report::Kind::Peer) {
        let dir = Path::new(v.path.as_deref().unwrap());
        assert_eq!(v.file_bytes, std::fs::metadata(dir.join("model.safetensors")).unwrap().len(), "{}", v.id);
    }
    // Latency: `pare bench` on the same directories, within run-to-run noise (a loose bound: the host
    // is shared; this checks the report times the same thing, not the speed itself).
    for id in ["original", "int8"] {
        let v = r.variant(id).unwrap();
        let b: serde_json::Value =
            serde_json::from_slice(&pare(&["bench", v.path.as_deref().unwrap(), "--runs", "30", "--json"]).stdout)
                .unwrap();
        let ratio = b["median_ms"].as_f64().unwrap() / v.latency.median_ms;
        eprintln!("{id}: pare bench {:.3} ms, report {:.3} ms", b["median_ms"].as_f64().unwrap(), v.latency.median_ms);
        assert!((0.5..2.0).contains(&ratio), "{id}: bench / report = {ratio}");
    }
    // Fidelity: `pare embed` of the same texts.
    let data =
        pare_eval::tasks::TaskData::load(&pare_formats::zoo::model_dir(&pare_formats::zoo::DATASETS[0])).unwrap();
    let mut texts = pare_eval::tasks::fidelity_sentences();
    texts.extend(data.lee.docs.iter().cloned());
    // embed reads one text per line: the documents and sentences hold no newline.
    assert!(texts.iter().all(|t| !t.contains('\n')));
    // Calibration text never overlaps the evaluation documents.
    for (name, cal) in pare_compress::calibration::BUILTIN {
        for line in cal.lines().filter(|l| l.split_whitespace().count() >= 6) {
            assert!(!data.lee.docs.iter().any(|d| d.contains(line)), "{name}: {line:?} is in the Lee corpus");
        }
    }
    let input = t.path().join("texts.txt");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();
    let original = embed("all-minilm-l6-v2", &input);
    for id in ["int8", "sparsegpt-50"] {
        let v = r.variant(id).unwrap();
        let (mean, _) = mean_min_cosine(&embed(v.path.as_deref().unwrap(), &input), &original);
        assert!((mean - v.fidelity.mean).abs() < 1e-5, "{id}: embed {mean} vs report {}", v.fidelity.mean);
    }
    // Task metrics of the original, as published for MiniLM (Lee Pearson ≈ 0.656, WordSim Spearman ≈ 0.729).
    let o = r.variant("original").unwrap();
    assert!((o.tasks["lee"] - 0.656).abs() < 0.002 && (o.tasks["wordsim"] - 0.729).abs() < 0.002, "{:?}", o.tasks);

    // report.html in headless Chromium: the screenshot shows the bars, both curves and the scatter.
    let shot = t.path().join("report.png");
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is not installed (scripts/test installs Debian's chromium)");
    let url = format!("file://{}", out.join("report.html").display());
    let o = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,7000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(o.status.success() && shot.is_file(), "chromium: {}", String::from_utf8_lossy(&o.stderr));
    let mut decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    // Colours of crates/pare-report/src/render/svg.rs; scatter points are drawn at opacity 0.85.
    for (what, colour, opacity, min) in [
        ("bars", "#4c78a8", 1.0, 20_000),
        ("pale bars (over budget)", "#b8c6d9", 1.0, 5_000),
        ("first pruning curve", "#f58518", 1.0, 300),
        ("second pruning curve", "#54a24b", 1.0, 300),
        ("scatter points", "#e45756", 0.85, 300),
    ] {
        let n = count_colour(px, channels, hex(colour, opacity));
        eprintln!("{what}: {n} pixels of {colour}");
        assert!(n >= min, "{what}: {n} pixels of {colour} in the screenshot, expected ≥ {min}");
    }
}
