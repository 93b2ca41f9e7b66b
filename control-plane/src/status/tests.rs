use std::time::Duration;

use super::*;

fn node(id: &str, service: &str) -> pb::Node {
    pb::Node {
        id: id.into(),
        service: service.into(),
        namespace: "default".into(),
        labels: [("version".to_owned(), "v1".to_owned())].into(),
        inbound_address: "127.0.0.1:15006".into(),
        ..Default::default()
    }
}

fn only(tracker: &ProxyTracker, now: Instant) -> ProxyStatus {
    let mut list = tracker.list(now);
    assert_eq!(list.len(), 1, "{list:?}");
    list.remove(0)
}

fn metric(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn a_proxy_goes_stale_then_synced_then_nacked_then_synced() {
    let metrics = Metrics::new();
    let tracker = ProxyTracker::new(metrics.clone());
    let t0 = Instant::now();
    let proxy = tracker.track(&node("reviews-1.default", "reviews"), "");

    let fresh = only(&tracker, t0);
    assert_eq!(fresh.status, SyncStatus::Stale, "nothing sent yet");
    assert_eq!(
        (
            fresh.version_sent,
            fresh.version_acked,
            fresh.seconds_since_last_push
        ),
        (None, None, None)
    );
    assert_eq!(fresh.labels["version"], "v1");

    proxy.sent("A", t0);
    let sent = only(&tracker, t0 + Duration::from_millis(1500));
    assert_eq!(sent.status, SyncStatus::Stale, "sent, not answered");
    assert_eq!(sent.version_sent.as_deref(), Some("A"));
    assert_eq!(sent.seconds_since_last_push, Some(1));

    proxy.acked("A", t0 + Duration::from_millis(3));
    let synced = only(&tracker, t0 + Duration::from_secs(3));
    assert_eq!(synced.status, SyncStatus::Synced);
    assert_eq!(synced.version_acked.as_deref(), Some("A"));
    assert_eq!(synced.seconds_since_last_push, Some(3));

    let t1 = t0 + Duration::from_secs(10);
    proxy.sent("B", t1);
    proxy.nacked("A", "route r: invalid regex");
    let nacked = only(&tracker, t1);
    assert_eq!(nacked.status, SyncStatus::Nacked);
    assert_eq!(nacked.version_sent.as_deref(), Some("B"));
    assert_eq!(nacked.version_acked.as_deref(), Some("A"), "keeps A");
    assert_eq!(
        nacked.last_nack_error.as_deref(),
        Some("route r: invalid regex")
    );

    // A newer snapshot is pending: stale, and the NACK is still the
    // last answer.
    proxy.sent("C", t1);
    let pending = only(&tracker, t1);
    assert_eq!(pending.status, SyncStatus::Stale);
    assert!(pending.last_nack_error.is_some());

    proxy.acked("C", t1);
    let synced = only(&tracker, t1);
    assert_eq!(synced.status, SyncStatus::Synced);
    assert_eq!(synced.version_acked.as_deref(), Some("C"));
    assert_eq!(synced.last_nack_error, None, "an ACK clears the error");

    assert_eq!(metric(&metrics, "remora_pushes_total{result=\"ack\"}"), 2.0);
    assert_eq!(
        metric(&metrics, "remora_pushes_total{result=\"nack\"}"),
        1.0
    );
    assert_eq!(metric(&metrics, "remora_nacks_total"), 1.0);
    assert_eq!(metric(&metrics, "remora_push_latency_seconds_count"), 2.0);
}

#[test]
fn a_refused_snapshot_shows_until_a_snapshot_is_sent_again() {
    let metrics = Metrics::new();
    let tracker = ProxyTracker::new(metrics.clone());
    let proxy = tracker.track(&node("reviews-1.default", "reviews"), "");
    let now = Instant::now();
    proxy.sent("A", now);
    proxy.acked("A", now);

    proxy.refused("the snapshot is too large");
    let refused = only(&tracker, now);
    assert_eq!(refused.status, SyncStatus::Refused);
    assert_eq!(refused.version_acked.as_deref(), Some("A"), "keeps A");
    assert_eq!(
        refused.push_error.as_deref(),
        Some("the snapshot is too large")
    );
    assert_eq!(metric(&metrics, "remora_snapshots_refused_total"), 1.0);

    proxy.sent("B", now);
    let sent = only(&tracker, now);
    assert_eq!(sent.status, SyncStatus::Stale);
    assert_eq!(sent.push_error, None);

    proxy.acked("B", now);
    proxy.refused("too large again");
    proxy.refusal_withdrawn();
    let back = only(&tracker, now);
    assert_eq!(back.status, SyncStatus::Synced);
    assert_eq!(back.push_error, None);
}

#[test]
fn a_reconnecting_proxy_reports_the_version_it_runs() {
    let tracker = ProxyTracker::new(Metrics::new());
    let _proxy = tracker.track(&node("reviews-1.default", "reviews"), "A");
    let status = only(&tracker, Instant::now());
    assert_eq!(status.version_acked.as_deref(), Some("A"));
    assert_eq!(status.status, SyncStatus::Stale, "held in warm-up");
}

#[test]
fn proxies_are_listed_by_id_and_forgotten_when_their_stream_ends() {
    let metrics = Metrics::new();
    let tracker = ProxyTracker::new(metrics.clone());
    let b = tracker.track(&node("b", "reviews"), "");
    let a = tracker.track(&node("a", "productpage"), "");
    let ids: Vec<String> = tracker
        .list(Instant::now())
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(metric(&metrics, "remora_connected_proxies"), 2.0);

    drop(b);
    let ids: Vec<String> = tracker
        .list(Instant::now())
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["a"]);
    assert_eq!(metric(&metrics, "remora_connected_proxies"), 1.0);
    drop(a);
    assert!(tracker.list(Instant::now()).is_empty());
    assert_eq!(metric(&metrics, "remora_connected_proxies"), 0.0);
}

#[test]
fn status_serializes_as_the_endpoint_documents() {
    let tracker = ProxyTracker::new(Metrics::new());
    let proxy = tracker.track(&node("reviews-1.default", "reviews"), "");
    let now = Instant::now();
    proxy.sent("A", now);
    proxy.nacked("", "bad");
    let json = serde_json::to_value(tracker.list(now)).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "id": "reviews-1.default",
            "service": "reviews",
            "namespace": "default",
            "labels": {"version": "v1"},
            "inbound_address": "127.0.0.1:15006",
            "version_sent": "A",
            "version_acked": null,
            "status": "NACKED",
            "last_nack_error": "bad",
            "seconds_since_last_push": 0,
        }])
    );
    let back: Vec<ProxyStatus> = serde_json::from_value(json).unwrap();
    assert_eq!(back, tracker.list(now));
}
