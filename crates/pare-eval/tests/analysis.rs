//! The analysis on a real sweep (pare-report's fixture): the recommendations follow their stated
//! rules at every --max-loss, change when the budget does, and say so when nothing qualifies; and on
//! made-up timings: noise is not a speedup, and a slowdown is said as one.

use pare_eval::analysis::{analyse, relate, rules, score, timing};
use pare_eval::stats::{Bootstrap, Timed, speedup_interval};
use pare_report::{Kind, Report, SpeedVerdict, Variant, render};

fn fixture() -> Report {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pare-report/tests/fixtures/report.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rec(r: &pare_report::Analysis, use_case: &str) -> Option<String> {
    r.recommendations.iter().find(|x| x.use_case == use_case).unwrap().variant.clone()
}

/// Whether `b` runs measurably faster than `a` by the speed test of the two (both pare's variants).
fn faster(a: &Variant, b: &Variant) -> bool {
    speedup_interval(&a.latency.samples_ms, &b.latency.samples_ms, true).is_some_and(|ci| ci.low > 1.0)
}

/// The rules, written out independently of the implementation.
fn expected(vs: &[Variant], max_loss: f64) -> [Option<String>; 3] {
    let ok: Vec<&Variant> = vs.iter().filter(|v| v.kind != Kind::Peer && v.fidelity.mean >= 1.0 - max_loss).collect();
    let orig = vs.iter().find(|v| v.kind == Kind::Original).unwrap();
    let lat = |v: &&Variant| v.latency.median_ms;
    let leaner = |a: &&&Variant, b: &&&Variant| {
        a.file_bytes.cmp(&b.file_bytes).then(b.fidelity.mean.total_cmp(&a.fidelity.mean))
    };
    let mobile = ok.iter().min_by(leaner).map(|s| {
        let near_and_faster = ok.iter().filter(|v| v.file_bytes as f64 <= 1.01 * s.file_bytes as f64 && faster(s, v));
        near_and_faster.min_by(|a, b| lat(a).total_cmp(&lat(b))).unwrap_or(s).id.clone()
    });
    let speed = ok.iter().min_by(|a, b| lat(a).total_cmp(&lat(b))).and_then(|f| {
        ok.iter()
            .filter(|v| !faster(v, f))
            .min_by(|a, b| leaner(a, b).then(lat(a).total_cmp(&lat(b))))
            .map(|v| v.id.clone())
    });
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
        let a = analyse(&r.task, &r.variants, &r.tasks, max_loss);
        let got = [rec(&a, "Mobile/Edge"), rec(&a, "Speed-critical"), rec(&a, "Production")];
        assert_eq!(got, expected(&r.variants, max_loss), "max-loss {max_loss}");
        assert_eq!(a.rules, rules(&r.task, max_loss));
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
    let tight = analyse(&r.task, &r.variants, &r.tasks, 0.02);
    let loose = analyse(&r.task, &r.variants, &r.tasks, 0.3);
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
        v.fidelity.mean = 0.5;
    }
    let a = analyse(&r.task, &r.variants, &r.tasks, 0.1);
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
    let a = analyse(&r.task, &r.variants, &r.tasks, 0.02);
    let sg = a.pruning_curves.iter().find(|c| c.method == "sparsegpt").unwrap();
    let xs: Vec<f64> = sg.points.iter().map(|p| p.sparsity).collect();
    assert_eq!(xs, vec![0.0, 0.1, 0.3, 0.5, 0.7, 0.9]);
    assert_eq!(sg.points[0].variant, "original");
    // The Pareto front holds no dominated variant, and the smallest and fastest are on it.
    for id in &a.pareto {
        let v = r.variant(id).unwrap();
        assert!(!r.variants.iter().any(|w| w.file_bytes < v.file_bytes
            && w.latency.median_ms < v.latency.median_ms
            && w.fidelity.mean > v.fidelity.mean));
    }
    let smallest = r.variants.iter().min_by_key(|v| v.file_bytes).unwrap();
    assert!(a.pareto.contains(&smallest.id));
    // Speedups, intervals and verdicts as stored, and re-derived from the stored runs.
    let stored = fixture();
    assert_eq!(r.variants, stored.variants);
    for v in &r.variants {
        // The original in the sweep's shared rounds; a peer on its own.
        let timed = [
            Timed { rounds: &orig.latency.samples_ms, shared: true },
            Timed { rounds: &v.latency.samples_ms, shared: v.kind != Kind::Peer },
        ];
        assert_eq!(v.speedup_ci, Bootstrap::new(&timed).ratio(0, 1), "{}", v.id);
        assert!(v.speedup_ci.is_some_and(|ci| ci.low <= ci.high), "{}", v.id);
    }
    assert_eq!(orig.speed_verdict, SpeedVerdict::Baseline);
}

/// `rounds` rounds of `runs` passes: round r at `ms` × `factor[r]`, each pass with uniform noise of
/// ±`noise` (relative), from a fixed generator.
fn runs(seed: u64, ms: f64, factor: &[f64], runs: usize, noise: f64) -> Vec<Vec<f64>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    factor.iter().map(|f| (0..runs).map(|_| ms * f * (1.0 + noise * (2.0 * next() - 1.0))).collect()).collect()
}

/// A variant like `base` (a fixture variant) with the given identity, file, fidelity and runs.
fn made(base: &Variant, id: &str, label: &str, kind: Kind, bytes: u64, cos: f64, samples: Vec<Vec<f64>>) -> Variant {
    let mut v = base.clone();
    (v.id, v.label, v.kind, v.file_bytes, v.fidelity.mean) = (id.into(), label.into(), kind, bytes, cos);
    v.method = id.split('-').next().unwrap().into();
    v.sparsity = id.rsplit('-').next().and_then(|s| s.parse::<f64>().ok()).map(|s| s / 100.0);
    v.sparse_layers = 0;
    v.latency = timing(samples, 1, 128).unwrap();
    v
}

/// A noisy sweep: SparseGPT 10% and 50% run dense and differ from the original only by noise (the first
/// with a 1.16× point speedup), int8 is steadily faster and smaller, and Wanda 90% is 3.3× slower.
fn noisy() -> Report {
    let mut r = fixture();
    let base = r.variant("original").unwrap().clone();
    // The machine's state, round by round, shared by every variant.
    let drift = [1.0, 1.25, 0.95, 1.15, 1.0];
    let with = |f: [f64; 5]| -> Vec<f64> { drift.iter().zip(f).map(|(d, f)| d * f).collect() };
    let mb = 1_000_000;
    r.variants = vec![
        made(&base, "original", "Original", Kind::Original, 91 * mb, 1.0, runs(1, 10.0, &drift, 20, 0.15)),
        made(&base, "int8", "int8", Kind::Quantized, 23 * mb, 0.999, runs(2, 8.9, &drift, 20, 0.15)),
        made(
            &base,
            "sparsegpt-10",
            "SparseGPT 10%",
            Kind::Pruned,
            88 * mb,
            0.999,
            runs(3, 10.0, &with([0.75, 0.74, 0.78, 1.06, 1.08]), 20, 0.15),
        ),
        made(
            &base,
            "sparsegpt-50",
            "SparseGPT 50%",
            Kind::Pruned,
            70 * mb,
            0.99,
            runs(4, 10.0, &with([1.04, 0.97, 1.0, 0.95, 1.02]), 20, 0.15),
        ),
        made(&base, "wanda-90", "Wanda 90%", Kind::Pruned, 54 * mb, 0.985, runs(5, 33.0, &drift, 20, 0.15)),
    ];
    relate(&mut r.variants);
    r.analysis = analyse(&r.task, &r.variants, &r.tasks, 0.02);
    r
}

#[test]
fn noise_is_not_a_speedup() {
    let r = noisy();
    let sg = r.variant("sparsegpt-10").unwrap();
    assert!((1.155..1.165).contains(&sg.speedup), "a 1.16× point speedup: {}", sg.speedup);
    assert!(sg.speedup_ci.unwrap().contains(1.0), "{:?}", sg.speedup_ci);
    assert_eq!(sg.speed_verdict, SpeedVerdict::NoMeasurableChange);
    let int8 = r.variant("int8").unwrap();
    assert!(int8.latency.median_ms > sg.latency.median_ms, "SparseGPT 10% has the lowest median");
    assert_eq!(int8.speed_verdict, SpeedVerdict::Faster);
    assert!(!faster(int8, sg), "and the speed test cannot separate it from int8");
    let a = &r.analysis;
    assert_eq!(rec(a, "Speed-critical").as_deref(), Some("int8"), "the smaller of the tied");
    assert_eq!(expected(&r.variants, 0.02)[1].as_deref(), Some("int8"));
    // Nothing calls SparseGPT 10% faster, or says it pays off.
    let note = &a.ranking.iter().find(|k| k.variant == "sparsegpt-10").unwrap().note;
    assert!(note.starts_with("no measurable change in speed (1.1"), "{note}");
    for f in &a.findings {
        assert!(!(f.contains("SparseGPT 10%") && f.contains("× faster")), "{f}");
        assert!(!f.contains("pays off in speed at 10%") && !f.contains("pays off in speed at 50%"), "{f}");
    }
    assert!(a.findings.iter().any(|f| f.starts_with("SparseGPT pays off in speed at no ratio measured")));
    assert!(
        a.findings.iter().any(|f| f.starts_with("Lowest median latency: SparseGPT 10%")
            && f.contains("cannot separate it from")
            && f.contains("int8")),
        "{:#?}",
        a.findings
    );
    // Every renderer says so in the speedup column.
    let text = render::terminal(&r, false);
    let row = text.lines().find(|l| l.starts_with("| SparseGPT 10%")).unwrap();
    assert!(row.contains("≈1 (n.s.)") && !row.contains("1.16×"), "{row}");
    assert!(render::markdown(&r).contains("| SparseGPT 10% | 88.0 | "));
    assert!(render::html(&r).contains(r#"<td class="n">≈1 (n.s.)</td>"#));
}

#[test]
fn a_slowdown_is_said_and_flagged() {
    let r = noisy();
    let w = r.variant("wanda-90").unwrap();
    assert_eq!(w.speed_verdict, SpeedVerdict::Slower);
    assert!(w.speedup_ci.unwrap().high < 1.0);
    let a = &r.analysis;
    let slow = a.findings.iter().find(|f| f.starts_with("Measurably slower than the original:")).unwrap();
    assert!(slow.contains("Wanda 90% (3.3") && slow.contains("× slower"), "{slow}");
    let note = &a.ranking.iter().find(|k| k.variant == "wanda-90").unwrap().note;
    assert!(note.starts_with("3.3") && note.contains("× slower"), "{note}");
    let (text, md, html) = (render::terminal(&r, false), render::markdown(&r), render::html(&r));
    let row = text.lines().find(|l| l.starts_with("| Wanda 90%")).unwrap();
    assert!(row.contains("▼ 3.3") && row.contains("× slower"), "{row}");
    assert!(md.lines().any(|l| l.starts_with("| Wanda 90% |") && l.contains("▼ 3.3")));
    assert!(html.contains(r#"<td class="n slow">▼ 3.3"#));
    // Never "0.30× faster", nor a bare ratio under 1, anywhere.
    let ratio = format!("{:.2}×", w.speedup);
    for out in [&text, &md, &html] {
        assert!(!out.contains(&ratio) && !out.contains("0.30× faster"), "{ratio}");
    }
    for f in a.findings.iter().chain(a.ranking.iter().map(|k| &k.note)) {
        assert!(!f.contains(&ratio), "{f}");
    }
}

#[test]
fn a_decoder_task_judges_by_kl_divergence_where_lower_is_better() {
    // The same sweep with each cosine c turned into a KL divergence of 1 − c: the losses are equal, so
    // the budget, ranking, Pareto front and recommendations must be too, and the words name the KLD.
    let r = fixture();
    let mut lm = r.clone();
    lm.task = pare_report::TaskSpec::language_model();
    for v in &mut lm.variants {
        (v.fidelity.mean, v.fidelity.worst) = (1.0 - v.fidelity.mean, 1.0 - v.fidelity.worst);
    }
    for max_loss in [0.005, 0.02, 0.1, 0.3] {
        let (a, b) =
            (analyse(&r.task, &r.variants, &r.tasks, max_loss), analyse(&lm.task, &lm.variants, &lm.tasks, max_loss));
        assert_eq!(
            a.ranking.iter().map(|x| (&x.variant, x.within_budget)).collect::<Vec<_>>(),
            b.ranking.iter().map(|x| (&x.variant, x.within_budget)).collect::<Vec<_>>(),
            "max-loss {max_loss}"
        );
        assert_eq!(a.pareto, b.pareto);
        assert_eq!(
            a.recommendations.iter().map(|x| &x.variant).collect::<Vec<_>>(),
            b.recommendations.iter().map(|x| &x.variant).collect::<Vec<_>>()
        );
        for (x, y) in a.tradeoffs.iter().zip(&b.tradeoffs) {
            assert!((x.fidelity_loss - y.fidelity_loss).abs() < 1e-12);
        }
        assert!(
            b.rules["budget"].contains("mean KLD")
                && b.rules["budget"].contains(&format!("≤ max-loss = {max_loss:.3}"))
        );
        assert!(b.findings[0].contains(&format!("mean KLD ≤ {max_loss:.3}")), "{}", b.findings[0]);
        assert!(!b.findings.iter().any(|f| f.contains("cosine")), "{:?}", b.findings);
    }
    let mut lm_report = lm.clone();
    lm_report.analysis = analyse(&lm.task, &lm.variants, &lm.tasks, 0.02);
    let text = render::terminal(&lm_report, false);
    assert!(text.contains("Fidelity (mean KLD to the original; longer is worse)") && text.contains("Tokens/s"));
}
