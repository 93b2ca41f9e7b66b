//! From measurements to figures: medians over rounds, per-round ratios to
//! direct, the targets checked, and the Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::lab::TargetId;
use crate::latency::Percentiles;
use crate::runner::{Measurement, Scenario};

/// The median of `v` (the mean of the middle two for an even count);
/// `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One target's figures under one scenario, over all rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The target.
    pub target: TargetId,
    /// Median successful requests per second.
    pub rps: f64,
    /// Median over rounds of rps ÷ direct's rps in the same round.
    pub rps_vs_direct: Option<f64>,
    /// Median of each percentile over rounds, µs.
    pub latency: Percentiles,
    /// Median over rounds of (p50 − direct's p50), µs.
    pub added_p50: Option<f64>,
    /// Median over rounds of (p99 − direct's p99), µs.
    pub added_p99: Option<f64>,
    /// Median CPU µs per request, all the target's proxies together.
    pub proxy_cpu_us: Option<f64>,
    /// [`Row::proxy_cpu_us`] divided by the proxies a request crosses.
    pub cpu_us_per_proxy: Option<f64>,
    /// Median over rounds of the proxies' CPU µs per request spent in the
    /// kernel (the round's CPU time × its kernel share).
    #[serde(default)]
    pub proxy_kernel_us: Option<f64>,
    /// Median RSS after the run, MiB: the largest single proxy process
    /// (nginx: master and worker together).
    pub rss_mib: Option<f64>,
    /// Largest peak RSS (VmHWM) seen, MiB, same grouping.
    pub peak_rss_mib: Option<f64>,
    /// Failed requests over all rounds.
    pub errors: u64,
    /// Open-loop requests never sent, over all rounds.
    pub missed: u64,
    /// The first error seen.
    pub first_error: Option<String>,
}

/// A scenario's rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Its heading.
    pub title: String,
    /// One row per target, in run order.
    pub rows: Vec<Row>,
}

/// Memory of a target in MiB from per-process KiB: nginx's master and
/// worker are one server (summed); a sidecar pair is two (the larger).
fn mib(target: TargetId, kib: &[u64]) -> Option<f64> {
    if kib.is_empty() {
        return None;
    }
    let v = match target {
        TargetId::Nginx => kib.iter().sum::<u64>(),
        _ => kib.iter().copied().max().unwrap_or(0),
    };
    Some(v as f64 / 1024.0)
}

/// A measurement's proxy CPU µs per request spent in the kernel.
fn kernel_us(m: &Measurement) -> Option<f64> {
    Some(m.proxy_cpu_us? * m.proxy_kernel_share?)
}

/// A measurement's proxy CPU µs per request spent in user space, if any.
fn user_us(m: &Measurement) -> Option<f64> {
    Some(m.proxy_cpu_us? * (1.0 - m.proxy_kernel_share?)).filter(|u| *u > 0.0)
}

/// Aggregates one scenario's measurements.
pub fn aggregate(
    scenario: &Scenario,
    title: String,
    order: &[TargetId],
    all: &[Measurement],
) -> ScenarioResult {
    let of = |t: TargetId| -> Vec<&Measurement> {
        all.iter()
            .filter(|m| m.scenario == scenario.key && m.target == t)
            .collect()
    };
    let direct: BTreeMap<usize, &Measurement> = of(TargetId::Direct)
        .into_iter()
        .map(|m| (m.round, m))
        .collect();
    let mut rows = Vec::new();
    for &t in order {
        let ms = of(t);
        if ms.is_empty() {
            continue;
        }
        let med = |f: &dyn Fn(&Measurement) -> f64| median(ms.iter().map(|m| f(m)).collect());
        let vs_direct = |f: &dyn Fn(&Measurement, &Measurement) -> f64| {
            median(
                ms.iter()
                    .filter_map(|m| direct.get(&m.round).map(|d| f(m, d)))
                    .collect(),
            )
        };
        let p = |f: fn(&Percentiles) -> f64| med(&|m| f(&m.latency)).unwrap_or(0.0);
        let proxy_cpu_us = median(ms.iter().filter_map(|m| m.proxy_cpu_us).collect());
        let proxies = t.proxies().max(1) as f64;
        rows.push(Row {
            target: t,
            rps: med(&|m| m.rps).unwrap_or(0.0),
            rps_vs_direct: vs_direct(&|m, d| if d.rps > 0.0 { m.rps / d.rps } else { f64::NAN }),
            latency: Percentiles {
                p50: p(|l| l.p50),
                p90: p(|l| l.p90),
                p99: p(|l| l.p99),
                p999: p(|l| l.p999),
                max: p(|l| l.max),
            },
            added_p50: vs_direct(&|m, d| m.latency.p50 - d.latency.p50),
            added_p99: vs_direct(&|m, d| m.latency.p99 - d.latency.p99),
            proxy_cpu_us,
            cpu_us_per_proxy: proxy_cpu_us.map(|c| c / proxies),
            proxy_kernel_us: median(ms.iter().filter_map(|m| kernel_us(m)).collect()),
            rss_mib: median(ms.iter().filter_map(|m| mib(t, &m.rss_kib)).collect()),
            peak_rss_mib: ms
                .iter()
                .filter_map(|m| mib(t, &m.peak_rss_kib))
                .reduce(f64::max),
            errors: ms.iter().map(|m| m.errors).sum(),
            missed: ms.iter().map(|m| m.missed).sum(),
            first_error: ms.iter().find_map(|m| m.first_error.clone()),
        });
    }
    ScenarioResult {
        scenario: scenario.clone(),
        title,
        rows,
    }
}

/// One of the targets, checked against this run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    /// What is measured.
    pub what: String,
    /// The figure of this run, formatted.
    pub measured: String,
    /// The goal, formatted.
    pub goal: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
}

fn row<'a>(results: &'a [ScenarioResult], key: &str, t: TargetId) -> Option<&'a Row> {
    results
        .iter()
        .find(|r| r.scenario.key == key)?
        .rows
        .iter()
        .find(|r| r.target == t)
}

/// Median over rounds of a per-round ratio between two targets.
fn ratio_of(
    all: &[Measurement],
    key: &str,
    a: TargetId,
    b: TargetId,
    f: fn(&Measurement) -> Option<f64>,
) -> Option<f64> {
    let pick = |t: TargetId, round: usize| {
        all.iter()
            .find(|m| m.scenario == key && m.target == t && m.round == round)
    };
    let rounds: Vec<usize> = all
        .iter()
        .filter(|m| m.scenario == key && m.target == a)
        .map(|m| m.round)
        .collect();
    median(
        rounds
            .into_iter()
            .filter_map(|r| Some(f(pick(a, r)?)? / f(pick(b, r)?)?))
            .collect(),
    )
}

/// The targets, each with this run's figure.
pub fn goals(results: &[ScenarioResult], all: &[Measurement]) -> Vec<Goal> {
    let mut out = Vec::new();
    let mut push =
        |what: &str, measured: Option<f64>, unit: &str, goal: &str, ok: fn(f64) -> bool| {
            out.push(Goal {
                what: what.to_owned(),
                measured: measured
                    .map_or_else(|| "not measured".to_owned(), |v| format!("{v:.2}{unit}")),
                goal: goal.to_owned(),
                met: measured.map(ok),
            });
        };
    let cpu = |m: &Measurement| m.proxy_cpu_us.filter(|c| *c > 0.0);
    push(
        "remora CPU per request ÷ nginx's, h1 keep-alive saturation",
        ratio_of(all, "h1-sat", TargetId::Remora, TargetId::Nginx, cpu),
        "×",
        "≤ 0.8×",
        |v| v <= 0.8,
    );
    push(
        "remora CPU per request ÷ nginx's, h1 keep-alive 1,000 rps",
        ratio_of(all, "h1-1000rps", TargetId::Remora, TargetId::Nginx, cpu),
        "×",
        "≤ 0.8×",
        |v| v <= 0.8,
    );
    push(
        "remora added p50 at concurrency 1 (h1)",
        row(results, "h1-c1", TargetId::Remora).and_then(|r| r.added_p50),
        " µs",
        "≤ 25 µs",
        |v| v <= 25.0,
    );
    let pair = if row(results, "h1-1000rps", TargetId::RemoraPair).is_some() {
        TargetId::RemoraPair
    } else {
        TargetId::RemoraPairPlaintext
    };
    let label = if pair == TargetId::RemoraPair {
        "mTLS pair"
    } else {
        "pair (plaintext: no mTLS yet)"
    };
    push(
        &format!("{label} added p99 at 1,000 rps (h1)"),
        row(results, "h1-1000rps", pair).and_then(|r| r.added_p99),
        " µs",
        "≤ 100 µs",
        |v| v <= 100.0,
    );
    push(
        &format!("{label} CPU per request per proxy at 1,000 rps"),
        row(results, "h1-1000rps", pair).and_then(|r| r.cpu_us_per_proxy),
        " µs",
        "≤ 30 µs",
        |v| v <= 30.0,
    );
    push(
        &format!("{label} RSS per proxy at 1,000 rps"),
        row(results, "h1-1000rps", pair).and_then(|r| r.rss_mib),
        " MiB",
        "≤ 12 MB",
        |v| v <= 12.0 * 1e6 / (1024.0 * 1024.0),
    );
    push(
        "remora saturation throughput ÷ haproxy's (h1)",
        ratio_of(all, "h1-sat", TargetId::Remora, TargetId::Haproxy, |m| {
            Some(m.rps).filter(|r| *r > 0.0)
        }),
        "×",
        "≥ 1.2×",
        |v| v >= 1.2,
    );
    out
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:+.0}"))
}

/// The Markdown of the goals and every scenario's table.
pub fn markdown(
    goals: &[Goal],
    results: &[ScenarioResult],
    all: &[Measurement],
    unavailable: &[(TargetId, String)],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### The issue's targets\n");
    let _ = writeln!(md, "| target | this run | goal | met |");
    let _ = writeln!(md, "|---|---:|---:|:---:|");
    for g in goals {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(md, "| {} | {} | {} | {met} |", g.what, g.measured, g.goal);
    }
    if !unavailable.is_empty() {
        let _ = writeln!(md, "\nNot measured:\n");
        for (t, why) in unavailable {
            let _ = writeln!(
                md,
                "- **{}**: unavailable: {}",
                t.label(),
                why.replace('\n', " ")
            );
        }
    }
    cpu_split(&mut md, results, all);
    for r in results {
        let _ = writeln!(md, "\n### {}\n", r.title);
        let _ = writeln!(
            md,
            "| target | rps | ×direct | p50 µs | p90 µs | p99 µs | max µs | +p50 µs | +p99 µs | CPU µs/req | RSS MiB | errors |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &r.rows {
            let direct = row.target == TargetId::Direct;
            let errors = if row.missed > 0 {
                format!("{} (+{} not sent)", row.errors, row.missed)
            } else {
                row.errors.to_string()
            };
            let _ = writeln!(
                md,
                "| {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {errors} |",
                row.target.label(),
                row.rps,
                if direct {
                    "1".to_owned()
                } else {
                    opt(row.rps_vs_direct, 2)
                },
                row.latency.p50,
                row.latency.p90,
                row.latency.p99,
                row.latency.max,
                if direct {
                    "".to_owned()
                } else {
                    signed(row.added_p50)
                },
                if direct {
                    "".to_owned()
                } else {
                    signed(row.added_p99)
                },
                opt(row.proxy_cpu_us, 1),
                opt(row.rss_mib, 1),
            );
        }
        let firsts: Vec<String> = r
            .rows
            .iter()
            .filter_map(|row| {
                row.first_error
                    .as_ref()
                    .map(|e| format!("{}: {}", row.target.label(), e.replace('\n', " ")))
            })
            .collect();
        if !firsts.is_empty() {
            let _ = writeln!(md, "\nFirst errors: {}", firsts.join("; "));
        }
    }
    md
}

/// The proxies' CPU per request at h1 keep-alive saturation, split into
/// user space and kernel, and remora's kernel time alone as a ratio to
/// nginx's whole CPU time: the part of the CPU goal no user-space work can
/// reach.
fn cpu_split(md: &mut String, results: &[ScenarioResult], all: &[Measurement]) {
    let Some(sat) = results.iter().find(|r| r.scenario.key == "h1-sat") else {
        return;
    };
    // (row, CPU µs per request, of which kernel)
    let rows: Vec<(&Row, f64, f64)> = sat
        .rows
        .iter()
        .filter_map(|r| Some((r, r.proxy_cpu_us?, r.proxy_kernel_us?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n### Where the proxies' CPU goes, h1 keep-alive saturation\n"
    );
    let _ = writeln!(
        md,
        "| target | CPU µs/req | user space | kernel | kernel share |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for (r, total, kernel) in rows {
        let share = if total > 0.0 {
            kernel / total * 100.0
        } else {
            0.0
        };
        let _ = writeln!(
            md,
            "| {} | {total:.1} | {:.1} | {kernel:.1} | {share:.0}% |",
            r.target.label(),
            total - kernel,
        );
    }
    // Median over rounds of `f(remora's measurement, other's)`.
    let per_round = |other: TargetId, f: &dyn Fn(&Measurement, &Measurement) -> Option<f64>| {
        let of = |t: TargetId| {
            all.iter()
                .filter(move |m| m.scenario == "h1-sat" && m.target == t)
        };
        median(
            of(TargetId::Remora)
                .filter_map(|r| f(r, of(other).find(|o| o.round == r.round)?))
                .collect(),
        )
    };
    let positive = |v: f64| Some(v).filter(|v| *v > 0.0);
    let kernel_vs_nginx = per_round(TargetId::Nginx, &|r, n| {
        Some(kernel_us(r)? / positive(n.proxy_cpu_us?)?)
    });
    let user_vs_nginx = per_round(TargetId::Nginx, &|r, n| Some(user_us(r)? / user_us(n)?));
    if let Some(k) = kernel_vs_nginx {
        let _ = writeln!(
            md,
            "\nremora's kernel time alone is {k:.2}× nginx's whole CPU time per request \
             (median of per-round ratios); its user-space time is {}× nginx's. \
             User and kernel shares come from `/proc/<pid>/stat` ticks (10 ms), the \
             totals from schedstat.",
            opt(user_vs_nginx, 2),
        );
    }
    // The upstream and the proxy share one core: 1.2 × haproxy's rate
    // leaves remora (upstream + haproxy) ÷ 1.2 − upstream per request,
    // taking the upstream's cost per request behind haproxy for both.
    let budget = per_round(TargetId::Haproxy, &|_, h| {
        Some((h.upstream_cpu_us + h.proxy_cpu_us?) / 1.2 - h.upstream_cpu_us)
    });
    let kernel_alone = per_round(TargetId::Haproxy, &|r, _| kernel_us(r));
    if let (Some(budget), Some(kernel)) = (budget, kernel_alone) {
        let _ = writeln!(
            md,
            "\nThe upstream shares the proxy's core, so 1.2 × haproxy's saturation rate \
             leaves remora {budget:.1} µs of CPU per request (the upstream's and \
             haproxy's time per request ÷ 1.2, less the upstream's); remora's kernel time \
             alone is {kernel:.1} µs."
        );
    }
}

#[cfg(test)]
mod tests;
