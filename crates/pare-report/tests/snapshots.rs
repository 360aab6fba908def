//! Snapshot tests of the renderers on a fixed Report (tests/fixtures/report.json, a real MiniLM sweep
//! with paths shortened). Its timed runs are reconstructed: the sweep was written in schema 1, which kept
//! only their statistics, so each variant's runs were interpolated between its recorded min, quartiles
//! (median ∓ half the interquartile range), median, p90 and max, shuffled in a fixed order and dealt to the
//! rounds (a peer's into one block); the timing statistics, speed tests and analysis were then computed
//! from them as `pare report --from` does. Every other figure is as measured.
//!
//! `UPDATE_SNAPSHOTS=1 cargo test -p pare-report` rewrites the snapshots after an intended change;
//! otherwise a difference fails and the new rendering is left beside the snapshot as `*.new` for review.

use pare_report::{Report, SCHEMA_VERSION, render};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn fixture() -> Report {
    let text = std::fs::read_to_string(dir().join("fixtures/report.json")).unwrap();
    serde_json::from_str(&text).expect("the fixture is a Report")
}

fn check(name: &str, actual: &str) {
    let path = dir().join("snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_SNAPSHOTS=1", path.display()));
    if expected != actual {
        let new = path.with_extension(format!("{}.new", path.extension().unwrap().to_string_lossy()));
        std::fs::write(&new, actual).unwrap();
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(expected.lines().count());
        panic!(
            "{name} differs from its snapshot at line {}:\n  snapshot: {:?}\n  rendered: {:?}\n(new rendering in {})",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line),
            new.display()
        );
    }
}

#[test]
fn terminal_plain() {
    let out = render::terminal(&fixture(), false);
    assert!(!out.contains('\x1b'), "no colour when asked for none");
    check("report.txt", &out);
}

#[test]
fn terminal_coloured() {
    let out = render::terminal(&fixture(), true);
    assert!(out.contains("\x1b[32m") && out.contains("\x1b[0m"));
    check("report.ansi.txt", &out);
}

#[test]
fn markdown() {
    check("report.md", &render::markdown(&fixture()));
}

#[test]
fn html() {
    let out = render::html(&fixture());
    // Self-contained: no scripts, no external resources.
    for banned in ["<script", "http://", "https://", "<link", "@import", "url("] {
        let bare = out.replace("http://www.w3.org/2000/svg", "");
        assert!(!bare.contains(banned), "report.html holds {banned:?}");
    }
    assert!(out.matches("<svg").count() >= 8, "bar charts, two pruning curves and the scatter");
    check("report.html", &out);
}

#[test]
fn json_round_trips() {
    let r = fixture();
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    let text = render::json(&r);
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
    check("report.json", &text);
}

#[test]
fn every_section_is_rendered() {
    let r = fixture();
    let t = render::terminal(&r, false);
    let md = render::markdown(&r);
    let html = render::html(&r);
    for section in [
        "Model Size (MB)",
        "Inference Time",
        "Speed Improvement",
        "Fidelity",
        "COMPRESSION PERFORMANCE SUMMARY",
        "PRUNING RATIO vs SPEEDUP AND FIDELITY",
        "KEY FINDINGS",
        "COMPRESSION TRADE-OFF ANALYSIS",
        "EFFICIENCY RANKING",
        "DEPLOYMENT RECOMMENDATIONS",
    ] {
        assert!(t.contains(section), "terminal lacks {section}");
        assert!(md.contains(section), "markdown lacks {section}");
    }
    for v in &r.variants {
        assert!(t.contains(&v.label) && md.contains(&v.label) && html.contains(&v.label), "{}", v.label);
    }
    for f in &r.analysis.findings {
        assert!(t.contains(f.as_str()) && md.contains(f.as_str()), "finding {f:?}");
    }
    for rec in &r.analysis.recommendations {
        assert!(t.contains(&rec.use_case) && html.contains(&rec.use_case));
    }
}
