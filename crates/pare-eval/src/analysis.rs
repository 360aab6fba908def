//! The analysis of a report: relative figures, pruning curves, findings, trade-offs, ranking and
//! recommendations, each computed from the measurements by a rule that is written into the report. Every
//! claim about speed rests on the speed test of the timed runs at batch 1 ([`SpeedTest`]).

use crate::stats::{Bootstrap, LEVEL, MIN_RUNS, RESAMPLES, Summary, Timed};
use pare_report::render::{speed_cell, speed_interval, speed_words};
use pare_report::{
    Analysis, Curve, CurvePoint, Interval, Kind, Rank, Recommendation, SpeedVerdict, TaskInfo, TaskSpec, Timing,
    Tradeoff, Variant,
};
use std::collections::BTreeMap;

/// The point speedup a pruning ratio must reach, beside the speed test, to pay off in speed.
pub const PAYS_OFF: f64 = 1.10;

/// The verdict on a ratio of medians (reference / variant) whose interval is `ci` (`None`: not tested).
pub fn verdict(ci: Option<Interval>) -> SpeedVerdict {
    match ci {
        None => SpeedVerdict::Untested,
        Some(i) if i.low > 1.0 => SpeedVerdict::Faster,
        Some(i) if i.high < 1.0 => SpeedVerdict::Slower,
        Some(_) => SpeedVerdict::NoMeasurableChange,
    }
}

/// Timing statistics of the passes `samples_ms` (by round, as [`Timing::samples_ms`]) of `batch` sequences
/// of `seq` tokens; `None` without a sample. Throughput counts sequences; a caller whose task counts
/// tokens scales it.
pub fn timing(samples_ms: Vec<Vec<f64>>, batch: usize, seq: usize) -> Option<Timing> {
    let all: Vec<f64> = samples_ms.iter().flatten().copied().collect();
    if all.is_empty() {
        return None;
    }
    let s = Summary::from_samples(all);
    Some(Timing {
        batch,
        seq,
        runs: s.runs,
        median_ms: s.median_ms,
        p90_ms: s.p90_ms,
        mean_ms: s.mean_ms,
        stddev_ms: s.stddev_ms,
        min_ms: s.min_ms,
        max_ms: s.max_ms,
        relative_iqr: s.relative_iqr(),
        items_per_s: batch as f64 * 1e3 / s.median_ms,
        samples_ms,
    })
}

/// The speed test over a sweep's variants at batch 1: pare's variants, timed together round by round,
/// are paired by round; a peer, timed in its own process, is resampled on its own.
pub struct SpeedTest<'a> {
    variants: &'a [Variant],
    boot: Bootstrap,
}

impl<'a> SpeedTest<'a> {
    /// Resamples the batch-1 timings of `variants`.
    pub fn new(variants: &'a [Variant]) -> Self {
        let timed: Vec<Timed> =
            variants.iter().map(|v| Timed { rounds: &v.latency.samples_ms, shared: v.kind != Kind::Peer }).collect();
        SpeedTest { variants, boot: Bootstrap::new(&timed) }
    }

    fn index(&self, v: &Variant) -> Option<usize> {
        self.variants.iter().position(|w| w.id == v.id)
    }

    /// The interval of `stat`, a function of the median latencies of `of` (in that order).
    pub fn interval(&self, of: &[&Variant], stat: impl Fn(&[f64]) -> f64) -> Option<Interval> {
        let idx: Vec<usize> = of.iter().map(|v| self.index(v)).collect::<Option<_>>()?;
        self.boot.interval(&idx, stat)
    }

    /// The interval of median(`base`) / median(`v`): how many times faster `v` runs than `base`.
    pub fn ratio(&self, base: &Variant, v: &Variant) -> Option<Interval> {
        self.interval(&[base, v], |m| m[0] / m[1])
    }

    /// The verdict on `v` against `base` (`Baseline` when they are the same variant).
    pub fn verdict(&self, base: &Variant, v: &Variant) -> SpeedVerdict {
        if base.id == v.id { SpeedVerdict::Baseline } else { verdict(self.ratio(base, v)) }
    }

    /// How many times faster `v` runs than `base`, in words ([`speed_words`]).
    pub fn words(&self, base: &Variant, v: &Variant, than: Option<&str>) -> String {
        speed_words(base.latency.median_ms / v.latency.median_ms, self.verdict(base, v), than)
    }
}

/// Sets every variant's speedup (with its interval and verdict by the speed test) and size ratio against
/// the original (the first variant of kind `Original`). Without an original, nothing changes.
pub fn relate(variants: &mut [Variant]) {
    let Some(o) = variants.iter().position(|v| v.kind == Kind::Original) else { return };
    let cis: Vec<Option<Interval>> = {
        let test = SpeedTest::new(variants);
        variants.iter().map(|v| test.ratio(&variants[o], v)).collect()
    };
    let (median, bytes) = (variants[o].latency.median_ms, variants[o].file_bytes);
    for (i, (v, ci)) in variants.iter_mut().zip(cis).enumerate() {
        v.speedup = median / v.latency.median_ms;
        v.size_ratio = v.file_bytes as f64 / bytes as f64;
        v.speedup_ci = ci;
        v.speed_verdict = if i == o { SpeedVerdict::Baseline } else { verdict(ci) };
    }
}

/// Efficiency score: √(speedup × compression).
pub fn score(v: &Variant) -> f64 {
    (v.speedup / v.size_ratio).sqrt()
}

fn within(task: &TaskSpec, v: &Variant, max_loss: f64) -> bool {
    task.within(v.fidelity.mean, max_loss)
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The rules, as stated in the report.
pub fn rules(task: &TaskSpec, max_loss: f64) -> BTreeMap<String, String> {
    let level = 100.0 * LEVEL;
    let (f, best) = (&task.fidelity, if task.higher_is_better { "highest" } else { "lowest" });
    let bound = if task.higher_is_better { "≥ 1 − max-loss =" } else { "≤ max-loss =" };
    let edge = if task.higher_is_better { 1.0 - max_loss } else { max_loss };
    [
        ("budget", format!("within budget: {f} ({}) {bound} {edge:.3}", task.fidelity_of)),
        ("score", "efficiency score = √(speedup × compression), compression = original bytes / variant bytes: the geometric mean of how many times faster (the point estimate) and how many times smaller".into()),
        ("ranking", "pare's variants within budget first, by score (higher first), then the others by score; peers are not ranked".into()),
        ("mobile_edge", format!("Mobile/Edge: the smallest file within budget (of equal files, the {best} {f}); a file within 1% of its size takes its place only when the speed test finds it faster, the lowest median latency among those")),
        ("speed_critical", format!("Speed-critical: within budget, the variants whose batch-1 latency the speed test cannot separate from the lowest median's; of those, the smallest file, then the {best} {f}, then the lowest median latency")),
        ("production", format!("Production: within budget and every task metric where higher is better at most {max_loss} below the original's (perplexity is left to the fidelity budget); among those, the highest score")),
        ("pays_off", format!("a pruning ratio pays off in speed when the speed test finds it faster than the original and its speedup is ≥ {PAYS_OFF:.2}×")),
        ("speedup", "speedup = the original's median latency / the variant's at batch 1, both measured in the same run, alternating round by round; stated as faster or slower only when the speed test finds it (≈1 (n.s.) otherwise), and a slowdown as N× slower".into()),
        ("speed_test", format!("speed test: the {level:.0}% percentile bootstrap interval of a ratio of median latencies at batch 1, from {RESAMPLES} resamples with a fixed seed; each resample draws the rounds with replacement (the same rounds for all of pare's variants, timed together in them; a peer's on its own), then each drawn round's runs with replacement, per variant. A variant is faster or slower only when the interval excludes 1, otherwise there is no measurable change; with fewer than {MIN_RUNS} timed runs it is untested")),
        ("pareto", format!("Pareto front: variants that no other variant matches or beats on file size, median latency and {f} together; latencies the speed test cannot separate count as equal")),
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
        fidelity: v.fidelity.mean,
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

/// "1 variant" or "2 variants".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// ", 95% interval …" of a speedup with interval `ci` (nothing when untested).
fn ci_words(ci: Option<Interval>, verdict: SpeedVerdict) -> String {
    ci.map(|ci| format!(", {:.0}% interval {}", 100.0 * LEVEL, speed_interval(ci, verdict))).unwrap_or_default()
}

/// The whole analysis of `variants` (with [`relate`] applied) under the fidelity budget `max_loss`.
pub fn analyse(task: &TaskSpec, variants: &[Variant], tasks: &[TaskInfo], max_loss: f64) -> Analysis {
    let test = SpeedTest::new(variants);
    let ours: Vec<&Variant> = variants.iter().filter(|v| v.kind != Kind::Peer).collect();
    let orig = ours.iter().find(|v| v.kind == Kind::Original).copied();
    let ok: Vec<&Variant> = ours.iter().copied().filter(|v| within(task, v, max_loss)).collect();
    let curves = curves(variants);
    let by_id = |id: &str| variants.iter().find(|v| v.id == id);
    let mut findings = Vec::new();
    let (fid, bound) = (&task.fidelity, task.bound(max_loss));
    // A variant's speed against the original, in words.
    let vs_orig = |v: &Variant| speed_words(v.speedup, v.speed_verdict, Some("the original"));
    let by_median = |a: &&Variant, b: &&Variant| a.latency.median_ms.total_cmp(&b.latency.median_ms);

    findings.push(format!(
        "{} of {} variants keep a {fid} {bound} to the original (max-loss {max_loss}).",
        ok.len(),
        ours.len()
    ));
    if let Some(s) = ours.iter().min_by_key(|v| v.file_bytes) {
        findings.push(format!(
            "Smallest: {} at {} ({:.2}× the original's size), {fid} {:.3}.",
            s.label,
            mb(s.file_bytes),
            s.size_ratio,
            s.fidelity.mean
        ));
    }
    if let Some(f) = ours.iter().copied().min_by(by_median) {
        let tied: Vec<&str> = ours
            .iter()
            .filter(|v| v.id != f.id && test.verdict(v, f) != SpeedVerdict::Faster)
            .map(|v| v.label.as_str())
            .collect();
        // "Fastest" only when the speed test separates it from every other variant.
        let (what, tie) = if tied.is_empty() {
            ("Fastest", String::new())
        } else {
            ("Lowest median latency", format!("; the speed test cannot separate it from {}", tied.join(", ")))
        };
        findings.push(format!(
            "{what}: {} at {:.2} ms ({}{}), {fid} {:.3}{tie}.",
            f.label,
            f.latency.median_ms,
            vs_orig(f),
            ci_words(f.speedup_ci, f.speed_verdict),
            f.fidelity.mean,
        ));
    }
    let slower: Vec<String> = variants
        .iter()
        .filter(|v| v.speed_verdict == SpeedVerdict::Slower)
        .map(|v| {
            format!(
                "{} ({}{})",
                v.label,
                speed_words(v.speedup, v.speed_verdict, None),
                ci_words(v.speedup_ci, v.speed_verdict)
            )
        })
        .collect();
    if !slower.is_empty() {
        findings.push(format!("Measurably slower than the original: {}.", slower.join("; ")));
    }
    for c in &curves {
        let pts = &c.points[1..];
        let last_ok = pts
            .iter()
            .filter(|p| task.within(p.fidelity, max_loss))
            .map(|p| p.sparsity)
            .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.max(s))));
        match last_ok {
            Some(s) => findings.push(format!("{} stays within budget up to {} of weights removed.", c.label, pct(s))),
            None => findings.push(format!("{} leaves the budget at every ratio measured.", c.label)),
        }
        let pays = pts
            .iter()
            .filter_map(|p| by_id(&p.variant))
            .find(|v| v.speed_verdict == SpeedVerdict::Faster && v.speedup >= PAYS_OFF);
        match pays {
            Some(v) => {
                let s = v.sparsity.unwrap_or(0.0);
                let below: Vec<&Variant> =
                    pts.iter().filter(|p| p.sparsity < s).filter_map(|p| by_id(&p.variant)).collect();
                findings.push(format!(
                    "{} first pays off in speed at {} ({}{}){}.",
                    c.label,
                    pct(s),
                    vs_orig(v),
                    ci_words(v.speedup_ci, v.speed_verdict),
                    if !below.is_empty() && below.iter().all(|v| v.sparse_layers == 0) {
                        "; below that every Linear layer runs the dense kernel"
                    } else {
                        ""
                    }
                ));
            }
            None => findings.push(format!(
                "{} pays off in speed at no ratio measured: none is both found faster than the original by the speed test and ≥ {PAYS_OFF:.2}×.",
                c.label
            )),
        }
        // The step between adjacent measured ratios that costs the most fidelity.
        if let Some(w) = c.points.windows(2).max_by(|a, b| {
            let cost = |w: &[CurvePoint]| task.loss(w[1].fidelity) - task.loss(w[0].fidelity);
            cost(a).total_cmp(&cost(b))
        }) {
            let cell = |p: &CurvePoint| {
                speed_cell(p.speedup, by_id(&p.variant).map_or(SpeedVerdict::Untested, |v| v.speed_verdict))
            };
            findings.push(format!(
                "{}: the costliest step is {} → {}: {fid} {:.3} → {:.3}, speedup {} → {}.",
                c.label,
                pct(w[0].sparsity),
                pct(w[1].sparsity),
                w[0].fidelity,
                w[1].fidelity,
                cell(&w[0]),
                cell(&w[1])
            ));
        }
    }
    // Methods compared at the same ratio.
    let at = |method: &str, s: f64| {
        ours.iter().find(|v| v.method == method && v.sparsity.is_some_and(|x| (x - s).abs() < 1e-9)).copied()
    };
    if let (Some(a), Some(b)) = (at("sparsegpt", 0.5), at("magnitude", 0.5)) {
        findings.push(format!(
            "At 50%, {} keeps {fid} {:.3} where {} keeps {:.3}: the calibrated method's reconstruction matters more than the ratio.",
            a.label, a.fidelity.mean, b.label, b.fidelity.mean
        ));
    }
    if let (Some(st), Some(un)) = (at("structured", 0.5), at("sparsegpt", 0.5)) {
        findings.push(format!(
            "{} (smaller dense matrices): {}; {} (unstructured): {}; structured against unstructured: {}; {fid} {:.3} against {:.3}.",
            st.label,
            vs_orig(st),
            un.label,
            vs_orig(un),
            test.words(un, st, None),
            st.fidelity.mean,
            un.fidelity.mean
        ));
    }
    // Combinations, measured against the product of their parts.
    let int8 = ours.iter().find(|v| v.kind == Kind::Quantized && v.method == "int8").copied();
    if let (Some(d), Some(st)) = (int8, ours.iter().find(|v| v.method == "int8-static")) {
        findings.push(format!(
            "Static int8 activations (ranges calibrated once) against dynamic per-token ranges: {:.2} ms against {:.2} ms, {}; {fid} {:.4} against {:.4}.",
            st.latency.median_ms,
            d.latency.median_ms,
            test.words(d, st, None),
            st.fidelity.mean,
            d.fidelity.mean
        ));
    }
    for c in ours.iter().filter(|v| v.kind == Kind::Combined) {
        let base = c.method.split('+').next().unwrap_or("");
        let part = c.sparsity.and_then(|s| at(base, s));
        if let (Some(o), Some(q), Some(p)) = (orig, int8, part) {
            // measured / predicted speedup = (o/c) / ((o/q)(o/p)) in medians.
            let predicted = q.speedup * p.speedup;
            let rel = c.speedup / predicted;
            let ci = test.interval(&[o, q, p, c], |m| m[1] * m[2] / (m[0] * m[3]));
            let against = match verdict(ci) {
                SpeedVerdict::Faster => "it gains more than its parts predict",
                SpeedVerdict::Slower => "it gains less than its parts predict",
                SpeedVerdict::Untested => "untested against the prediction (too few runs)",
                _ => "the speed test finds no difference from the prediction",
            };
            findings.push(format!(
                "{}: {} at {:.2}× the size; its parts multiplied predict {:.2}× and {:.2}×: {against} ({:+.0}%{}).",
                c.label,
                vs_orig(c),
                c.size_ratio,
                predicted,
                q.size_ratio * p.size_ratio,
                100.0 * (rel - 1.0),
                ci.map(|ci| format!(
                    ", {:.0}% interval {:+.0}% to {:+.0}%",
                    100.0 * LEVEL,
                    100.0 * (ci.low - 1.0),
                    100.0 * (ci.high - 1.0)
                ))
                .unwrap_or_default()
            ));
        }
    }
    // Peers, same run.
    for p in variants.iter().filter(|v| v.kind == Kind::Peer) {
        // pare's variant of the same format as the peer's (llama.cpp's Q4_K_M against pare's Q4_K),
        // else int8 against int8, else the original.
        let same_format = p.method.strip_prefix("llamacpp-").and_then(|f| {
            let f = f.trim_end_matches("_m").trim_end_matches("_s");
            variants.iter().find(|v| v.kind != Kind::Peer && v.id == f)
        });
        let mine = same_format.or(if p.method.ends_with("int8") { int8 } else { orig });
        if let Some(m) = mine {
            findings.push(format!(
                "{} against {}: {:.2} ms against {:.2} ms, {}; file {} against {}, {fid} {:.4} against {:.4}.",
                m.label,
                p.label,
                m.latency.median_ms,
                p.latency.median_ms,
                test.words(p, m, None),
                mb(m.file_bytes),
                mb(p.file_bytes),
                m.fidelity.mean,
                p.fidelity.mean
            ));
        }
    }
    // The speed test over pare's variants: how precise the speedups are, and what it found.
    let tested: Vec<(&Variant, Interval)> =
        ours.iter().filter(|v| v.kind != Kind::Original).filter_map(|v| v.speedup_ci.map(|ci| (*v, ci))).collect();
    let mut half: Vec<(f64, &Variant)> =
        tested.iter().map(|(v, ci)| ((ci.high - ci.low) / (2.0 * v.speedup), *v)).collect();
    half.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = |verdict: SpeedVerdict| ours.iter().filter(|v| v.speed_verdict == verdict).count();
    if let Some(&(widest, w)) = half.last() {
        let untested = n(SpeedVerdict::Untested);
        findings.push(format!(
            "Speed test ({:.0}% intervals, {} rounds resampled): pare's speedups are known to a median ±{:.1}% (widest ±{:.1}%, {}); {} measurably faster than the original, {} with no measurable change, {} slower{}.",
            100.0 * LEVEL,
            orig.map_or(0, |o| o.latency.samples_ms.len()),
            100.0 * half[half.len() / 2].0,
            100.0 * widest,
            w.label,
            count(n(SpeedVerdict::Faster), "variant"),
            n(SpeedVerdict::NoMeasurableChange),
            n(SpeedVerdict::Slower),
            if untested > 0 { format!(", {untested} untested") } else { String::new() }
        ));
    } else if ours.len() > 1 {
        findings.push(format!(
            "Speed test: the original or every variant has fewer than {MIN_RUNS} timed runs, so no speed difference is claimed."
        ));
    }

    let tradeoffs = ours
        .iter()
        .filter(|v| v.kind != Kind::Original)
        .map(|v| Tradeoff {
            variant: v.id.clone(),
            size_reduction_pct: 100.0 * (1.0 - v.size_ratio),
            speed_gain_pct: 100.0 * (v.speedup - 1.0),
            fidelity_loss: task.loss(v.fidelity.mean),
        })
        .collect();

    let mut ranked: Vec<&Variant> = ours.clone();
    ranked.sort_by(|a, b| {
        within(task, b, max_loss)
            .cmp(&within(task, a, max_loss))
            .then(score(b).total_cmp(&score(a)))
            .then(a.id.cmp(&b.id))
    });
    let ranking = ranked
        .iter()
        .enumerate()
        .map(|(i, v)| Rank {
            rank: i + 1,
            variant: v.id.clone(),
            score: score(v),
            within_budget: within(task, v, max_loss),
            note: format!(
                "{}, {:.2}× smaller, {fid} {:.3}{}",
                speed_words(v.speedup, v.speed_verdict, None),
                1.0 / v.size_ratio,
                v.fidelity.mean,
                if within(task, v, max_loss) { "" } else { " (over budget)" }
            ),
        })
        .collect();

    // `a` dominates `b`: no worse on size, latency (by the speed test) and fidelity, better on one.
    let dominates = |a: &Variant, b: &Variant| {
        let (fa, fb) = (a.file_bytes, b.file_bytes);
        let (ca, cb) = (task.loss(a.fidelity.mean), task.loss(b.fidelity.mean));
        if a.id == b.id || fa > fb || ca > cb {
            return false;
        }
        let speed = test.verdict(b, a);
        speed != SpeedVerdict::Slower && (fa < fb || ca < cb || speed == SpeedVerdict::Faster)
    };
    let pareto = variants.iter().filter(|v| !variants.iter().any(|w| dominates(w, v))).map(|v| v.id.clone()).collect();

    let rules = rules(task, max_loss);
    let mut recommendations = Vec::new();
    // Smaller file first, then the better fidelity.
    let leaner = |a: &&Variant, b: &&Variant| {
        a.file_bytes.cmp(&b.file_bytes).then(task.loss(a.fidelity.mean).total_cmp(&task.loss(b.fidelity.mean)))
    };
    let smallest = ok.iter().copied().min_by(leaner).map(|s| {
        ok.iter()
            .copied()
            .filter(|v| v.file_bytes as f64 <= 1.01 * s.file_bytes as f64 && test.verdict(s, v) == SpeedVerdict::Faster)
            .min_by(by_median)
            .unwrap_or(s)
    });
    let fastest = ok.iter().copied().min_by(by_median).and_then(|f| {
        ok.iter()
            .copied()
            .filter(|v| test.verdict(v, f) != SpeedVerdict::Faster)
            .min_by(|a, b| leaner(a, b).then(by_median(a, b)))
    });
    let task_ok = |v: &Variant| {
        let Some(o) = orig else { return true };
        // A task where lower is better (perplexity) has no scale that max_loss could bound; the
        // fidelity budget already covers it.
        tasks.iter().filter(|t| t.higher_is_better).all(|t| match (v.tasks.get(&t.id), o.tasks.get(&t.id)) {
            (Some(x), Some(y)) => *x >= y - max_loss,
            _ => true,
        })
    };
    let production = ok.iter().copied().filter(|v| task_ok(v)).max_by(|a, b| score(a).total_cmp(&score(b)));
    let nothing = format!("no variant keeps a {fid} {bound}; ship the original, or allow a larger --max-loss");
    let describe = |v: &Variant| {
        let mut t = format!(
            "{}, {:.2} ms, {}, {fid} {:.3}",
            mb(v.file_bytes),
            v.latency.median_ms,
            vs_orig(v),
            v.fidelity.mean
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
