//! The analysis of a report: relative figures, pruning curves, findings, trade-offs, ranking and
//! recommendations, each computed from the measurements by a rule that is written into the report.

use pare_report::{Analysis, Curve, CurvePoint, Kind, Rank, Recommendation, TaskInfo, Tradeoff, Variant};
use std::collections::BTreeMap;

/// Sets every variant's speedup and size ratio against the original (the first variant of kind
/// `Original`). Without an original, both stay 1.
pub fn relate(variants: &mut [Variant]) {
    let Some(orig) = variants.iter().find(|v| v.kind == Kind::Original).cloned() else { return };
    for v in variants.iter_mut() {
        v.speedup = orig.latency.median_ms / v.latency.median_ms;
        v.size_ratio = v.file_bytes as f64 / orig.file_bytes as f64;
    }
}

/// Efficiency score: √(speedup × compression).
pub fn score(v: &Variant) -> f64 {
    (v.speedup / v.size_ratio).sqrt()
}

fn within(v: &Variant, max_loss: f64) -> bool {
    v.fidelity.mean_cos >= 1.0 - max_loss
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The rules, as stated in the report.
pub fn rules(max_loss: f64) -> BTreeMap<String, String> {
    let floor = 1.0 - max_loss;
    [
        ("budget", format!("within budget: mean cosine to the original's embeddings ≥ 1 − max-loss = {floor:.3}")),
        ("score", "efficiency score = √(speedup × compression), compression = original bytes / variant bytes: the geometric mean of how many times faster and how many times smaller".into()),
        ("ranking", "pare's variants within budget first, by score (higher first), then the others by score; peers are not ranked".into()),
        ("mobile_edge", "Mobile/Edge: the smallest file within budget; among files within 1% of the smallest, the lowest median latency".into()),
        ("speed_critical", "Speed-critical: the lowest median latency at batch 1 within budget; among latencies within 1% of the lowest, the smallest file".into()),
        ("production", format!("Production: within budget and every task metric at most {max_loss} below the original's; among those, the highest score")),
        ("pays_off", "a pruning ratio pays off in speed when its speedup is ≥ 1.10×".into()),
        ("speedup", "speedup = the original's median latency / the variant's, both measured in the same run, alternating round by round".into()),
        ("pareto", "Pareto front: variants that no other variant matches or beats on file size, median latency and mean cosine together".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Pruning curves of the unstructured methods present (points at each measured sparsity, with the
/// original as sparsity 0).
pub fn curves(variants: &[Variant]) -> Vec<Curve> {
    let Some(orig) = variants.iter().find(|v| v.kind == Kind::Original) else { return Vec::new() };
    let mut methods: Vec<&str> = Vec::new();
    for v in variants.iter().filter(|v| v.kind == Kind::Pruned && v.sparsity.is_some()) {
        if !methods.contains(&v.method.as_str()) {
            methods.push(&v.method);
        }
    }
    let point = |v: &Variant| CurvePoint {
        sparsity: v.sparsity.unwrap_or(0.0),
        variant: v.id.clone(),
        speedup: v.speedup,
        fidelity: v.fidelity.mean_cos,
        size_ratio: v.size_ratio,
    };
    methods
        .into_iter()
        .filter_map(|m| {
            let mut pts: Vec<CurvePoint> =
                variants.iter().filter(|v| v.kind == Kind::Pruned && v.method == m).map(point).collect();
            if pts.len() < 2 {
                return None;
            }
            pts.sort_by(|a, b| a.sparsity.total_cmp(&b.sparsity));
            pts.insert(0, CurvePoint { sparsity: 0.0, ..point(orig) });
            Some(Curve { method: m.to_string(), label: method_label(m), points: pts })
        })
        .collect()
}

/// Display name of a method.
pub fn method_label(m: &str) -> String {
    match m {
        "sparsegpt" => "SparseGPT".into(),
        "magnitude" => "Magnitude".into(),
        "wanda" => "Wanda".into(),
        "nm" => "N:M".into(),
        "structured" => "Structured".into(),
        other => other.to_string(),
    }
}

/// The whole analysis of `variants` (with [`relate`] applied) under the fidelity budget `max_loss`.
pub fn analyse(variants: &[Variant], tasks: &[TaskInfo], max_loss: f64) -> Analysis {
    let ours: Vec<&Variant> = variants.iter().filter(|v| v.kind != Kind::Peer).collect();
    let orig = ours.iter().find(|v| v.kind == Kind::Original).copied();
    let ok: Vec<&Variant> = ours.iter().copied().filter(|v| within(v, max_loss)).collect();
    let curves = curves(variants);
    let mut findings = Vec::new();
    let floor = 1.0 - max_loss;

    findings.push(format!(
        "{} of {} variants keep a mean cosine ≥ {floor:.3} to the original (max-loss {max_loss}).",
        ok.len(),
        ours.len()
    ));
    if let Some(s) = ours.iter().min_by_key(|v| v.file_bytes) {
        findings.push(format!(
            "Smallest: {} at {} ({:.2}× the original's size), mean cosine {:.3}.",
            s.label,
            mb(s.file_bytes),
            s.size_ratio,
            s.fidelity.mean_cos
        ));
    }
    if let Some(f) = ours.iter().min_by(|a, b| a.latency.median_ms.total_cmp(&b.latency.median_ms)) {
        findings.push(format!(
            "Fastest: {} at {:.2} ms ({:.2}× the original), mean cosine {:.3}.",
            f.label, f.latency.median_ms, f.speedup, f.fidelity.mean_cos
        ));
    }
    for c in &curves {
        let pts = &c.points[1..];
        let last_ok = pts
            .iter()
            .filter(|p| p.fidelity >= floor)
            .map(|p| p.sparsity)
            .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.max(s))));
        match last_ok {
            Some(s) => findings.push(format!("{} stays within budget up to {} of weights removed.", c.label, pct(s))),
            None => findings.push(format!("{} leaves the budget at every ratio measured.", c.label)),
        }
        match pts.iter().find(|p| p.speedup >= 1.10) {
            Some(p) => findings.push(format!(
                "{} pays off in speed from {} on ({:.2}×); below that its layers run as fast as dense at best.",
                c.label,
                pct(p.sparsity),
                p.speedup
            )),
            None => findings.push(format!("{} does not reach 1.10× at any ratio measured.", c.label)),
        }
        // The step between adjacent measured ratios that costs the most fidelity.
        if let Some(w) = c
            .points
            .windows(2)
            .max_by(|a, b| (a[0].fidelity - a[1].fidelity).total_cmp(&(b[0].fidelity - b[1].fidelity)))
        {
            findings.push(format!(
                "{}: the costliest step is {} → {}: mean cosine {:.3} → {:.3} for {:.2}× → {:.2}× speed.",
                c.label,
                pct(w[0].sparsity),
                pct(w[1].sparsity),
                w[0].fidelity,
                w[1].fidelity,
                w[0].speedup,
                w[1].speedup
            ));
        }
    }
    // Methods compared at the same ratio.
    let at = |method: &str, s: f64| {
        ours.iter().find(|v| v.method == method && v.sparsity.is_some_and(|x| (x - s).abs() < 1e-9)).copied()
    };
    if let (Some(a), Some(b)) = (at("sparsegpt", 0.5), at("magnitude", 0.5)) {
        findings.push(format!(
            "At 50%, {} keeps mean cosine {:.3} where {} keeps {:.3}: the calibrated method's reconstruction matters more than the ratio.",
            a.label, a.fidelity.mean_cos, b.label, b.fidelity.mean_cos
        ));
    }
    if let (Some(st), Some(un)) = (at("structured", 0.5), at("sparsegpt", 0.5)) {
        findings.push(format!(
            "Structured 50% runs {:.2}× (smaller dense matrices) against {:.2}× for unstructured 50%, at mean cosine {:.3} against {:.3}.",
            st.speedup, un.speedup, st.fidelity.mean_cos, un.fidelity.mean_cos
        ));
    }
    // Combinations, measured against the product of their parts.
    let int8 = ours.iter().find(|v| v.kind == Kind::Quantized && v.method == "int8").copied();
    if let (Some(d), Some(st)) = (int8, ours.iter().find(|v| v.method == "int8-static")) {
        findings.push(format!(
            "Static int8 activations (ranges calibrated once) run {:.2} ms against {:.2} ms for dynamic per-token ranges, at mean cosine {:.4} against {:.4}.",
            st.latency.median_ms, d.latency.median_ms, st.fidelity.mean_cos, d.fidelity.mean_cos
        ));
    }
    for c in ours.iter().filter(|v| v.kind == Kind::Combined) {
        let base = c.method.split('+').next().unwrap_or("");
        let part = c.sparsity.and_then(|s| at(base, s));
        if let (Some(q), Some(p)) = (int8, part) {
            let predicted = q.speedup * p.speedup;
            findings.push(format!(
                "{} measured {:.2}× and {:.2}× the size; its parts multiplied would predict {:.2}× and {:.2}×, so the combination {} ({:+.0}% against the prediction).",
                c.label,
                c.speedup,
                c.size_ratio,
                predicted,
                q.size_ratio * p.size_ratio,
                if c.speedup >= predicted { "gains at least as much as the parts" } else { "gains less than the parts" },
                100.0 * (c.speedup / predicted - 1.0)
            ));
        }
    }
    // Peers, same run.
    for p in variants.iter().filter(|v| v.kind == Kind::Peer) {
        let mine = if p.method.ends_with("int8") { int8 } else { orig };
        if let Some(m) = mine {
            findings.push(format!(
                "{} runs in {:.2} ms against {:.2} ms for {} ({:.2}× faster), file {} against {}, mean cosine {:.4} against {:.4}.",
                m.label,
                m.latency.median_ms,
                p.latency.median_ms,
                p.label,
                p.latency.median_ms / m.latency.median_ms,
                mb(m.file_bytes),
                mb(p.file_bytes),
                m.fidelity.mean_cos,
                p.fidelity.mean_cos
            ));
        }
    }
    let mut iqr: Vec<f64> = ours.iter().map(|v| v.latency.relative_iqr).collect();
    iqr.sort_by(f64::total_cmp);
    if !iqr.is_empty() {
        let med = iqr[iqr.len() / 2];
        findings.push(format!(
            "Timing noise: the median relative interquartile range is {:.1}%; speed differences under about {:.0}% are within noise.",
            100.0 * med,
            (200.0 * med).max(1.0)
        ));
    }

    let tradeoffs = ours
        .iter()
        .filter(|v| v.kind != Kind::Original)
        .map(|v| Tradeoff {
            variant: v.id.clone(),
            size_reduction_pct: 100.0 * (1.0 - v.size_ratio),
            speed_gain_pct: 100.0 * (v.speedup - 1.0),
            fidelity_loss: 1.0 - v.fidelity.mean_cos,
        })
        .collect();

    let mut ranked: Vec<&Variant> = ours.clone();
    ranked.sort_by(|a, b| {
        within(b, max_loss).cmp(&within(a, max_loss)).then(score(b).total_cmp(&score(a))).then(a.id.cmp(&b.id))
    });
    let ranking = ranked
        .iter()
        .enumerate()
        .map(|(i, v)| Rank {
            rank: i + 1,
            variant: v.id.clone(),
            score: score(v),
            within_budget: within(v, max_loss),
            note: format!(
                "{:.2}× faster, {:.2}× smaller, mean cosine {:.3}{}",
                v.speedup,
                1.0 / v.size_ratio,
                v.fidelity.mean_cos,
                if within(v, max_loss) { "" } else { " (over budget)" }
            ),
        })
        .collect();

    let dominates = |a: &Variant, b: &Variant| {
        let (fa, fb) = (a.file_bytes as f64, b.file_bytes as f64);
        let (la, lb) = (a.latency.median_ms, b.latency.median_ms);
        let (ca, cb) = (a.fidelity.mean_cos, b.fidelity.mean_cos);
        fa <= fb && la <= lb && ca >= cb && (fa < fb || la < lb || ca > cb)
    };
    let pareto = variants.iter().filter(|v| !variants.iter().any(|w| dominates(w, v))).map(|v| v.id.clone()).collect();

    let rules = rules(max_loss);
    let mut recommendations = Vec::new();
    // Best by one key; among those within 1% of the best, best by the other.
    let pick = |key: &dyn Fn(&Variant) -> f64, tie: &dyn Fn(&Variant) -> f64| -> Option<&Variant> {
        let best = ok.iter().map(|v| key(v)).fold(f64::INFINITY, f64::min);
        ok.iter()
            .copied()
            .filter(|v| key(v) <= best * 1.01)
            .min_by(|a, b| tie(a).total_cmp(&tie(b)).then(key(a).total_cmp(&key(b))))
    };
    let size = |v: &Variant| v.file_bytes as f64;
    let latency = |v: &Variant| v.latency.median_ms;
    let smallest = pick(&size, &latency);
    let fastest = pick(&latency, &size);
    let task_ok = |v: &Variant| {
        let Some(o) = orig else { return true };
        tasks.iter().all(|t| match (v.tasks.get(&t.id), o.tasks.get(&t.id)) {
            (Some(x), Some(y)) => *x >= y - max_loss,
            _ => true,
        })
    };
    let production = ok.iter().copied().filter(|v| task_ok(v)).max_by(|a, b| score(a).total_cmp(&score(b)));
    let nothing =
        format!("no variant keeps a mean cosine ≥ {floor:.3}; ship the original, or allow a larger --max-loss");
    let describe = |v: &Variant| {
        let mut t = format!(
            "{}, {:.2} ms ({:.2}×), mean cosine {:.3}",
            mb(v.file_bytes),
            v.latency.median_ms,
            v.speedup,
            v.fidelity.mean_cos
        );
        for task in tasks {
            if let Some(x) = v.tasks.get(&task.id) {
                t.push_str(&format!(", {} {:.3}", task.metric, x));
            }
        }
        t
    };
    for (use_case, rule, pick) in [
        ("Mobile/Edge", "mobile_edge", smallest),
        ("Speed-critical", "speed_critical", fastest),
        ("Production", "production", production),
    ] {
        recommendations.push(Recommendation {
            use_case: use_case.into(),
            rule: rules[rule].clone(),
            variant: pick.map(|v| v.id.clone()),
            reason: pick.map_or_else(
                || {
                    if rule == "production" && !ok.is_empty() {
                        format!("no variant within budget keeps every task metric within {max_loss} of the original's; ship the original")
                    } else {
                        nothing.clone()
                    }
                },
                |v| format!("{}: {}", v.label, describe(v)),
            ),
        });
    }
    Analysis { max_loss, rules, findings, pruning_curves: curves, tradeoffs, pareto, ranking, recommendations }
}
