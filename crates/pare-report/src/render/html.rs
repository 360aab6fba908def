//! report.html: one self-contained page (inline CSS and SVG, no scripts, no network resources).

use super::svg::{self, BarRow, Point, Series};
use super::{SLOWER, SPEED_NOTE, esc, mb, meta, ms, speed_detail, speed_gain, summary, verdict_of};
use crate::{Kind, Report, Variant};
use std::fmt::Write;

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1800px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 7px}th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}td.slow{color:#b00020;font-weight:600}tr.over td{color:#8a6d00}tr.peer td{color:#1f6f8b}
.meta{font-size:13px;color:#444}.meta b{display:inline-block;min-width:90px}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:18px}
svg.plot{background:#fff;border:1px solid #eee;width:100%;height:auto}.wide{max-width:1000px}svg .title{font-size:14px;font-weight:600}svg .label{font-size:12px}
svg .value,svg .tick{font-size:11px;fill:#444}li{margin:3px 0}.note{font-size:12px;color:#555}";

/// What a bar chart shows of a variant: value, text, whisker end.
type BarOf<'a> = dyn Fn(&Variant) -> (f64, String, Option<f64>) + 'a;

fn over(r: &Report, v: &Variant) -> bool {
    v.kind != Kind::Peer && !r.task.within(v.fidelity.mean, r.analysis.max_loss)
}

/// A table; each cell is its text and its class (empty for none).
fn table(o: &mut String, head: &[String], rows: &[(String, Vec<(String, &str)>)]) {
    o.push_str("<table><tr>");
    for h in head {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr>");
    for (class, cells) in rows {
        let _ = write!(o, r#"<tr class="{class}">"#);
        for (c, class) in cells {
            if class.is_empty() {
                let _ = write!(o, "<td>{}</td>", esc(c));
            } else {
                let _ = write!(o, r#"<td class="{class}">{}</td>"#, esc(c));
            }
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
}

/// The report as a self-contained HTML page.
pub fn html(r: &Report) -> String {
    let vs = &r.variants;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pare report: {}</title><style>{CSS}</style></head><body>",
        esc(&r.model.name)
    );
    let _ = write!(o, "<h1>Model compression report: {}</h1>", esc(&r.model.name));
    o.push_str(r#"<div class="meta">"#);
    for (k, v) in meta(r) {
        let _ = write!(o, "<div><b>{k}</b> {}</div>", esc(&v));
    }
    o.push_str("</div>");

    o.push_str(r#"<h2>Size, time, speed and fidelity</h2><div class="grid">"#);
    let rows = |f: &BarOf<'_>| -> Vec<BarRow> {
        vs.iter()
            .map(|v| {
                let (value, text, whisker) = f(v);
                BarRow { label: v.label.clone(), value, text, whisker, dim: over(r, v) }
            })
            .collect()
    };
    o.push_str(&svg::bars("Model size (MB)", &rows(&|v| (v.file_bytes as f64 / 1e6, mb(v.file_bytes), None))));
    o.push_str(&svg::bars(
        if r.task.higher_is_better {
            "Inference time, batch 1 (ms: median, whisker to p90)"
        } else {
            "Decode time per token (ms: median, whisker to p90)"
        },
        &rows(&|v| {
            (
                v.latency.median_ms,
                format!("{} (p90 {})", ms(v.latency.median_ms), ms(v.latency.p90_ms)),
                Some(v.latency.p90_ms),
            )
        }),
    ));
    o.push_str(&svg::bars(
        "Speedup (× the original; 95% interval; n.s.: no measurable change)",
        &rows(&|v| (v.speedup, speed_detail(v), None)),
    ));
    o.push_str(&svg::bars(
        &super::fidelity_heading(&r.task, false),
        &rows(&|v| (super::fidelity_bar(&r.task, v.fidelity.mean), format!("{:.4}", v.fidelity.mean), None)),
    ));
    for t in &r.tasks {
        let rs: Vec<BarRow> = vs
            .iter()
            .filter_map(|v| {
                v.tasks.get(&t.id).map(|x| BarRow {
                    label: v.label.clone(),
                    value: x.max(0.0),
                    text: format!("{x:.3}"),
                    whisker: None,
                    dim: over(r, v),
                })
            })
            .collect();
        o.push_str(&svg::bars(&format!("{} ({})", t.name, t.metric), &rs));
    }
    o.push_str("</div>");
    o.push_str(r#"<p class="note">Pale bars: over the fidelity budget.</p>"#);

    o.push_str("<h2>Summary</h2>");
    let (head, rows, status) = summary(r);
    let last = head.len() - 1;
    let body: Vec<(String, Vec<(String, &str)>)> = rows
        .into_iter()
        .zip(status)
        .map(|(row, st)| {
            let class = match st {
                None => "peer",
                Some(false) => "over",
                Some(true) => "",
            };
            let cells = row
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let class = match i {
                        0 => "",
                        _ if i == last => "",
                        _ if c.starts_with(SLOWER) => "n slow",
                        _ => "n",
                    };
                    (c, class)
                })
                .collect();
            (class.to_string(), cells)
        })
        .collect();
    table(&mut o, &head, &body);
    let _ = write!(o, r#"<p class="note">{}</p>"#, esc(SPEED_NOTE));

    if !r.analysis.pruning_curves.is_empty() {
        o.push_str(r#"<h2>Pruning ratio against speedup and fidelity</h2><div class="grid">"#);
        let series = |f: &dyn Fn(&crate::CurvePoint) -> f64| -> Vec<Series> {
            r.analysis
                .pruning_curves
                .iter()
                .map(|c| Series {
                    name: c.label.clone(),
                    points: c.points.iter().map(|p| (100.0 * p.sparsity, f(p))).collect(),
                })
                .collect()
        };
        let pct = |v: f64| format!("{v:.0}%");
        let two = |v: f64| format!("{:.2}", (v * 100.0).round() / 100.0);
        o.push_str(&svg::lines(
            "Speedup against weights removed",
            "weights removed",
            "speedup (×)",
            &series(&|p| p.speedup),
            &pct,
            &two,
            (Some(0.0), None),
        ));
        o.push_str(&svg::lines(
            "Fidelity against weights removed",
            "weights removed",
            &r.task.fidelity,
            &series(&|p| p.fidelity),
            &pct,
            &two,
            if r.task.higher_is_better { (None, Some(1.0)) } else { (Some(0.0), None) },
        ));
        o.push_str("</div>");
    }

    o.push_str("<h2>Size, latency and fidelity together</h2>");
    let max_mb = vs.iter().map(|v| v.file_bytes).max().unwrap_or(1).max(1) as f64;
    let points: Vec<Point> = vs
        .iter()
        .map(|v| Point {
            label: v.label.clone(),
            x: v.latency.median_ms,
            y: v.fidelity.mean,
            r: 3.0 + 11.0 * (v.file_bytes as f64 / max_mb).sqrt(),
            frontier: r.analysis.pareto.contains(&v.id),
            dim: over(r, v),
        })
        .collect();
    o.push_str(r#"<div class="wide">"#);
    o.push_str(&svg::scatter(
        &format!("Median latency (ms) against {}; area ∝ file size", r.task.fidelity),
        if r.task.higher_is_better { "median latency, batch 1 (ms)" } else { "median decode ms per token" },
        &r.task.fidelity,
        &points,
    ));
    o.push_str("</div>");
    let _ = write!(
        o,
        r#"<p class="note">Outlined: the Pareto front ({}). {}</p>"#,
        esc(&r.analysis.pareto.iter().map(|id| r.label(id).to_string()).collect::<Vec<_>>().join(", ")),
        esc(r.analysis.rules.get("pareto").map(String::as_str).unwrap_or(""))
    );

    o.push_str("<h2>Key findings</h2><ul>");
    for f in &r.analysis.findings {
        let _ = write!(o, "<li>{}</li>", esc(f));
    }
    o.push_str("</ul>");

    o.push_str("<h2>Trade-offs</h2>");
    let head: Vec<String> =
        ["Variant", "Size reduction", "Speed gain", "Fidelity loss"].iter().map(|s| s.to_string()).collect();
    let body: Vec<(String, Vec<(String, &str)>)> = r
        .analysis
        .tradeoffs
        .iter()
        .map(|t| {
            let gain = speed_gain(t.speed_gain_pct, verdict_of(r, &t.variant));
            let gain_class = if gain.starts_with(SLOWER) { "n slow" } else { "n" };
            (
                String::new(),
                vec![
                    (r.label(&t.variant).to_string(), ""),
                    (format!("{:.1}%", t.size_reduction_pct), "n"),
                    (gain, gain_class),
                    (format!("{:.4}", t.fidelity_loss), "n"),
                ],
            )
        })
        .collect();
    table(&mut o, &head, &body);

    o.push_str("<h2>Efficiency ranking</h2>");
    let _ = write!(
        o,
        r#"<p class="note">{}; {}.</p><ol>"#,
        esc(r.analysis.rules.get("score").map(String::as_str).unwrap_or("")),
        esc(r.analysis.rules.get("ranking").map(String::as_str).unwrap_or(""))
    );
    for k in &r.analysis.ranking {
        let _ = write!(o, "<li>{}: score {:.2}; {}</li>", esc(r.label(&k.variant)), k.score, esc(&k.note));
    }
    o.push_str("</ol>");

    o.push_str("<h2>Deployment recommendations</h2><ul>");
    for rec in &r.analysis.recommendations {
        let _ = write!(
            o,
            "<li><b>{}</b>: {}.<br><span class=\"note\">Rule: {}.</span></li>",
            esc(&rec.use_case),
            esc(&rec.reason),
            esc(&rec.rule)
        );
    }
    o.push_str("</ul>");

    o.push_str("<h2>How each variant was made</h2><ul>");
    for v in vs {
        let _ = write!(o, "<li>{}: <code>{}</code></li>", esc(&v.label), esc(&v.recipe));
    }
    o.push_str("</ul></body></html>\n");
    o
}
