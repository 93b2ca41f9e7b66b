//! Traces across two real proxies, collected by a real OTLP receiver: the
//! client's outbound span and the server sidecar's inbound span form one
//! trace continuing the caller's `traceparent`; and the control plane's
//! `--trace-sampling` sets the ratio of proxies that were given none.

use std::collections::BTreeSet;
use std::time::Duration;

use remora_e2e::otlp::{OtlpReceiver, SpanKind};
use remora_e2e::{Backend, Mesh, Protocol, Proxy, ProxySpec, yaml};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_spans_client_and_server_sidecars() {
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let endpoint = receiver.endpoint();
    let mesh = Mesh::start(&[
        ("dr.yaml", &yaml::reviews_destination_rule(&["v1"])),
        ("vs.yaml", &yaml::reviews_canary(100, 0)),
    ])
    .await;
    let app = Backend::start("v1").await;
    let traced = |spec: ProxySpec| {
        spec.arg("--otlp-endpoint", &endpoint)
            .arg("--trace-sampling", "100")
    };
    let _sidecar = mesh
        .proxy(&traced(ProxySpec::sidecar("reviews", "v1", app.addr)))
        .await;
    let client = mesh.proxy(&traced(ProxySpec::client("productpage"))).await;
    client
        .wait_endpoints(
            &remora_e2e::discovery::cluster_name("reviews", "default", "v1"),
            1,
            Duration::from_secs(10),
        )
        .await;

    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let reply = client
        .client(Protocol::Http1)
        .get("reviews", "/echo", &[("traceparent", &traceparent)])
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);
    // What the app received: the trace continues, with a new parent.
    let seen = reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .expect("the app gets a traceparent")
        .to_owned();

    let spans = receiver
        .wait_for_spans(2, Duration::from_secs(20))
        .await
        .expect("two spans");
    let in_trace = receiver.spans_in_trace(TRACE);
    for s in &spans {
        println!(
            "span {} {:?} service={:?} parent={:?} name={:?} route={:?} subset={:?} status={:?}",
            s.span_id(),
            s.kind(),
            s.service_name(),
            s.parent_span_id(),
            s.name(),
            s.attr_str("http.route"),
            s.attr_str("remora.destination.subset"),
            s.attr_int("http.response.status_code"),
        );
    }
    println!("the app saw traceparent {seen}");
    assert_eq!(in_trace.len(), 2, "both spans continue the caller's trace");
    let client_span = in_trace
        .iter()
        .find(|s| s.kind() == SpanKind::Client)
        .expect("a client span");
    let server_span = in_trace
        .iter()
        .find(|s| s.kind() == SpanKind::Server)
        .expect("a server span");
    assert_eq!(client_span.service_name(), Some("productpage"));
    assert_eq!(server_span.service_name(), Some("reviews"));
    assert_eq!(client_span.parent_span_id().as_deref(), Some(CALLER_SPAN));
    assert_eq!(
        server_span.parent_span_id(),
        Some(client_span.span_id()),
        "the server span is the client span's child"
    );
    assert_eq!(
        seen,
        format!("00-{TRACE}-{}-01", server_span.span_id()),
        "the app's parent is the server span"
    );
    assert_eq!(client_span.attr_int("http.response.status_code"), Some(200));
    assert_eq!(client_span.attr_str("http.request.method"), Some("GET"));
    assert_eq!(
        client_span.attr_str("remora.destination.subset"),
        Some("v1")
    );
    assert_eq!(server_span.attr_int("http.response.status_code"), Some(200));
}

/// Requests without trace headers each test sends: new traces, sampled by
/// the ratio alone.
const ROOT_REQUESTS: usize = 5;

/// The proxies' `--drain-duration` (5 s by default): draining is tested in
/// `capture::lifecycle`, here it would only be waited out.
const DRAIN: &str = "100ms";

/// A control plane with `--trace-sampling <percent>`, a `reviews` sidecar
/// and a `productpage` client proxy, both exporting to `receiver` and
/// given no `--trace-sampling` of their own. Their drain is short: a test
/// that stops them waits for the export at exit, not for the 5 s drain.
async fn mesh_sampling_at(percent: &str, receiver: &OtlpReceiver) -> (Mesh, Backend, Proxy, Proxy) {
    let mesh = Mesh::start_with_args(
        &[
            ("dr.yaml", &yaml::reviews_destination_rule(&["v1"])),
            ("vs.yaml", &yaml::reviews_canary(100, 0)),
        ],
        &["--trace-sampling", percent],
    )
    .await;
    let app = Backend::start("v1").await;
    let endpoint = receiver.endpoint();
    let sidecar = mesh
        .proxy(
            &ProxySpec::sidecar("reviews", "v1", app.addr)
                .arg("--otlp-endpoint", &endpoint)
                .arg("--drain-duration", DRAIN),
        )
        .await;
    let client = mesh
        .proxy(
            &ProxySpec::client("productpage")
                .arg("--otlp-endpoint", &endpoint)
                .arg("--drain-duration", DRAIN),
        )
        .await;
    client
        .wait_endpoints(
            &remora_e2e::discovery::cluster_name("reviews", "default", "v1"),
            1,
            Duration::from_secs(10),
        )
        .await;
    (mesh, app, sidecar, client)
}

async fn send_root_requests(client: &Proxy) {
    for i in 0..ROOT_REQUESTS {
        let reply = client
            .client(Protocol::Http1)
            .get("reviews", "/echo", &[])
            .await
            .expect("request");
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_sampling_of_100_percent_exports_every_request() {
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let (_mesh, _app, _sidecar, client) = mesh_sampling_at("100", &receiver).await;
    send_root_requests(&client).await;

    // At the proxies' own default (1%) about none of these would be kept.
    let spans = receiver
        .wait_for_spans(2 * ROOT_REQUESTS, Duration::from_secs(20))
        .await
        .expect("a client and a server span per request");
    let traces: BTreeSet<String> = spans.iter().map(|s| s.trace_id()).collect();
    assert_eq!(traces.len(), ROOT_REQUESTS, "one trace per request");
    for trace in &traces {
        let kinds: BTreeSet<SpanKind> = receiver
            .spans_in_trace(trace)
            .iter()
            .map(|s| s.kind())
            .collect();
        assert_eq!(
            kinds,
            [SpanKind::Client, SpanKind::Server].into(),
            "trace {trace}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_sampling_of_0_exports_only_sampled_parents() {
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let (_mesh, _app, mut sidecar, mut client) = mesh_sampling_at("0", &receiver).await;
    send_root_requests(&client).await;
    // B3 parents that leave the decision to the proxy, with trace ids that
    // any ratio above 0 keeps: at the proxies' own 1% these would be
    // exported.
    for i in 1..=ROOT_REQUESTS {
        let trace_id = format!("{i:032x}");
        let reply = client
            .client(Protocol::Http1)
            .get(
                "reviews",
                "/echo",
                &[("x-b3-traceid", &trace_id), ("x-b3-spanid", CALLER_SPAN)],
            )
            .await
            .expect("request");
        assert_eq!(reply.status, 200, "{trace_id}: {}", reply.body);
    }
    // A caller's sampled decision is still followed: these spans show the
    // export works, and come after the dropped ones in each proxy's queue.
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let reply = client
        .client(Protocol::Http1)
        .get("reviews", "/echo", &[("traceparent", &traceparent)])
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);
    receiver
        .wait_for_spans(2, Duration::from_secs(20))
        .await
        .expect("the sampled caller's spans");
    // A graceful stop exports whatever is still queued.
    for proxy in [&mut client, &mut sidecar] {
        let status = proxy.process.terminate(Duration::from_secs(10)).await;
        assert!(status.is_some(), "the proxy stops on SIGTERM");
    }
    let spans = receiver.spans();
    assert_eq!(
        spans.len(),
        2,
        "only the sampled caller's trace is exported: {spans:#?}"
    );
    assert!(spans.iter().all(|s| s.trace_id() == TRACE), "{spans:#?}");
}
