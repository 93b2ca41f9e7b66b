use super::*;

/// The value of the series `name` (with its labels, as printed).
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_metric_is_exported_at_zero_before_anything_happens() {
    let text = Metrics::new().encode();
    for series in [
        "remora_connected_proxies",
        "remora_pushes_total{result=\"ack\"}",
        "remora_pushes_total{result=\"nack\"}",
        "remora_push_latency_seconds_count",
        "remora_nacks_total",
        "remora_snapshots_refused_total",
        "remora_config_errors_total",
        "remora_config_files_rejected",
        "remora_certificates_signed_total",
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn updates_show_in_the_exposition() {
    let m = Metrics::new();
    m.proxy_connected();
    m.proxy_connected();
    m.proxy_disconnected();
    m.push_acked(Duration::from_millis(3));
    m.push_nacked();
    m.snapshot_refused();
    m.config_rejected();
    m.set_files_rejected(2);
    m.certificate_signed();
    let text = m.encode();
    assert_eq!(value(&text, "remora_connected_proxies"), Some(1.0));
    assert_eq!(
        value(&text, "remora_pushes_total{result=\"ack\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "remora_pushes_total{result=\"nack\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "remora_nacks_total"), Some(1.0));
    assert_eq!(value(&text, "remora_snapshots_refused_total"), Some(1.0));
    assert_eq!(value(&text, "remora_push_latency_seconds_count"), Some(1.0));
    assert_eq!(
        value(&text, "remora_push_latency_seconds_bucket{le=\"0.004\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&text, "remora_config_errors_total"), Some(1.0));
    assert_eq!(value(&text, "remora_config_files_rejected"), Some(2.0));
    assert_eq!(value(&text, "remora_certificates_signed_total"), Some(1.0));
}

#[test]
fn config_info_keeps_one_series() {
    let m = Metrics::new();
    m.set_config_version("aaaa");
    m.set_config_version("bbbb");
    let text = m.encode();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("remora_config_info"))
        .collect();
    assert_eq!(series, ["remora_config_info{version=\"bbbb\"} 1"]);
}
