//! The chart, as hand-written SVG: latency (ms, linear) against percentile on a log
//! scale of 1/(1-p), so 90%, 99%, 99.9%, … are evenly spaced — the layout of
//! HdrHistogram's plotter. One polyline per series, a legend from the names.

use std::fmt::Write;

use crate::hgrm::Row;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub rows: Vec<Row>,
}

/// The x position of quantile `q` as log10(1/(1-q)), or `None` for q = 1 (the max,
/// drawn at the right edge).
fn nines(q: f64) -> Option<f64> {
    (q < 1.0).then(|| (1.0 / (1.0 - q)).log10())
}

pub fn render(title: &str, series: &[Series]) -> String {
    // The x axis runs to the decade past the deepest finite percentile, at least 99.9%.
    let deepest = series
        .iter()
        .flat_map(|s| s.rows.iter().filter_map(|r| nines(r.quantile)))
        .fold(3.0_f64, f64::max);
    let decades = deepest.ceil().min(9.0);
    let top_value = series
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.value))
        .fold(0.0_f64, f64::max);
    let (y_max, y_step) = nice_axis(top_value);

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |n: f64| LEFT + n.min(decades) / decades * plot_w;
    let y_of = |v: f64| TOP + plot_h - v / y_max * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Grid and axes.
    for d in 0..=decades as u32 {
        let x = x_of(f64::from(d));
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            percentile_label(d)
        );
    }
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            trim_number(v)
        );
        v += y_step;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">Latency (milliseconds)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // One polyline per series; the max (q = 1) sits at the right edge.
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .rows
            .iter()
            .map(|r| {
                let x = x_of(nines(r.quantile).unwrap_or(decades));
                format!("{x:.1},{:.1}", y_of(r.value))
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let lx = LEFT + 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// 0 → "0%", 1 → "90%", 2 → "99%", 3 → "99.9%", …
fn percentile_label(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        1 => "90%".into(),
        d => format!("99.{}%", "9".repeat(d as usize - 2)),
    }
    .replace("99.%", "99%")
}

/// An axis top at or above `max` with a round step (1, 2 or 5 × 10^k), about 5 steps.
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.2);
    }
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64, quantile: f64) -> Row {
        Row {
            value,
            quantile,
            total_count: 1,
        }
    }

    #[test]
    fn labels_and_axes() {
        let labels: Vec<String> = (0..5).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(nice_axis(7.3), (8.0, 2.0));
        assert_eq!(nice_axis(0.42), (0.5, 0.1));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(trim_number(0.5), "0.5");
    }

    #[test]
    fn one_line_per_series_with_legend() {
        let series = [
            Series {
                name: "nginx<64>".into(),
                rows: vec![row(0.1, 0.0), row(0.2, 0.9), row(0.9, 0.999), row(3.0, 1.0)],
            },
            Series {
                name: "portico".into(),
                rows: vec![row(0.1, 0.0), row(0.4, 0.99), row(1.0, 1.0)],
            },
        ];
        let svg = render("t", &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">nginx&lt;64&gt;</text>"));
        assert!(svg.contains(">portico</text>"));
        assert!(svg.contains(">99.9%</text>"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // 0% sits on the left edge, the max on the right edge.
        assert!(svg.contains(&format!("points=\"{LEFT:.1},")));
        assert!(svg.contains(&format!("{:.1},{:.1}\"", WIDTH - RIGHT, TOP)));
    }
}
