use super::*;
use crate::lab::TargetId;
use crate::latency::Percentiles;
use crate::loadgen::Protocol;
use crate::report::Row;
use crate::runner::{LoadSpec, Scenario};

#[test]
fn every_target_gets_three_bars_and_a_label() {
    let row = |t, p50| Row {
        target: t,
        rps: 1000.0,
        rps_vs_direct: None,
        latency: Percentiles {
            p50,
            p90: p50 * 2.0,
            p99: p50 * 5.0,
            p999: 0.0,
            max: 0.0,
        },
        added_p50: None,
        added_p99: None,
        proxy_cpu_us: None,
        cpu_us_per_proxy: None,
        proxy_kernel_us: None,
        rss_mib: None,
        peak_rss_mib: None,
        errors: 0,
        missed: 0,
        first_error: None,
    };
    let r = ScenarioResult {
        scenario: Scenario {
            key: "h1-1000rps".into(),
            protocol: Protocol::Http1,
            load: LoadSpec::Rate(1000),
        },
        title: "h1 <test>".into(),
        rows: vec![row(TargetId::Direct, 40.0), row(TargetId::Nginx, 80.0)],
    };
    let out = svg("t", &[&r]);
    assert_eq!(
        out.matches("<rect x=").count(),
        6 + 3,
        "6 bars + 3 legend keys"
    );
    assert!(out.contains(">nginx</text>"));
    assert!(out.contains("h1 &lt;test&gt;"));
    assert!(out.trim_end().ends_with("</svg>"));
}
