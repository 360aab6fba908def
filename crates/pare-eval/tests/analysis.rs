//! The analysis on a real sweep (pare-report's fixture): the recommendations follow their stated
//! rules at every --max-loss, change when the budget does, and say so when nothing qualifies.

use pare_eval::analysis::{analyse, relate, rules, score};
use pare_report::{Kind, Report, Variant};

fn fixture() -> Report {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pare-report/tests/fixtures/report.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rec(r: &pare_report::Analysis, use_case: &str) -> Option<String> {
    r.recommendations.iter().find(|x| x.use_case == use_case).unwrap().variant.clone()
}

/// The rules, written out independently of the implementation.
fn expected(vs: &[Variant], max_loss: f64) -> [Option<String>; 3] {
    let ok: Vec<&Variant> =
        vs.iter().filter(|v| v.kind != Kind::Peer && v.fidelity.mean_cos >= 1.0 - max_loss).collect();
    let orig = vs.iter().find(|v| v.kind == Kind::Original).unwrap();
    let min_size = ok.iter().map(|v| v.file_bytes as f64).fold(f64::INFINITY, f64::min);
    let mobile = ok
        .iter()
        .filter(|v| v.file_bytes as f64 <= 1.01 * min_size)
        .min_by(|a, b| a.latency.median_ms.total_cmp(&b.latency.median_ms))
        .map(|v| v.id.clone());
    let min_lat = ok.iter().map(|v| v.latency.median_ms).fold(f64::INFINITY, f64::min);
    let speed =
        ok.iter().filter(|v| v.latency.median_ms <= 1.01 * min_lat).min_by_key(|v| v.file_bytes).map(|v| v.id.clone());
    let production = ok
        .iter()
        .filter(|v| v.tasks.iter().all(|(k, x)| *x >= orig.tasks[k] - max_loss))
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .map(|v| v.id.clone());
    [mobile, speed, production]
}

#[test]
fn recommendations_follow_the_rules_at_every_budget() {
    let r = fixture();
    let mut seen = std::collections::BTreeSet::new();
    for max_loss in [0.0, 0.0005, 0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9] {
        let a = analyse(&r.variants, &r.tasks, max_loss);
        let got = [rec(&a, "Mobile/Edge"), rec(&a, "Speed-critical"), rec(&a, "Production")];
        assert_eq!(got, expected(&r.variants, max_loss), "max-loss {max_loss}");
        assert_eq!(a.rules, rules(max_loss));
        // Ranking: within budget first, each part by score.
        let within: Vec<bool> = a.ranking.iter().map(|k| k.within_budget).collect();
        assert!(within.windows(2).all(|w| w[0] >= w[1]), "max-loss {max_loss}: budget order");
        for w in a.ranking.windows(2).filter(|w| w[0].within_budget == w[1].within_budget) {
            assert!(w[0].score >= w[1].score, "max-loss {max_loss}: score order");
        }
        seen.insert(got);
    }
    assert!(seen.len() >= 3, "the budget changes the recommendations: {seen:?}");
}

#[test]
fn a_larger_budget_buys_a_smaller_faster_model() {
    let r = fixture();
    let tight = analyse(&r.variants, &r.tasks, 0.02);
    let loose = analyse(&r.variants, &r.tasks, 0.3);
    let size = |id: Option<String>| r.variant(&id.unwrap()).unwrap().file_bytes;
    let lat = |id: Option<String>| r.variant(&id.unwrap()).unwrap().latency.median_ms;
    assert_eq!(rec(&tight, "Mobile/Edge").as_deref(), Some("int8"));
    assert!(size(rec(&loose, "Mobile/Edge")) < size(rec(&tight, "Mobile/Edge")));
    assert!(lat(rec(&loose, "Speed-critical")) < lat(rec(&tight, "Speed-critical")));
}

#[test]
fn nothing_within_budget_is_said() {
    let mut r = fixture();
    for v in &mut r.variants {
        v.fidelity.mean_cos = 0.5;
    }
    let a = analyse(&r.variants, &r.tasks, 0.1);
    for x in &a.recommendations {
        assert_eq!(x.variant, None);
        assert!(x.reason.contains("no variant keeps a mean cosine ≥ 0.900"), "{}", x.reason);
    }
    assert!(a.findings[0].starts_with("0 of"));
}

#[test]
fn relative_figures_and_curves() {
    let mut r = fixture();
    for v in &mut r.variants {
        v.speedup = 0.0;
        v.size_ratio = 0.0;
    }
    relate(&mut r.variants);
    let orig = r.variant("original").unwrap().clone();
    for v in &r.variants {
        assert!((v.speedup - orig.latency.median_ms / v.latency.median_ms).abs() < 1e-12);
        assert!((v.size_ratio - v.file_bytes as f64 / orig.file_bytes as f64).abs() < 1e-12);
    }
    let a = analyse(&r.variants, &r.tasks, 0.02);
    let sg = a.pruning_curves.iter().find(|c| c.method == "sparsegpt").unwrap();
    let xs: Vec<f64> = sg.points.iter().map(|p| p.sparsity).collect();
    assert_eq!(xs, vec![0.0, 0.1, 0.3, 0.5, 0.7, 0.9]);
    assert_eq!(sg.points[0].variant, "original");
    // The Pareto front holds no dominated variant, and the smallest and fastest are on it.
    for id in &a.pareto {
        let v = r.variant(id).unwrap();
        assert!(!r.variants.iter().any(|w| w.file_bytes < v.file_bytes
            && w.latency.median_ms < v.latency.median_ms
            && w.fidelity.mean_cos > v.fidelity.mean_cos));
    }
    let smallest = r.variants.iter().min_by_key(|v| v.file_bytes).unwrap();
    assert!(a.pareto.contains(&smallest.id));
}
