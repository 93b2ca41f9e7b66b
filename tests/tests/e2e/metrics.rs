//! Prometheus metrics after known traffic through the canary mesh: the
//! client proxy's outbound counts and each sidecar's inbound counts match
//! the requests sent, by code and subset; the health port says ready only
//! with a config; `POST /logging` changes the log level at run time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::Method;
use remora_e2e::scenario::{AppKind, Canary};
use remora_e2e::{EVENT_TIMEOUT, HttpClient, Protocol, Proxy, ProxySpec};

const REVIEWS: &str = "reviews.default.svc.cluster.local";

/// The `remora_requests_total` sample key for one label combination.
fn requests(
    direction: &str,
    source: &str,
    destination: &str,
    subset: &str,
    code: u16,
    flags: &str,
) -> String {
    format!(
        "remora_requests_total{{direction=\"{direction}\",source_service=\"{source}\",\
         destination_service=\"{destination}\",destination_subset=\"{subset}\",\
         response_code=\"{code}\",mtls=\"false\",response_flags=\"{flags}\"}}"
    )
}

/// The same labels' duration histogram count.
fn duration_count(requests_key: &str) -> String {
    requests_key.replacen(
        "remora_requests_total",
        "remora_request_duration_milliseconds_count",
        1,
    )
}

/// The request samples of `direction`, for failure messages.
fn request_samples(samples: &BTreeMap<String, f64>) -> Vec<(&String, &f64)> {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with("remora_requests_total"))
        .collect()
}

/// Sends `n` `GET /version` for `reviews` and counts the answers by
/// (body, status).
async fn send(
    client: &mut HttpClient,
    host: &str,
    n: usize,
    headers: &[(&str, &str)],
    seen: &mut BTreeMap<(String, u16), u64>,
) {
    for i in 0..n {
        let reply = client
            .get(host, "/version", headers)
            .await
            .unwrap_or_else(|e| panic!("request {i} to {host}: {e:#}"));
        let body = if reply.status.is_success() {
            reply.body.trim().to_owned()
        } else {
            String::new()
        };
        *seen.entry((body, reply.status.as_u16())).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_counts_match_the_traffic_by_code_and_subset() {
    let canary = Canary::start(90, 10, AppKind::InProcess).await;
    let mut client = canary.client.client(Protocol::Http1);
    let mut seen = BTreeMap::new();

    // 190 split 90/10, 10 for jason (always v2): 200 requests, all 200.
    send(&mut client, "reviews", 190, &[], &mut seen).await;
    send(
        &mut client,
        "reviews",
        10,
        &[("end-user", "jason")],
        &mut seen,
    )
    .await;
    // The v2 app fails: 10 × 503 from the app, passed through (no retry
    // without a `retries` block: the request reached the app).
    canary.backends[1].set_status(Some(503));
    send(
        &mut client,
        "reviews",
        10,
        &[("end-user", "jason")],
        &mut seen,
    )
    .await;
    canary.backends[1].set_status(None);
    // An unknown host: 404 NR, and the host never becomes a label.
    send(&mut client, "no-such-service", 5, &[], &mut seen).await;

    let v1_ok = seen[&("v1".to_owned(), 200)];
    let v2_ok = seen[&("v2".to_owned(), 200)];
    assert_eq!(v1_ok + v2_ok, 200, "answers: {seen:?}");
    assert_eq!(
        v2_ok,
        19 + 10,
        "SWRR gives 19 of 190 to v2, plus jason's 10"
    );
    assert_eq!(seen[&(String::new(), 503)], 10, "answers: {seen:?}");
    assert_eq!(seen[&(String::new(), 404)], 5, "answers: {seen:?}");

    // Client proxy, outbound.
    let samples = canary.client.prometheus().await.expect("scrape client");
    let want = [
        (
            requests("outbound", "productpage", REVIEWS, "v1", 200, "-"),
            v1_ok,
        ),
        (
            requests("outbound", "productpage", REVIEWS, "v2", 200, "-"),
            v2_ok,
        ),
        (
            requests("outbound", "productpage", REVIEWS, "v2", 503, "-"),
            10,
        ),
        (
            requests("outbound", "productpage", "unknown", "unknown", 404, "NR"),
            5,
        ),
    ];
    for (key, n) in &want {
        assert_eq!(
            samples.get(key).copied(),
            Some(*n as f64),
            "client: {key}\nrequest samples: {:#?}",
            request_samples(&samples)
        );
        assert_eq!(samples.get(&duration_count(key)).copied(), Some(*n as f64));
    }
    assert_eq!(
        request_samples(&samples).len(),
        want.len(),
        "no other label combination: {:#?}",
        request_samples(&samples)
    );
    assert!(
        !samples.keys().any(|k| k.contains("no-such-service")),
        "a Host the proxy does not know is never a label"
    );
    // The config version (as the `ready` event said) and its apply time.
    let dump = canary.client.config_dump().await.expect("config_dump");
    let version = dump["version"].as_str().expect("version");
    assert_eq!(
        samples.get(&format!("remora_config_version{{version=\"{version}\"}}")),
        Some(&1.0)
    );
    assert!(samples["remora_config_last_applied_timestamp_seconds"] > 1.6e9);
    // The admin API's /stats renders the same registry.
    let stats = canary.client.stats().await.expect("admin /stats");
    assert_eq!(stats.get(&want[0].0), Some(&(v1_ok as f64)));

    // Each sidecar, inbound: a plaintext peer has no identity ("unknown").
    for (sidecar, version, expected) in [
        (&canary.sidecars[0], "v1", vec![(200, v1_ok)]),
        (&canary.sidecars[1], "v2", vec![(200, v2_ok), (503, 10)]),
    ] {
        let samples = sidecar.prometheus().await.expect("scrape sidecar");
        for (code, n) in &expected {
            let key = requests("inbound", "unknown", REVIEWS, version, *code, "-");
            assert_eq!(
                samples.get(&key).copied(),
                Some(*n as f64),
                "{version} sidecar: {key}\nrequest samples: {:#?}",
                request_samples(&samples)
            );
        }
        assert_eq!(request_samples(&samples).len(), expected.len());
        assert_eq!(
            samples.get("remora_upstream_connections_active{direction=\"inbound\"}"),
            Some(&1.0),
            "{version}: one pooled connection to the app"
        );
    }

    // Ready on the health port, with a config.
    let (status, body) = canary.client.health().await.expect("health");
    assert_eq!((status, body.trim()), (200, "ready"));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_503_until_the_proxy_has_a_config() {
    // A control plane that is not there: the proxy never gets a config.
    let proxy = Proxy::start(&ProxySpec::client("lonely"), "http://127.0.0.1:9").await;
    let (status, body) = proxy.health().await.expect("health answers");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no config"), "{body}");
    let admin_ready = HttpClient::new(proxy.admin, Protocol::Http1)
        .get("admin", "/ready", &[])
        .await
        .expect("admin answers");
    assert_eq!(admin_ready.status, 503, "admin /ready agrees");
}

#[tokio::test(flavor = "multi_thread")]
async fn post_logging_changes_the_level_at_run_time() {
    let canary = Canary::start(50, 50, AppKind::InProcess).await;
    let mut admin = HttpClient::new(canary.client.admin, Protocol::Http1);
    let get = admin.get("admin", "/logging", &[]).await.expect("GET");
    assert_eq!((get.status.as_u16(), get.body.trim()), (200, "level: info"));

    // At info, a failed outbound request logs nothing.
    let mut client = canary.client.client(Protocol::Http1);
    let miss = client.get("no-such-service", "/", &[]).await.expect("send");
    assert_eq!(miss.status, 404);

    let post = admin
        .request(
            Method::POST,
            "admin",
            "/logging?level=remora_proxy=debug,hyper=info",
            &[],
        )
        .await
        .expect("POST");
    assert_eq!(post.status, 200, "{}", post.body);
    let get = admin.get("admin", "/logging", &[]).await.expect("GET");
    assert!(
        get.body.contains("remora_proxy=debug") && get.body.contains("hyper=info"),
        "{}",
        get.body
    );
    // Now the same miss is logged at debug.
    let miss = client.get("no-such-service", "/", &[]).await.expect("send");
    assert_eq!(miss.status, 404);
    // Stderr has no event to wait on: poll it, bounded.
    let logged = |tail: &str| -> Vec<String> {
        tail.lines()
            .filter(|l| l.contains("outbound request failed"))
            .map(str::to_owned)
            .collect()
    };
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let lines = loop {
        let lines = logged(&canary.client.process.stderr_tail());
        if !lines.is_empty() || Instant::now() >= deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        lines.len(),
        1,
        "only the request after the change is logged: {lines:?}"
    );
    assert!(lines[0].contains("DEBUG"), "{lines:?}");

    let bad = admin
        .request(
            Method::POST,
            "admin",
            "/logging?level=remora_proxy=loud",
            &[],
        )
        .await
        .expect("POST");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("invalid log directive"), "{}", bad.body);
    let get = admin.get("admin", "/logging", &[]).await.expect("GET");
    assert!(
        get.body.contains("remora_proxy=debug"),
        "unchanged: {}",
        get.body
    );
}
