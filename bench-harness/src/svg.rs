//! Line charts as inline SVG, so an HTML report is one self-contained file (no scripts, no
//! network).

use std::fmt::Write;

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Dashed line (e.g. the consume rate next to the publish rate).
    pub dashed: bool,
    /// Index into the palette.
    pub color: usize,
}

/// How an axis maps data to pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Linear from 0.
    Linear,
    /// log10 (values <= 0 are clamped to the smallest positive value).
    Log,
}

/// A chart's axes.
#[derive(Debug, Clone)]
pub struct Axes {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Y scale.
    pub y_scale: Scale,
    /// Fixed x ticks as `(value, label)`; empty = automatic.
    pub x_ticks: Vec<(f64, String)>,
}

const PALETTE: &[&str] =
    &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 90.0;

/// Renders the chart as an `<svg>` element.
pub fn chart(axes: &Axes, series: &[Series]) -> String {
    let pts = series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    for (v, _) in &axes.x_ticks {
        x0 = x0.min(*v);
        x1 = x1.max(*v);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let (ty0, ty1) = match axes.y_scale {
        Scale::Linear => (0.0, nice_ceiling(y1.max(1e-9))),
        Scale::Log => {
            let lo = y0.max(1e-3).log10().floor();
            let hi = y1.max(1e-3).log10().ceil().max(lo + 1.0);
            (lo, hi)
        }
    };
    let ty = |y: f64| match axes.y_scale {
        Scale::Linear => y,
        Scale::Log => y.max(1e-3).log10(),
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| TOP + plot_h - (ty(y) - ty0) / (ty1 - ty0) * plot_h;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(&axes.title)
    );
    // Grid and y ticks.
    let y_ticks: Vec<(f64, String)> = match axes.y_scale {
        Scale::Linear => (0..=5)
            .map(|i| {
                let v = ty1 * f64::from(i) / 5.0;
                (v, short(v))
            })
            .collect(),
        Scale::Log => {
            (ty0 as i32..=ty1 as i32).map(|e| (10f64.powi(e), short(10f64.powi(e)))).collect()
        }
    };
    for (v, label) in &y_ticks {
        let y = py(*v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let x_ticks: Vec<(f64, String)> = if axes.x_ticks.is_empty() {
        (0..=6)
            .map(|i| {
                let v = x0 + (x1 - x0) * f64::from(i) / 6.0;
                (v, short(v))
            })
            .collect()
    } else {
        axes.x_ticks.clone()
    };
    for (v, label) in &x_ticks {
        let x = px(*v);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/><text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + plot_w / 2.0,
        TOP + plot_h + 34.0,
        escape(&axes.x_label),
        TOP + plot_h / 2.0,
        escape(&axes.y_label)
    );
    // Lines and legend.
    for (i, series) in series.iter().enumerate() {
        let color = PALETTE[series.color % PALETTE.len()];
        let path: Vec<String> = series
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let dash = if series.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        );
        let (lx, ly) = (LEFT + (i % 3) as f64 * 230.0, TOP + plot_h + 52.0 + (i / 3) as f64 * 16.0);
        let _ = write!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(&series.label)
        );
    }
    s.push_str("</svg>");
    s
}

/// The smallest 1/2/5 × 10^n at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let e = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * e).find(|c| *c >= v).unwrap_or(10.0 * e)
}

/// A compact tick label.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        trim(format!("{:.2}", v / 1e9)) + "G"
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e3 {
        trim(format!("{:.2}", v / 1e3)) + "k"
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_scales() {
        let axes = Axes {
            title: "t <x>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            y_scale: Scale::Log,
            x_ticks: vec![],
        };
        let svg = chart(
            &axes,
            &[Series {
                label: "a&b".into(),
                points: vec![(0.0, 10.0), (1.0, 1000.0)],
                dashed: false,
                color: 0,
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("t &lt;x&gt;") && svg.contains("a&amp;b"));
        assert_eq!(nice_ceiling(340.0), 500.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(2_000_000.0), "2M");
        // No data still renders.
        assert!(chart(&axes, &[]).ends_with("</svg>"));
    }
}
