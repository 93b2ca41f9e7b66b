use std::collections::BTreeMap;

use super::*;

fn proxy(id: &str, service: &str, status: SyncStatus) -> ProxyStatus {
    ProxyStatus {
        id: id.into(),
        service: service.into(),
        namespace: "default".into(),
        labels: BTreeMap::new(),
        inbound_address: String::new(),
        version_sent: Some("bbbb".into()),
        version_acked: Some("aaaa".into()),
        status,
        last_nack_error: None,
        push_error: None,
        seconds_since_last_push: Some(3),
    }
}

#[test]
fn renders_a_header_and_one_aligned_line_per_proxy() {
    let mut nacked = proxy("reviews-42.default", "reviews", SyncStatus::Nacked);
    nacked.last_nack_error = Some("vh/r0: invalid regex\nsecond line".into());
    let mut refused = proxy("ratings-3.default", "ratings", SyncStatus::Refused);
    refused.push_error = Some("the snapshot is too large".into());
    let mut fresh = proxy("details-7.default", "details", SyncStatus::Stale);
    fresh.version_acked = None;
    fresh.seconds_since_last_push = None;
    let text = render(&[
        proxy("productpage-1.default", "productpage", SyncStatus::Synced),
        nacked,
        refused,
        fresh,
    ]);
    assert_eq!(
        text,
        "\
NAME                   SERVICE              VERSION  STATUS   LAST PUSH
productpage-1.default  productpage.default  aaaa     SYNCED   3s ago
reviews-42.default     reviews.default      aaaa     NACKED   3s ago
    error: vh/r0: invalid regex
           second line
ratings-3.default      ratings.default      aaaa     REFUSED  3s ago
    error: the snapshot is too large
details-7.default      details.default      -        STALE    never
"
    );
}

#[test]
fn no_proxies_prints_the_header_only() {
    assert_eq!(render(&[]), "NAME  SERVICE  VERSION  STATUS  LAST PUSH\n");
}

#[test]
fn status_url_accepts_a_base_url_with_or_without_scheme_and_slash() {
    for admin in [
        "http://127.0.0.1:15014",
        "http://127.0.0.1:15014/",
        "127.0.0.1:15014",
    ] {
        assert_eq!(
            status_url(admin).unwrap().to_string(),
            "http://127.0.0.1:15014/debug/proxies",
            "{admin}"
        );
    }
    let err = status_url("https://cp:15014").unwrap_err();
    assert!(matches!(err, FetchError::BadUrl { .. }), "{err}");
    assert!(err.to_string().contains("https://cp:15014"), "{err}");
}

#[tokio::test]
async fn an_unreachable_control_plane_is_named_with_the_cause() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = fetch(&format!("http://{addr}")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{text}");
    assert!(
        text.contains(&format!("http://{addr}/debug/proxies")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}
