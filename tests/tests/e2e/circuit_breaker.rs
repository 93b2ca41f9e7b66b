//! Connection-pool limits (circuit breaking) with real processes: overflow
//! is an immediate 503 with `x-remora-overloaded: true`, never retried and
//! never an ejection; limits hold per endpoint; and Istio's own
//! circuit-breaking task, run as written.

use std::time::Duration;

use remora_e2e::direct::{Direct, Shot, fire, tally};
use remora_e2e::discovery::cluster_name;
use remora_e2e::{DemoApp, EVENT_TIMEOUT, Mesh, Protocol, ProxySpec, yaml};

const HOST: &str = "httpbin";

/// How long the slow backends take to answer.
const SLOW: Duration = Duration::from_millis(1500);

const POOL: &str =
    "connectionPool:\n  tcp:\n    maxConnections: 1\n  http:\n    http1MaxPendingRequests: 1";

fn overflows(shots: &[Shot]) -> Vec<&Shot> {
    shots
        .iter()
        .filter(|s| s.status == Some(503) && s.overloaded)
        .collect()
}

fn successes(shots: &[Shot]) -> Vec<&Shot> {
    shots.iter().filter(|s| s.status == Some(200)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn overflow_is_an_immediate_503_never_retried() {
    // Retries on 5xx are on: an overflow must still not be retried.
    let vs = yaml::virtual_service(
        HOST,
        "retries:\n  attempts: 3\n  retryOn: 5xx,reset,connect-failure",
    );
    let dr = yaml::destination_rule(HOST, POOL);
    let direct = Direct::start(
        HOST,
        1,
        &[("vs.yaml", vs), ("dr.yaml", dr)],
        ProxySpec::client("client"),
    )
    .await;
    let backend = &direct.backends[0];
    backend.set_delay(SLOW);
    let overflow_before = direct.client.stat("remora_upstream_overflow_total").await;
    let retries_before = direct.client.stat("remora_retry_attempts_total").await;

    let shots = fire(direct.client.outbound, HOST, "/", 20, 1).await;

    let ok = successes(&shots);
    let over = overflows(&shots);
    let slowest_overflow = over.iter().map(|s| s.elapsed).max();
    let overflow_stat =
        direct.client.stat("remora_upstream_overflow_total").await - overflow_before;
    let retries = direct.client.stat("remora_retry_attempts_total").await - retries_before;
    println!(
        "maxConnections 1, http1MaxPendingRequests 1, 20 concurrent requests, backend delay {SLOW:?}: \
         {:?}; slowest overflow {slowest_overflow:?}; successes took {:?}; backend saw {} requests on \
         {} connections, at most {} open at once; upstream.overflow +{overflow_stat}, retry.attempts +{retries}",
        tally(&shots),
        ok.iter().map(|s| s.elapsed).collect::<Vec<_>>(),
        backend.hits(),
        backend.connections(),
        backend.max_open_connections()
    );
    assert_eq!(
        ok.len() + over.len(),
        shots.len(),
        "every request either succeeded or overflowed: {:?}",
        tally(&shots)
    );
    assert!(
        (1..=2).contains(&ok.len()),
        "one connection and one pending request: 1 or 2 successes, got {}",
        ok.len()
    );
    assert!(
        over.iter().all(|s| s.elapsed < SLOW / 2),
        "an overflow waited: {slowest_overflow:?} (backend delay {SLOW:?})"
    );
    assert!(
        backend.max_open_connections() <= 1,
        "the backend saw {} connections at once",
        backend.max_open_connections()
    );
    assert_eq!(
        backend.hits(),
        ok.len(),
        "overflowed requests never reached the backend"
    );
    assert_eq!(retries, 0, "an overflow is never retried");
    assert_eq!(
        overflow_stat,
        over.len() as u64,
        "/stats upstream.overflow counts each overflow"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_pool_limits_hold_per_endpoint() {
    let dr = yaml::destination_rule(
        HOST,
        &format!("loadBalancer:\n  simple: ROUND_ROBIN\n{POOL}"),
    );
    let direct = Direct::start(HOST, 2, &[("dr.yaml", dr)], ProxySpec::client("client")).await;
    for b in &direct.backends {
        b.set_delay(SLOW);
    }
    let shots = fire(direct.client.outbound, HOST, "/", 20, 1).await;
    let ok = successes(&shots);
    let over = overflows(&shots);
    println!(
        "2 endpoints (round robin), maxConnections 1, http1MaxPendingRequests 1, 20 concurrent \
         requests: {:?}; per backend: requests {:?}, at most open at once {:?}",
        tally(&shots),
        direct.hits(),
        direct
            .backends
            .iter()
            .map(|b| b.max_open_connections())
            .collect::<Vec<_>>()
    );
    assert_eq!(ok.len() + over.len(), shots.len(), "{:?}", tally(&shots));
    assert!(
        (3..=4).contains(&ok.len()),
        "per-endpoint limits admit one active and one pending request per endpoint (4 in all; a \
         per-cluster limit would admit 2): {} succeeded",
        ok.len()
    );
    for b in &direct.backends {
        assert!(
            b.max_open_connections() <= 1,
            "{} saw {} connections at once",
            b.name(),
            b.max_open_connections()
        );
        assert!(b.hits() >= 1, "{} served nothing", b.name());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_requests_per_connection_and_idle_timeout_shape_the_connections() {
    let dr = yaml::destination_rule(
        HOST,
        "connectionPool:\n  http:\n    maxRequestsPerConnection: 2\n    idleTimeout: 300ms",
    );
    let direct = Direct::start(HOST, 1, &[("dr.yaml", dr)], ProxySpec::client("client")).await;
    let backend = &direct.backends[0];
    let mut http = direct.http();
    // 21: the last connection serves one request and stays pooled.
    for i in 0..21 {
        let reply = http.get(HOST, "/", &[]).await.expect("request");
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
    }
    let per_connection = (backend.hits(), backend.connections());
    // Idle: the pooled connection is closed once idleTimeout passes
    // (Istio: "When the idle timeout is reached, the connection will be
    // closed"), not merely skipped when next wanted.
    let idle_from = std::time::Instant::now();
    let mut closed_after = None;
    while idle_from.elapsed() < Duration::from_secs(3) {
        if backend.open_connections() == 0 {
            closed_after = Some(idle_from.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let open_when_idle = backend.open_connections();
    // And a request after the idle time does not reuse it.
    let reply = http.get(HOST, "/", &[]).await.expect("request after idle");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let new_connections = backend.connections() - per_connection.1;
    println!(
        "maxRequestsPerConnection 2: 21 sequential requests, backend saw {} requests on {} \
         connections; http idleTimeout 300ms: the pooled connection closed {closed_after:?} after \
         the last response ({open_when_idle} open after {:?}); a request after the idle time \
         opened {new_connections} new connection(s)",
        per_connection.0,
        per_connection.1,
        idle_from.elapsed()
    );
    assert_eq!(per_connection, (21, 11), "two requests per connection");
    assert_eq!(
        new_connections, 1,
        "a connection idle past idleTimeout is not reused"
    );
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!(
            "the pooled connection was still open 3 s after its last response (idleTimeout 300ms)"
        )
    });
    assert!(
        closed_after >= Duration::from_millis(250),
        "the idle connection closed after only {closed_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_max_requests_bounds_requests_in_flight() {
    // Envoy's max_requests: requests in flight to the host, any HTTP version.
    let dr = yaml::destination_rule(HOST, "connectionPool:\n  http:\n    http2MaxRequests: 2");
    let direct = Direct::start(HOST, 1, &[("dr.yaml", dr)], ProxySpec::client("client")).await;
    let backend = &direct.backends[0];
    backend.set_delay(SLOW);
    let shots = fire(direct.client.outbound, HOST, "/", 10, 1).await;
    let ok = successes(&shots);
    let over = overflows(&shots);
    println!(
        "http2MaxRequests 2, 10 concurrent requests, backend delay {SLOW:?}: {:?}; slowest \
         overflow {:?}; backend saw {} requests",
        tally(&shots),
        over.iter().map(|s| s.elapsed).max(),
        backend.hits()
    );
    assert_eq!(ok.len() + over.len(), 10, "{:?}", tally(&shots));
    assert_eq!(ok.len(), 2, "two requests in flight at most");
    assert!(
        over.iter().all(|s| s.elapsed < SLOW / 2),
        "overflow is immediate"
    );
    assert_eq!(backend.hits(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_retries_bounds_retries_in_flight() {
    const N: usize = 10;
    let vs = yaml::virtual_service(HOST, "retries:\n  attempts: 1\n  retryOn: 5xx");
    let dr = yaml::destination_rule(HOST, "connectionPool:\n  http:\n    maxRetries: 1");
    // The retry budget out of the way: only maxRetries limits.
    let spec = ProxySpec::client("client").arg("--retry-budget-min-per-sec", "100000");
    let direct = Direct::start(HOST, 1, &[("vs.yaml", vs), ("dr.yaml", dr)], spec).await;
    let backend = &direct.backends[0];
    backend.set_status(Some(503));
    backend.set_delay(Duration::from_millis(500));
    let attempts_before = direct.client.stat("remora_retry_attempts_total").await;
    // Ten first tries answer 503 at about the same time; each wants one
    // retry, and a retry lasts 500 ms: with maxRetries 1, one at a time.
    let shots = fire(direct.client.outbound, HOST, "/", N, 1).await;
    let attempts = direct.client.stat("remora_retry_attempts_total").await - attempts_before;
    println!(
        "maxRetries 1, attempts 1, {N} concurrent requests to a 503 backend (500 ms): {:?}; \
         backend saw {} requests; retry.attempts +{attempts} (without maxRetries: {})",
        tally(&shots),
        backend.hits(),
        2 * N
    );
    assert!(
        shots
            .iter()
            .all(|s| s.status == Some(503) && s.backend.as_deref() == Some("b0")),
        "every client gets the backend's 503: {:?}",
        tally(&shots)
    );
    assert!(attempts >= 1, "one retry at a time is allowed");
    assert!(
        backend.hits() <= N + 3,
        "maxRetries 1 let {} retries through for {N} simultaneous failures",
        backend.hits() - N
    );
}

/// Istio's DestinationRule of the task, verbatim
/// (<https://istio.io/latest/docs/tasks/traffic-management/circuit-breaking/>).
const ISTIO_TASK_DR: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"#;

#[tokio::test(flavor = "multi_thread")]
async fn istio_circuit_breaking_task() {
    let mesh = Mesh::start(&[("httpbin-dr.yaml", ISTIO_TASK_DR)]).await;
    let httpbin = DemoApp::start("httpbin", "v1").await;
    let _sidecar = mesh
        .proxy(&ProxySpec::sidecar("httpbin", "v1", httpbin.addr))
        .await;
    let fortio = mesh.proxy(&ProxySpec::client("fortio")).await;
    let cluster = cluster_name("httpbin", "default", "");
    fortio.wait_endpoints(&cluster, 1, EVENT_TIMEOUT).await;
    let cp_events = mesh.control_plane.process.events_since(0);
    assert!(
        !cp_events.iter().any(|e| e.name() == "rejected"),
        "the control plane rejected Istio's DestinationRule: {:?}",
        cp_events.iter().map(|e| &e.value).collect::<Vec<_>>()
    );
    let mark = fortio.process.mark();

    // `fortio curl http://httpbin:8000/get`
    let mut http = fortio.client(Protocol::Http1);
    let reply = http
        .get("httpbin:8000", "/", &[])
        .await
        .expect("first call");
    assert_eq!(reply.status, 200, "{}", reply.body);

    // `fortio load -c 2 -qps 0 -n 20`, then `-c 3 -qps 0 -n 30`.
    let two = fire(fortio.outbound, "httpbin:8000", "/", 2, 10).await;
    let three = fire(fortio.outbound, "httpbin:8000", "/", 3, 10).await;
    let (over2, over3) = (overflows(&two).len(), overflows(&three).len());
    println!(
        "Istio circuit-breaking task: -c 2 -n 20: {:?}; -c 3 -n 30: {:?}",
        tally(&two),
        tally(&three)
    );

    for (name, shots, n) in [("-c 2", &two, 20), ("-c 3", &three, 30)] {
        assert_eq!(shots.len(), n, "{name}: every request has an outcome");
        assert_eq!(
            successes(shots).len() + overflows(shots).len(),
            n,
            "{name}: every reply is a 200 or an overflow 503 with {}: {:?}",
            remora_e2e::direct::OVERLOADED,
            tally(shots)
        );
        assert!(
            !successes(shots).is_empty(),
            "{name}: some requests succeed"
        );
    }
    assert!(
        over3 > 0,
        "three connections overflow a pool of 1 + 1 pending"
    );
    assert!(
        over3 >= over2,
        "more concurrency, no fewer overflows: {over2} at -c 2, {over3} at -c 3"
    );

    // With consecutive5xxErrors 1 and baseEjectionTime 3m, one 503 counted
    // as the host's would eject it for three minutes: overflows must not.
    for i in 0..10 {
        let reply = http
            .get("httpbin:8000", "/", &[])
            .await
            .unwrap_or_else(|e| panic!("request {i} after the load: {e:#}"));
        assert_eq!(
            reply.status, 200,
            "request {i} after the load (the host must not be ejected): {}",
            reply.body
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ejected: Vec<_> = fortio
        .process
        .events_since(mark)
        .into_iter()
        .filter(|e| e.name() == "ejected")
        .map(|e| e.value)
        .collect();
    assert!(
        ejected.is_empty(),
        "overflows ejected the host: {ejected:?}"
    );
    assert_eq!(fortio.stat("remora_outlier_ejections_total").await, 0);
    let overflow = fortio.stat("remora_upstream_overflow_total").await;
    assert_eq!(
        overflow,
        (over2 + over3) as u64,
        "/stats upstream.overflow counts the overflows the client saw"
    );
}
