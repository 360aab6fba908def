//! Renderers of a [`crate::Report`]: terminal text (optionally coloured), Markdown, JSON, and a
//! self-contained HTML page with SVG plots. They format; they do not compute findings.

mod html;
mod svg;
mod text;

pub use html::html;
pub use text::{markdown, terminal};

use crate::{Interval, SpeedVerdict};

/// report.json: the Report value, pretty-printed.
pub fn json(report: &crate::Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("a Report serialises");
    s.push('\n');
    s
}

/// Megabytes (10⁶ bytes), one decimal.
pub(crate) fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// A horizontal bar of `width` cells for `value` out of `max`, in eighths of a cell.
pub(crate) fn bar(value: f64, max: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    if !(value.is_finite() && max.is_finite()) || max <= 0.0 || value <= 0.0 {
        return String::new();
    }
    let eighths = ((value / max).min(1.0) * (width * 8) as f64).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(PARTS[eighths % 8]);
    }
    s
}

/// The header lines: model, machine, timing, fidelity, calibration, budget, pare.
pub(crate) fn meta(r: &crate::Report) -> Vec<(String, String)> {
    let s = &r.settings;
    [
        (
            "model",
            format!(
                "{} ({}, {:.1} M parameters, {} MB)",
                r.model.path,
                r.model.architecture,
                r.model.parameters as f64 / 1e6,
                mb(r.model.file_bytes)
            ),
        ),
        (
            "machine",
            format!(
                "{}; {}; {} threads of {} logical CPUs",
                r.machine.cpu, r.machine.isa, r.machine.threads, r.machine.logical_cpus
            ),
        ),
        (
            "timing",
            if r.task.higher_is_better {
                format!(
                    "batch 1 × {} tokens, {} rounds × {} runs per variant, alternating variants round by round; throughput at batch {} × {}",
                    s.seq, s.rounds, s.runs_per_round, s.throughput_batch, s.seq
                )
            } else {
                format!(
                    "latency: decode, ms per token after a 128-token prefill (128 tokens per run); throughput: prefill of {} tokens; {} rounds × {} runs per variant, alternating variants round by round; each variant's runs of a round in a process of their own (llama.cpp's in Python)",
                    s.seq, s.rounds, s.runs_per_round
                )
            },
        ),
        (
            "fidelity",
            format!(
                "{}: {} and {} over {} items ({})",
                r.task.fidelity_of, r.task.fidelity, r.task.fidelity_worst, s.fidelity_count, s.fidelity_texts
            ),
        ),
        ("calibration", format!("{} ({} samples)", s.calibration, s.calibration_samples)),
        ("budget", r.analysis.rules.get("budget").cloned().unwrap_or_default()),
        (
            "pare",
            format!(
                "{}{}; sweep {}{:.0} s",
                r.pare.version,
                r.pare.commit.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
                if s.quick { "--quick, " } else { "" },
                r.wall_seconds
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The flag of a variant measurably slower than the original.
pub(crate) const SLOWER: char = '▼';

/// A speed ratio (how many times faster than `than`) in words, as the speed test's verdict allows:
/// "2.75× faster than X", "3.30× slower than X", "no measurable change in speed from X (1.02×)". Without
/// `than`, the same without the reference.
pub fn speed_words(ratio: f64, verdict: SpeedVerdict, than: Option<&str>) -> String {
    let to = |word: &str| than.map(|t| format!(" {word} {t}")).unwrap_or_default();
    match verdict {
        SpeedVerdict::Baseline => "the baseline".into(),
        SpeedVerdict::Faster => format!("{ratio:.2}× faster{}", to("than")),
        SpeedVerdict::Slower => format!("{:.2}× slower{}", 1.0 / ratio, to("than")),
        SpeedVerdict::NoMeasurableChange => format!("no measurable change in speed{} ({ratio:.2}×)", to("from")),
        SpeedVerdict::Untested => match than {
            Some(t) => format!("{ratio:.2}× the speed of {t}, untested (too few runs)"),
            None => format!("{ratio:.2}×, untested (too few runs)"),
        },
    }
}

/// A speed ratio's interval, oriented as [`speed_words`] states the ratio: "2.70–2.80×", or for a
/// slowdown "1.38–1.45× slower".
pub fn speed_interval(ci: Interval, verdict: SpeedVerdict) -> String {
    match verdict {
        SpeedVerdict::Slower => format!("{:.2}–{:.2}× slower", 1.0 / ci.high, 1.0 / ci.low),
        _ => format!("{:.2}–{:.2}×", ci.low, ci.high),
    }
}

/// The compact form of a speed ratio in tables: "2.75×", "≈1 (n.s.)" when the speed test finds no
/// difference, "▼ 3.30× slower" (flagged) when it finds a slowdown.
pub fn speed_cell(ratio: f64, verdict: SpeedVerdict) -> String {
    match verdict {
        SpeedVerdict::Baseline | SpeedVerdict::Faster => format!("{ratio:.2}×"),
        SpeedVerdict::NoMeasurableChange => "≈1 (n.s.)".into(),
        SpeedVerdict::Slower => format!("{SLOWER} {:.2}× slower", 1.0 / ratio),
        SpeedVerdict::Untested => format!("{ratio:.2}× (untested)"),
    }
}

/// A variant's speedup with its interval, for the speed charts: "2.75× (2.70–2.80×)",
/// "1.02×, n.s. (0.97–1.08×)", "▼ 1.41× slower (1.38–1.45× slower)".
pub(crate) fn speed_detail(v: &crate::Variant) -> String {
    let ci = v.speedup_ci.map(|ci| format!(" ({})", speed_interval(ci, v.speed_verdict))).unwrap_or_default();
    match v.speed_verdict {
        SpeedVerdict::Baseline => format!("{:.2}×", v.speedup),
        SpeedVerdict::NoMeasurableChange => format!("{:.2}×, n.s.{ci}", v.speedup),
        SpeedVerdict::Untested => format!("{:.2}×, untested", v.speedup),
        verdict => format!("{}{ci}", speed_cell(v.speedup, verdict)),
    }
}

/// The speed gain of a trade-off (`pct` = 100 · (speedup − 1)) as the speed test allows: "+175%",
/// "+2% (n.s.)", "▼ 1.41× slower".
pub(crate) fn speed_gain(pct: f64, verdict: SpeedVerdict) -> String {
    match verdict {
        SpeedVerdict::Baseline | SpeedVerdict::Faster => format!("{pct:+.0}%"),
        SpeedVerdict::NoMeasurableChange => format!("{pct:+.0}% (n.s.)"),
        SpeedVerdict::Slower => speed_cell(1.0 + pct / 100.0, verdict),
        SpeedVerdict::Untested => format!("{pct:+.0}% (untested)"),
    }
}

/// How to read the speedup column.
pub(crate) const SPEED_NOTE: &str = "Speedup: the original's median latency / the variant's, tested by the speed_test rule; ≈1 (n.s.): its 95% interval contains 1, no measurable change; ▼: measurably slower than the original.";

/// The verdict of variant `id` against the original (untested when unknown).
pub(crate) fn verdict_of(r: &crate::Report, id: &str) -> SpeedVerdict {
    r.variant(id).map_or(SpeedVerdict::Untested, |v| v.speed_verdict)
}

/// Milliseconds: two decimals under 10, one above.
pub(crate) fn ms(x: f64) -> String {
    if x < 10.0 { format!("{x:.2}") } else { format!("{x:.1}") }
}

/// The summary table: header, one row per variant, and each row's budget status (`None` for peers).
/// The first column is the label and the last the budget; the others are numbers.
pub(crate) fn summary(r: &crate::Report) -> (Vec<String>, Vec<Vec<String>>, Vec<Option<bool>>) {
    let mut head: Vec<String> = [
        "Method",
        "Size (MB)",
        "Median ms",
        "p90 ms",
        "min–max ms",
        "Runs",
        "Speedup",
        "Size reduction",
        "Params (M)",
        "Nonzero (M)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    head.extend([capitalized(&r.task.fidelity), capitalized(&r.task.fidelity_worst)]);
    head.extend(r.tasks.iter().map(|t| t.metric.clone()));
    head.extend([capitalized(&r.task.throughput_unit), "Peak MB".to_string(), "Budget".to_string()]);
    let status: Vec<Option<bool>> = r
        .variants
        .iter()
        .map(|v| (v.kind != crate::Kind::Peer).then_some(r.task.within(v.fidelity.mean, r.analysis.max_loss)))
        .collect();
    let rows = r
        .variants
        .iter()
        .zip(&status)
        .map(|(v, st)| {
            let mut row = vec![
                v.label.clone(),
                mb(v.file_bytes),
                ms(v.latency.median_ms),
                ms(v.latency.p90_ms),
                format!("{}–{}", ms(v.latency.min_ms), ms(v.latency.max_ms)),
                v.latency.runs.to_string(),
                speed_cell(v.speedup, v.speed_verdict),
                format!("{:.1}%", 100.0 * (1.0 - v.size_ratio)),
                format!("{:.2}", v.parameters as f64 / 1e6),
                format!("{:.2}", v.nonzeros as f64 / 1e6),
                format!("{:.4}", v.fidelity.mean),
                format!("{:.4}", v.fidelity.worst),
            ];
            row.extend(r.tasks.iter().map(|t| v.tasks.get(&t.id).map_or("–".into(), |x| format!("{x:.3}"))));
            row.push(v.throughput.as_ref().map_or("–".into(), |t| format!("{:.1}", t.items_per_s)));
            row.push(v.peak_memory_bytes.map_or("–".into(), mb));
            row.push(
                match st {
                    Some(true) => "within",
                    Some(false) => "over",
                    None => "peer",
                }
                .into(),
            );
            row
        })
        .collect();
    (head, rows, status)
}

/// `text` with its first letter in upper case.
pub(crate) fn capitalized(text: &str) -> String {
    let mut c = text.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// Bar length of a fidelity value and what the chart's heading says of it: cosines from 0.5, KL
/// divergences from 0 (longer is worse).
pub(crate) fn fidelity_bar(task: &crate::TaskSpec, value: f64) -> f64 {
    if task.higher_is_better { (value - 0.5).max(0.0) } else { value.max(0.0) }
}

/// Heading of the fidelity chart.
pub(crate) fn fidelity_heading(task: &crate::TaskSpec, with_original: bool) -> String {
    format!(
        "Fidelity ({}{}; {})",
        task.fidelity,
        if with_original { " to the original" } else { "" },
        if task.higher_is_better { "bar from 0.5" } else { "longer is worse" }
    )
}

/// Escapes text for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars() {
        assert_eq!(super::bar(1.0, 1.0, 4), "████");
        assert_eq!(super::bar(0.5, 1.0, 4), "██");
        assert_eq!(super::bar(1.0 / 32.0, 1.0, 4), "▏");
        assert_eq!(super::bar(2.0, 1.0, 2), "██", "clamped to the width");
        assert_eq!(super::bar(0.0, 1.0, 4), "");
        assert_eq!(super::bar(f64::NAN, 1.0, 4), "");
    }
}
