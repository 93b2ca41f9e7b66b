use super::*;

#[test]
fn the_text_report_reads_like_remora_canary() {
    let report = Report {
        state: "done".to_owned(),
        url: "http://reviews:9080/".to_owned(),
        canary: Tally {
            by_version: [("v1".to_owned(), 900), ("v2".to_owned(), 100)].into(),
            ..Tally::default()
        },
        jason: Tally {
            by_version: [("v2".to_owned(), 100)].into(),
            ..Tally::default()
        },
        mtls: Some(1100),
        ..Report::default()
    };
    assert_eq!(
        report.to_text(),
        "canary 90/10: 1000 requests from productpage to http://reviews:9080/ (through its sidecar, by capture)\n\
             \x20 v1    900  (90.0%)\n\
             \x20 v2    100  (10.0%)\n\
             \x20 failed 0\n\
             end-user: jason: 100 requests\n\
             \x20 v2    100\n\
             mTLS between the sidecars: 1100 of 1100 requests (remora_requests_total{mtls=\"true\"})\n"
    );
    assert_eq!(report.to_json()["canary"]["versions"]["v1"], 900);
}

#[test]
fn mtls_count_sums_outbound_mtls_samples_only() {
    let text = "remora_requests_total{direction=\"outbound\",mtls=\"true\"} 900\n\
                    remora_requests_total{direction=\"outbound\",mtls=\"false\"} 7\n\
                    remora_requests_total{direction=\"inbound\",mtls=\"true\"} 5\n";
    assert_eq!(mtls_count(text), 900);
}
