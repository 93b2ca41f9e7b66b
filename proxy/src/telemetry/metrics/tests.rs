use super::*;

fn labels(code: u16, subset: &str) -> RequestLabels {
    let m = global();
    RequestLabels {
        direction: "outbound",
        source_service: m.intern("metrics-test-client"),
        destination_service: m.intern("metrics-test.default.svc.cluster.local"),
        destination_subset: m.intern(subset),
        response_code: code,
        mtls: false,
        response_flags: m.intern("-"),
    }
}

#[test]
fn requests_are_counted_by_labels_in_prometheus_text() {
    let m = global();
    for _ in 0..3 {
        m.record_request(labels(200, "v1"), 0.7);
    }
    m.record_request(labels(503, "v2"), 12.0);
    let text = m.encode();
    let line = |code: &str, subset: &str| {
        format!(
            "remora_requests_total{{direction=\"outbound\",source_service=\"metrics-test-client\",\
                 destination_service=\"metrics-test.default.svc.cluster.local\",\
                 destination_subset=\"{subset}\",response_code=\"{code}\",mtls=\"false\",\
                 response_flags=\"-\"}}"
        )
    };
    assert!(
        text.contains(&format!("{} 3\n", line("200", "v1"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 1\n", line("503", "v2"))),
        "{text}"
    );
    assert!(text.contains("# TYPE remora_request_duration_milliseconds histogram"));
    // 0.7 ms falls in the 1 ms bucket, not the 0.5 ms one.
    assert!(text.contains("le=\"0.5\"} 0\n"), "{text}");
    assert!(text.contains("le=\"1\"} 3\n"), "{text}");
}

#[test]
fn interned_values_are_shared() {
    let m = global();
    let a = m.intern("reviews.default.svc.cluster.local");
    let b = m.intern(&String::from("reviews.default.svc.cluster.local"));
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn tls_failures_and_cert_expiry_are_exported() {
    crate::telemetry::stats::tls_handshake_failed(Direction::Outbound);
    set_cert_expiry(1_900_000_000);
    let text = global().encode();
    let outbound = crate::telemetry::stats::handshake_failures(Direction::Outbound);
    assert!(
        text.contains(&format!(
            "remora_tls_handshake_failures_total{{direction=\"outbound\"}} {outbound}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("remora_certificate_expiry_timestamp_seconds 1900000000\n"),
        "{text}"
    );
}

#[test]
fn samples_are_the_text_without_comments() {
    let samples = global().encode_samples();
    assert!(samples.lines().all(|l| !l.starts_with('#')));
    assert!(
        samples.contains("remora_retry_attempts_total "),
        "{samples}"
    );
}
