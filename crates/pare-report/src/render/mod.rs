//! Renderers of a [`crate::Report`]: terminal text (optionally coloured), Markdown, JSON, and a
//! self-contained HTML page with SVG plots. They format; they do not compute findings.

mod html;
mod svg;
mod text;

pub use html::html;
pub use text::{markdown, terminal};

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
