//! The latency chart of the figures as SVG (`--svg`).

use crate::figures::{percentile, Figure};

/// A latency chart: one row per millisecond series, a box from p10 to p90,
/// the median marked, whiskers to min and max, on a log scale.
pub fn svg(figures: &[Figure]) -> String {
    let series: Vec<&Figure> = figures
        .iter()
        .filter(|f| f.unit == "ms" && !f.samples.is_empty())
        .collect();
    let (w, row, left, top) = (960.0, 46.0, 430.0, 40.0);
    let h = top + row * series.len() as f64 + 50.0;
    let lo = series
        .iter()
        .flat_map(|f| f.samples.first())
        .fold(f64::INFINITY, |a, b| a.min(*b))
        .max(0.01);
    let hi = series
        .iter()
        .flat_map(|f| f.samples.last())
        .fold(0.0f64, |a, b| a.max(*b))
        .max(lo * 10.0);
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| left + (v.max(lo).log10() - l0) / (l1 - l0) * (w - left - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">runbox latency (ms, log scale): box p10-p90, bar p50, whiskers min-max</text>\n"
    );
    let mut e = l0;
    while e <= l1 {
        let v = 10f64.powf(e);
        let xv = x(v);
        s += &format!(
            "<line x1=\"{xv:.1}\" y1=\"{top}\" x2=\"{xv:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{xv:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            h - 40.0,
            h - 25.0,
            if v < 1.0 { format!("{v}") } else { format!("{v:.0}") }
        );
        e += 1.0;
    }
    for (i, f) in series.iter().enumerate() {
        let y = top + row * i as f64 + 10.0;
        let p = |q: f64| percentile(&f.samples, q);
        let color = if f.name.starts_with("baseline") {
            "#999"
        } else if f.name.contains("docker") {
            "#2a6fdb"
        } else {
            "#e07b00"
        };
        let label: String = f.name.chars().take(62).collect();
        s += &format!(
            "<text x=\"10\" y=\"{:.1}\">{}</text>\n\
             <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\"/>\n\
             <rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"24\" fill=\"{color}\" fill-opacity=\"0.35\" stroke=\"{color}\"/>\n\
             <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n",
            y + 16.0,
            label.replace('&', "&amp;").replace('<', "&lt;"),
            x(p(0.0)),
            y + 12.0,
            x(p(1.0)),
            y + 12.0,
            x(p(0.1)),
            (x(p(0.9)) - x(p(0.1))).max(1.0),
            x(p(0.5)),
            x(p(0.5)),
            y + 24.0
        );
    }
    s += "</svg>\n";
    s
}
