//! Small hand-written SVG charts for the report: no script, no network.

use std::fmt::Write;

use super::{Histogram, esc};

/// A bar chart of a histogram (all pairs, linked pairs darker) with the
/// threshold marked; `log` draws counts on a log10 scale.
pub fn histogram(h: &Histogram, log: bool, title: &str) -> String {
    let (w, hgt, left, bottom, top) = (720.0, 260.0, 56.0, 40.0, 16.0);
    let n = h.counts.len().max(1);
    let scale = |c: u64| {
        if log {
            ((c as f64) + 1.0).log10()
        } else {
            c as f64
        }
    };
    let max = h
        .counts
        .iter()
        .map(|&c| scale(c))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let bw = (w - left - 10.0) / n as f64;
    let plot_h = hgt - bottom - top;
    let lo = h.edges.first().copied().unwrap_or(0.0);
    let hi = h.edges.last().copied().unwrap_or(1.0);
    let x_of = |v: f64| left + (v - lo) / (hi - lo).max(1e-12) * (w - left - 10.0);
    let total: u64 = h.counts.iter().sum();
    let linked: u64 = h.linked.iter().sum();
    let desc = format!(
        "{title}: {total} candidate pairs by {}, {linked} of them linked; threshold at {:.2}{}.",
        h.what,
        h.threshold,
        if log { " (log scale)" } else { "" }
    );
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {hgt}" role="img" aria-labelledby="t-{id} d-{id}" class="chart"><title id="t-{id}">{t}</title><desc id="d-{id}">{d}</desc>"#,
        id = if log { "log" } else { "lin" },
        t = esc(title),
        d = esc(&desc)
    );
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" stroke="#444"/>"##,
        y = hgt - bottom,
        x2 = w - 10.0
    );
    for (i, (&c, &l)) in h.counts.iter().zip(&h.linked).enumerate() {
        if c == 0 {
            continue;
        }
        let x = left + i as f64 * bw;
        let hc = scale(c) / max * plot_h;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{hc:.1}" fill="#9ab8d8"><title>{c} pairs ({l} linked) in [{a:.2}, {b:.2})</title></rect>"##,
            y = hgt - bottom - hc,
            bw = (bw - 0.5).max(0.5),
            a = h.edges[i],
            b = h.edges[i + 1]
        );
        if l > 0 {
            let hl = if log {
                scale(c) * (l as f64 / c as f64)
            } else {
                l as f64
            } / max
                * plot_h;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{hl:.1}" fill="#1f4e79"/>"##,
                y = hgt - bottom - hl,
                bw = (bw - 0.5).max(0.5)
            );
        }
    }
    let tx = x_of(h.threshold.clamp(lo, hi));
    let _ = write!(
        s,
        r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{y}" stroke="#c00" stroke-width="2" stroke-dasharray="5,3"/><text x="{tx2:.1}" y="{ty}" fill="#c00" font-size="12">threshold</text>"##,
        y = hgt - bottom,
        tx2 = tx + 4.0,
        ty = top + 12.0
    );
    for k in 0..=8 {
        let v = lo + (hi - lo) * k as f64 / 8.0;
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{y}" font-size="11" text-anchor="middle" fill="#222">{v:.1}</text>"##,
            x = x_of(v),
            y = hgt - bottom + 16.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="{x}" y="{y}" font-size="12" text-anchor="middle" fill="#222">{what}</text><text x="14" y="{my}" font-size="12" transform="rotate(-90 14 {my})" text-anchor="middle" fill="#222">pairs{l}</text></svg>"##,
        x = left + (w - left) / 2.0,
        y = hgt - 6.0,
        what = esc(&h.what),
        my = top + plot_h / 2.0,
        l = if log { " (log)" } else { "" }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_is_accessible_svg_with_threshold() {
        let h = Histogram {
            what: "w".into(),
            edges: vec![0.0, 1.0, 2.0],
            counts: vec![3, 5],
            linked: vec![0, 4],
            threshold: 1.5,
        };
        for log in [false, true] {
            let s = histogram(&h, log, "Scores");
            assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
            assert!(s.contains("<title") && s.contains("<desc") && s.contains("role=\"img\""));
            assert!(s.contains("threshold"));
            assert_eq!(s.matches("<rect").count(), 3);
        }
    }
}
