//! SVG plots drawn as text: horizontal bars, line charts and a scatter, with their axes and labels.

use super::esc;
use std::fmt::Write;

/// Bars of the bar charts.
pub const BAR_COLOR: &str = "#4c78a8";
/// Bars of variants over the fidelity budget.
pub const OVER_COLOR: &str = "#b8c6d9";
/// Series colours of line charts, in order.
pub const SERIES: [&str; 4] = ["#f58518", "#54a24b", "#b279a2", "#9d755d"];
/// Points of the scatter.
pub const POINT_COLOR: &str = "#e45756";

/// One bar: label, value, text after the bar, whisker end (e.g. p90), dimmed.
pub struct BarRow {
    pub label: String,
    pub value: f64,
    pub text: String,
    pub whisker: Option<f64>,
    pub dim: bool,
}

/// A horizontal bar chart.
pub fn bars(title: &str, rows: &[BarRow]) -> String {
    // The label column fits the longest label (12 px text, about 6.6 px a character).
    let longest = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0) as f64;
    let label_w = (longest * 6.6 + 10.0).max(190.0);
    let (bar_w, text_w, row_h, top) = (380.0, 210.0, 20.0, 28.0);
    let width = label_w + bar_w + text_w;
    let height = top + rows.len() as f64 * row_h + 8.0;
    let max = rows.iter().map(|r| r.whisker.unwrap_or(r.value).max(r.value)).fold(0.0, f64::max);
    let scale = if max > 0.0 { bar_w / max } else { 0.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}">"#,
        t = esc(title)
    );
    let _ = write!(s, r#"<text x="0" y="16" class="title">{}</text>"#, esc(title));
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let w = (r.value.max(0.0) * scale).max(0.0);
        let fill = if r.dim { OVER_COLOR } else { BAR_COLOR };
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end" class="label">{l}</text><rect x="{label_w}" y="{ry}" width="{w:.1}" height="{h}" fill="{fill}"/>"#,
            lx = label_w - 6.0,
            ty = y + 13.0,
            l = esc(&r.label),
            ry = y + 3.0,
            h = row_h - 6.0
        );
        let mut end = label_w + w;
        if let Some(wh) = r.whisker {
            let x2 = label_w + wh.max(0.0) * scale;
            let _ = write!(
                s,
                r##"<line x1="{x1:.1}" y1="{yy}" x2="{x2:.1}" y2="{yy}" stroke="#333" stroke-width="1"/><line x1="{x2:.1}" y1="{a}" x2="{x2:.1}" y2="{b}" stroke="#333" stroke-width="1"/>"##,
                x1 = label_w + w,
                yy = y + row_h / 2.0,
                a = y + 5.0,
                b = y + row_h - 5.0
            );
            end = end.max(x2);
        }
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{ty}" class="value">{t}</text>"#,
            x = end + 5.0,
            ty = y + 13.0,
            t = esc(&r.text)
        );
    }
    s.push_str("</svg>");
    s
}

/// A data series of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A "nice" tick step (1, 2, 2.5 or 5 × 10ᵏ) giving about `n` intervals over `span`.
fn nice_step(span: f64, n: usize) -> f64 {
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// The range widened to whole steps, and its ticks.
fn nice(lo: f64, hi: f64, n: usize) -> ((f64, f64), Vec<f64>) {
    let step = nice_step(hi - lo, n);
    let (a, b) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let count = ((b - a) / step).round() as usize;
    ((a, b), (0..=count).map(|i| a + step * i as f64).collect())
}

struct Frame {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    xr: (f64, f64),
    yr: (f64, f64),
    xt: Vec<f64>,
    yt: Vec<f64>,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        self.x0 + (v - self.xr.0) / (self.xr.1 - self.xr.0) * self.w
    }
    fn y(&self, v: f64) -> f64 {
        self.y0 + self.h - (v - self.yr.0) / (self.yr.1 - self.yr.0) * self.h
    }
    fn axes(
        &self,
        s: &mut String,
        x_label: &str,
        y_label: &str,
        fx: &dyn Fn(f64) -> String,
        fy: &dyn Fn(f64) -> String,
    ) {
        for &t in &self.yt {
            let y = self.y(t);
            let _ = write!(
                s,
                r##"<line x1="{a}" y1="{y:.1}" x2="{b}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="tick">{v}</text>"##,
                a = self.x0,
                b = self.x0 + self.w,
                tx = self.x0 - 5.0,
                ty = y + 4.0,
                v = fy(t)
            );
        }
        for &t in &self.xt {
            let x = self.x(t);
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{ty}" text-anchor="middle" class="tick">{v}</text>"#,
                ty = self.y0 + self.h + 15.0,
                v = fx(t)
            );
        }
        let _ = write!(
            s,
            r##"<line x1="{x0}" y1="{yb}" x2="{xe}" y2="{yb}" stroke="#333"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{yb}" stroke="#333"/><text x="{xm}" y="{xl}" text-anchor="middle" class="label">{xlab}</text><text x="12" y="{ym}" text-anchor="middle" class="label" transform="rotate(-90 12 {ym})">{ylab}</text>"##,
            x0 = self.x0,
            y0 = self.y0,
            yb = self.y0 + self.h,
            xe = self.x0 + self.w,
            xm = self.x0 + self.w / 2.0,
            xl = self.y0 + self.h + 32.0,
            ym = self.y0 + self.h / 2.0,
            xlab = esc(x_label),
            ylab = esc(y_label)
        );
    }
}

/// The data range of `vals`, padded by `pad_frac` of its span (at least `floor` below, at most `ceil`
/// above), widened to nice ticks.
fn range(
    vals: impl Iterator<Item = f64>,
    pad_frac: f64,
    floor: Option<f64>,
    ceil: Option<f64>,
) -> ((f64, f64), Vec<f64>) {
    let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return nice(0.0, 1.0, 5);
    }
    if hi - lo < 1e-9 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = (hi - lo) * pad_frac;
    let lo = floor.map_or(lo - pad, |f| (lo - pad).max(f));
    let hi = ceil.map_or(hi + pad, |c| (hi + pad).min(c));
    nice(lo, hi, 5)
}

/// A line chart of several series with a legend; `fx`, `fy` format the ticks; the y axis stays within
/// `y_bounds` where given.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    fx: &dyn Fn(f64) -> String,
    fy: &dyn Fn(f64) -> String,
    y_bounds: (Option<f64>, Option<f64>),
) -> String {
    let (width, height) = (520.0, 300.0);
    let (xr, xt) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), 0.0, None, None);
    let (yr, yt) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), 0.05, y_bounds.0, y_bounds.1);
    let f = Frame { x0: 60.0, y0: 34.0, w: 330.0, h: 210.0, xr, yr, xt, yt };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}"><text x="0" y="16" class="title">{t}</text>"#,
        t = esc(title)
    );
    f.axes(&mut s, x_label, y_label, fx, fy);
    for (i, ser) in series.iter().enumerate() {
        let c = SERIES[i % SERIES.len()];
        let pts: Vec<String> = ser.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", f.x(x), f.y(y))).collect();
        let _ = write!(s, r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2.5"/>"#, pts.join(" "));
        for &(x, y) in &ser.points {
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{c}"/>"#, f.x(x), f.y(y));
        }
        let ly = f.y0 + 10.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{ry}" width="14" height="4" fill="{c}"/><text x="{tx}" y="{ty}" class="label">{n}</text>"#,
            lx = f.x0 + f.w + 16.0,
            ry = ly - 4.0,
            tx = f.x0 + f.w + 36.0,
            ty = ly + 1.0,
            n = esc(&ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// A scatter point: label, x, y, radius, on the Pareto frontier, dimmed.
pub struct Point {
    pub label: String,
    pub x: f64,
    pub y: f64,
    pub r: f64,
    pub frontier: bool,
    pub dim: bool,
}

/// A scatter with labelled points; points on the Pareto front get an outline.
pub fn scatter(title: &str, x_label: &str, y_label: &str, points: &[Point]) -> String {
    let (width, height) = (720.0, 420.0);
    let (xr, xt) = range(points.iter().map(|p| p.x), 0.05, Some(0.0), None);
    let (yr, yt) = range(points.iter().map(|p| p.y), 0.03, None, Some(1.0));
    let f = Frame { x0: 60.0, y0: 34.0, w: 560.0, h: 320.0, xr, yr, xt, yt };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}"><text x="0" y="16" class="title">{t}</text>"#,
        t = esc(title)
    );
    f.axes(&mut s, x_label, y_label, &|v| format!("{v}"), &|v| format!("{v:.1}"));
    for p in points {
        let _ = write!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{c}" fill-opacity="{o}" stroke="#333" stroke-width="{sw}"/><text x="{tx:.1}" y="{ty:.1}" class="tick">{l}</text>"##,
            x = f.x(p.x),
            y = f.y(p.y),
            r = p.r,
            c = POINT_COLOR,
            o = if p.dim { 0.35 } else { 0.85 },
            sw = if p.frontier { 1.5 } else { 0.0 },
            tx = f.x(p.x) + p.r + 3.0,
            ty = f.y(p.y) + 4.0,
            l = esc(&p.label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn nice_ticks() {
        let ((a, b), t) = super::nice(0.0, 90.0, 5);
        assert_eq!((a, b), (0.0, 100.0));
        assert_eq!(t, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let ((a, b), t) = super::nice(0.13, 1.0, 5);
        assert!((a - 0.0).abs() < 1e-12 && (b - 1.0).abs() < 1e-12, "{a} {b}");
        assert_eq!(t.len(), 6);
    }
}
