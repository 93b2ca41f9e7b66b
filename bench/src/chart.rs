//! The chart: one panel per fixed-load scenario, grouped bars of p50, p90
//! and p99 per target on a logarithmic latency axis, as a self-contained
//! SVG (no chart tool needed).

use std::fmt::Write as _;

use crate::report::ScenarioResult;

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 230.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const LABEL_H: f64 = 40.0;
const SERIES: [(&str, &str); 3] = [("p50", "#4C78A8"), ("p90", "#F58518"), ("p99", "#E45756")];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn tick_label(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.0} s", us / 1_000_000.0)
    } else if us >= 1_000.0 {
        format!("{:.0} ms", us / 1_000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// The SVG of `results` (the scenarios worth a panel, in order), titled
/// `title`.
pub fn svg(title: &str, results: &[&ScenarioResult]) -> String {
    let height = TOP + results.len() as f64 * (PANEL_H + LABEL_H) + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for (i, (name, color)) in SERIES.iter().enumerate() {
        let x = WIDTH / 2.0 - 90.0 + i as f64 * 70.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="36" width="12" height="12" fill="{color}"/><text x="{}" y="46">{name}</text>"#,
            x + 16.0
        );
    }
    for (p, r) in results.iter().enumerate() {
        let y0 = TOP + p as f64 * (PANEL_H + LABEL_H);
        panel(&mut s, r, y0);
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, r: &ScenarioResult, y0: f64) {
    let plot_top = y0 + 22.0;
    let plot_h = PANEL_H - 30.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        y0 + 14.0,
        escape(&r.title)
    );
    // Log axis from a power of ten below the smallest p50 to one above the
    // largest p99.
    let values: Vec<f64> = r
        .rows
        .iter()
        .flat_map(|row| [row.latency.p50, row.latency.p90, row.latency.p99])
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    if values.is_empty() {
        return;
    }
    let lo_exp = lo.log10().floor();
    let hi_exp = hi.log10().ceil().max(lo_exp + 1.0);
    let y_of = |v: f64| {
        let f = (v.max(10f64.powf(lo_exp)).log10() - lo_exp) / (hi_exp - lo_exp);
        plot_top + plot_h * (1.0 - f)
    };
    let mut e = lo_exp;
    while e <= hi_exp {
        let v = 10f64.powf(e);
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            tick_label(v)
        );
        e += 1.0;
    }
    let groups = r.rows.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = (group_w * 0.7 / SERIES.len() as f64).min(40.0);
    for (g, row) in r.rows.iter().enumerate() {
        let gx = LEFT + g as f64 * group_w + (group_w - bar_w * SERIES.len() as f64) / 2.0;
        let vals = [row.latency.p50, row.latency.p90, row.latency.p99];
        for (k, ((name, color), v)) in SERIES.iter().zip(vals).enumerate() {
            let x = gx + k as f64 * bar_w;
            let y = y_of(v);
            let h = (plot_top + plot_h - y).max(0.5);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{color}"><title>{} {name}: {v:.0} µs</title></rect>"#,
                bar_w - 2.0,
                escape(row.target.label())
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{v:.0}</text>"#,
                x + (bar_w - 2.0) / 2.0,
                y - 3.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + g as f64 * group_w + group_w / 2.0,
            plot_top + plot_h + 16.0,
            escape(row.target.label())
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" x2="{LEFT}" y1="{plot_top}" y2="{}" stroke="black"/><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="black"/>"#,
        plot_top + plot_h,
        LEFT + plot_w,
        plot_top + plot_h,
        plot_top + plot_h
    );
}

#[cfg(test)]
mod tests;
