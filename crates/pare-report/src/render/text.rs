//! Terminal and Markdown renderings: the same blocks (the layout of a compression performance
//! analysis: bar charts, summary table, pruning curves, findings, trade-offs, ranking,
//! recommendations), drawn as plain text or as Markdown.

use super::{SPEED_NOTE, bar, mb, meta, ms, speed_cell, speed_detail, speed_gain, summary, verdict_of};
use crate::{Kind, Report, Variant};

const BAR: usize = 40;

/// A bar with its name and value text: (name, fraction of the width, text).
type NamedBar = (String, f64, String);

/// One piece of the document.
enum Block {
    Title(String),
    Meta(Vec<(String, String)>),
    Heading(String),
    Note(String),
    /// Horizontal bars: label, bar fraction (0..=1), value text, budget status.
    Chart {
        rows: Vec<(String, f64, String, Option<bool>)>,
        glyph: char,
    },
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
        right: Vec<bool>,
    },
    Bullets(Vec<String>),
    Numbered(Vec<(String, Option<bool>)>),
    /// Per variant: named bars, each (name, fraction, text).
    Pairs(Vec<(String, Vec<NamedBar>)>),
}

fn status(r: &Report, v: &Variant) -> Option<bool> {
    (v.kind != Kind::Peer).then_some(r.task.within(v.fidelity.mean, r.analysis.max_loss))
}

fn chart(rows: Vec<(String, f64, String, Option<bool>)>, glyph: char) -> Block {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    Block::Chart {
        rows: rows.into_iter().map(|(l, v, t, s)| (l, if max > 0.0 { v / max } else { 0.0 }, t, s)).collect(),
        glyph,
    }
}

fn blocks(r: &Report) -> Vec<Block> {
    let mut b = Vec::new();
    let s = &r.settings;
    b.push(Block::Title(format!("MODEL COMPRESSION REPORT: {}", r.model.name)));
    b.push(Block::Meta(meta(r)));
    let vs = &r.variants;

    b.push(Block::Heading("Model Size (MB)".into()));
    b.push(chart(
        vs.iter().map(|v| (v.label.clone(), v.file_bytes as f64, mb(v.file_bytes), status(r, v))).collect(),
        '█',
    ));
    b.push(Block::Heading(
        if r.task.higher_is_better {
            "Inference Time (ms, batch 1, median; p90 after the slash)"
        } else {
            "Decode Time per Token (ms, median; p90 after the slash)"
        }
        .into(),
    ));
    b.push(chart(
        vs.iter()
            .map(|v| {
                (
                    v.label.clone(),
                    v.latency.median_ms,
                    format!("{} / {}", ms(v.latency.median_ms), ms(v.latency.p90_ms)),
                    status(r, v),
                )
            })
            .collect(),
        '█',
    ));
    b.push(Block::Heading("Speed Improvement (× the original; 95% interval; n.s.: no measurable change)".into()));
    b.push(chart(vs.iter().map(|v| (v.label.clone(), v.speedup, speed_detail(v), status(r, v))).collect(), '█'));
    b.push(Block::Heading(super::fidelity_heading(&r.task, true)));
    b.push(chart(
        vs.iter()
            .map(|v| {
                (
                    v.label.clone(),
                    super::fidelity_bar(&r.task, v.fidelity.mean),
                    format!("{:.4}", v.fidelity.mean),
                    status(r, v),
                )
            })
            .collect(),
        '█',
    ));
    for t in &r.tasks {
        b.push(Block::Heading(format!("{} ({})", t.name, t.metric)));
        b.push(chart(
            vs.iter()
                .filter_map(|v| {
                    v.tasks.get(&t.id).map(|x| (v.label.clone(), x.max(0.0), format!("{x:.3}"), status(r, v)))
                })
                .collect(),
            '█',
        ));
    }

    b.push(Block::Heading("COMPRESSION PERFORMANCE SUMMARY".into()));
    let (head, rows, _) = summary(r);
    let mut right = vec![false];
    right.extend(std::iter::repeat_n(true, head.len() - 2));
    right.push(false);
    b.push(Block::Table { head, rows, right });
    b.push(Block::Note(if r.task.higher_is_better {
        format!(
            "Median, p90, min–max: {} runs at batch 1 × {}; Sent/s at batch {} × {}; Params: parameters stored (fewer after structured pruning); Nonzero: those not zero; Size reduction of model.safetensors.",
            vs.first().map_or(0, |v| v.latency.runs),
            s.seq,
            s.throughput_batch,
            s.seq
        )
    } else {
        format!(
            "Median, p90, min–max: decode ms per token after a 128-token prefill, {} runs of 128 tokens; Tokens/s: prefill of {} tokens; Size reduction of the GGUF file.",
            vs.first().map_or(0, |v| v.latency.runs),
            s.seq
        )
    }));
    b.push(Block::Note(SPEED_NOTE.into()));

    if !r.analysis.pruning_curves.is_empty() {
        b.push(Block::Heading("PRUNING RATIO vs SPEEDUP AND FIDELITY".into()));
        let max = r.analysis.pruning_curves.iter().flat_map(|c| c.points.iter().map(|p| p.speedup)).fold(0.0, f64::max);
        for c in &r.analysis.pruning_curves {
            b.push(Block::Note(c.label.clone()));
            b.push(Block::Chart {
                rows: c
                    .points
                    .iter()
                    .map(|p| {
                        (
                            format!("Pruning {:.0}%", 100.0 * p.sparsity),
                            p.speedup / max,
                            format!(
                                "{}  cos {:.3}  size {:.2}×",
                                speed_cell(p.speedup, verdict_of(r, &p.variant)),
                                p.fidelity,
                                p.size_ratio
                            ),
                            Some(p.fidelity >= 1.0 - r.analysis.max_loss),
                        )
                    })
                    .collect(),
                glyph: '▓',
            });
        }
    }

    b.push(Block::Heading("KEY FINDINGS".into()));
    b.push(Block::Bullets(r.analysis.findings.clone()));

    b.push(Block::Heading("COMPRESSION TRADE-OFF ANALYSIS".into()));
    b.push(Block::Note("Size reduction vs speed gain vs fidelity loss (bars scaled to the largest of each):".into()));
    let (ms_, mg, ml) = r.analysis.tradeoffs.iter().fold((0f64, 0f64, 0f64), |a, t| {
        (a.0.max(t.size_reduction_pct), a.1.max(t.speed_gain_pct), a.2.max(t.fidelity_loss))
    });
    let frac = |x: f64, m: f64| if m > 0.0 { (x / m).max(0.0) } else { 0.0 };
    b.push(Block::Pairs(
        r.analysis
            .tradeoffs
            .iter()
            .map(|t| {
                (
                    r.label(&t.variant).to_string(),
                    vec![
                        (
                            "Size reduction".into(),
                            frac(t.size_reduction_pct, ms_),
                            format!("{:.1}%", t.size_reduction_pct),
                        ),
                        (
                            "Speed gain".into(),
                            frac(t.speed_gain_pct, mg),
                            speed_gain(t.speed_gain_pct, verdict_of(r, &t.variant)),
                        ),
                        ("Fidelity loss".into(), frac(t.fidelity_loss, ml), format!("{:.4}", t.fidelity_loss)),
                    ],
                )
            })
            .collect(),
    ));

    b.push(Block::Heading("EFFICIENCY RANKING".into()));
    b.push(Block::Note(format!(
        "{}; {}.",
        r.analysis.rules.get("score").cloned().unwrap_or_default(),
        r.analysis.rules.get("ranking").cloned().unwrap_or_default()
    )));
    b.push(Block::Numbered(
        r.analysis
            .ranking
            .iter()
            .map(|k| (format!("{}: score {:.2}; {}", r.label(&k.variant), k.score, k.note), Some(k.within_budget)))
            .collect(),
    ));

    b.push(Block::Heading("DEPLOYMENT RECOMMENDATIONS".into()));
    b.push(Block::Bullets(
        r.analysis
            .recommendations
            .iter()
            .map(|rec| format!("{}: {}. Rule: {}.", rec.use_case, rec.reason, rec.rule))
            .collect(),
    ));

    b.push(Block::Heading("HOW EACH VARIANT WAS MADE".into()));
    b.push(Block::Bullets(vs.iter().map(|v| format!("{}: {}", v.label, v.recipe)).collect()));
    b
}

/// ANSI styling, or none.
struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }
    fn status(&self, s: Option<bool>, text: &str) -> String {
        match s {
            Some(true) => self.wrap("32", text),
            Some(false) => self.wrap("33", text),
            None => self.wrap("36", text),
        }
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize, right: bool) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    if right { format!("{fill}{s}") } else { format!("{s}{fill}") }
}

/// The report as terminal text; `color` adds ANSI colours (for a terminal only).
pub fn terminal(r: &Report, color: bool) -> String {
    let p = Paint(color);
    let mut o = String::new();
    for block in blocks(r) {
        match block {
            Block::Title(t) => {
                o.push_str(&p.wrap("1", &t));
                o.push('\n');
                o.push_str(&"=".repeat(width(&t)));
                o.push_str("\n\n");
            }
            Block::Meta(kv) => {
                let w = kv.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
                for (k, v) in kv {
                    o.push_str(&format!("{}  {v}\n", pad(&k, w, false)));
                }
            }
            Block::Heading(h) => {
                o.push_str(&format!("\n\n{}\n{}\n\n", p.wrap("1", &h), "=".repeat(width(&h))));
            }
            Block::Note(n) => o.push_str(&format!("{n}\n")),
            Block::Chart { rows, glyph } => {
                let w = rows.iter().map(|r| width(&r.0)).max().unwrap_or(0);
                for (label, f, text, st) in rows {
                    let mut bar = bar(f, 1.0, BAR);
                    if glyph != '█' {
                        bar = bar.replace('█', &glyph.to_string());
                    }
                    let bar = pad(&bar, BAR, false);
                    o.push_str(&format!("{} |{} {}\n", pad(&label, w, false), p.status(st, &bar), text));
                }
            }
            Block::Table { head, rows, right } => {
                let mut w: Vec<usize> = head.iter().map(|h| width(h)).collect();
                for row in &rows {
                    for (i, c) in row.iter().enumerate() {
                        w[i] = w[i].max(width(c));
                    }
                }
                let line = |cells: &[String]| {
                    let body: Vec<String> = cells.iter().enumerate().map(|(i, c)| pad(c, w[i], right[i])).collect();
                    format!("| {} |\n", body.join(" | "))
                };
                o.push_str(&line(&head));
                let rule: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
                o.push_str(&format!("|-{}-|\n", rule.join("-|-")));
                for row in &rows {
                    o.push_str(&line(row));
                }
            }
            Block::Bullets(items) => {
                for i in items {
                    o.push_str(&format!("- {i}\n"));
                }
            }
            Block::Numbered(items) => {
                for (n, (i, st)) in items.iter().enumerate() {
                    o.push_str(&format!("{:>2}. {}\n", n + 1, p.status(*st, i)));
                }
            }
            Block::Pairs(groups) => {
                let w = groups.iter().flat_map(|g| g.1.iter().map(|x| width(&x.0))).max().unwrap_or(0);
                for (label, bars) in groups {
                    o.push_str(&format!("\n{label}:\n"));
                    for (name, f, text) in bars {
                        o.push_str(&format!("  {}: {} {text}\n", pad(&name, w, false), bar(f, 1.0, BAR)));
                    }
                }
            }
        }
    }
    o
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The report as Markdown: the same content, with the charts in text blocks.
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    for block in blocks(r) {
        match block {
            Block::Title(t) => o.push_str(&format!("# {t}\n\n")),
            Block::Meta(kv) => {
                for (k, v) in kv {
                    o.push_str(&format!("- **{k}**: {v}\n"));
                }
            }
            Block::Heading(h) => o.push_str(&format!("\n## {h}\n\n")),
            Block::Note(n) => o.push_str(&format!("{n}\n\n")),
            Block::Chart { rows, glyph } => {
                let w = rows.iter().map(|r| width(&r.0)).max().unwrap_or(0);
                o.push_str("```text\n");
                for (label, f, text, st) in rows {
                    let mut bar = bar(f, 1.0, BAR);
                    if glyph != '█' {
                        bar = bar.replace('█', &glyph.to_string());
                    }
                    let mark = match st {
                        Some(false) => " (over budget)",
                        _ => "",
                    };
                    o.push_str(&format!("{} |{} {text}{mark}\n", pad(&label, w, false), pad(&bar, BAR, false)));
                }
                o.push_str("```\n\n");
            }
            Block::Table { head, rows, right } => {
                o.push_str(&format!("| {} |\n", head.iter().map(|h| md_cell(h)).collect::<Vec<_>>().join(" | ")));
                let align: Vec<&str> = right.iter().map(|&r| if r { "---:" } else { "---" }).collect();
                o.push_str(&format!("| {} |\n", align.join(" | ")));
                for row in rows {
                    o.push_str(&format!("| {} |\n", row.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")));
                }
                o.push('\n');
            }
            Block::Bullets(items) => {
                for i in items {
                    o.push_str(&format!("- {i}\n"));
                }
                o.push('\n');
            }
            Block::Numbered(items) => {
                for (n, (i, _)) in items.iter().enumerate() {
                    o.push_str(&format!("{}. {i}\n", n + 1));
                }
                o.push('\n');
            }
            Block::Pairs(groups) => {
                let w = groups.iter().flat_map(|g| g.1.iter().map(|x| width(&x.0))).max().unwrap_or(0);
                o.push_str("```text\n");
                for (label, bars) in groups {
                    o.push_str(&format!("{label}:\n"));
                    for (name, f, text) in bars {
                        o.push_str(&format!("  {}: {} {text}\n", pad(&name, w, false), bar(f, 1.0, BAR)));
                    }
                }
                o.push_str("```\n\n");
            }
        }
    }
    o
}
