//! The tracer against a real OTLP/gRPC receiver (`remora_e2e::otlp`): what
//! a collector such as Jaeger receives, and that export never slows the
//! request path.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use remora_e2e::otlp::{OtlpReceiver, ReceivedSpan, SpanKind, StatusCode};
use remora_proxy::telemetry::trace::{
    RequestInfo, RequestSpan, SamplingRatio, TraceConfig, Tracer, attr,
};
use tokio::net::TcpListener;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(10);

fn config(endpoint: String, ratio: f64) -> TraceConfig {
    TraceConfig {
        endpoint: Some(endpoint),
        service_namespace: Some("default".to_owned()),
        sampling: SamplingRatio::new(ratio).expect("valid ratio"),
        scheduled_delay: Duration::from_millis(50),
        ..TraceConfig::disabled("reviews")
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn text(map: &HeaderMap, name: &str) -> String {
    map.get(name)
        .unwrap_or_else(|| panic!("{name} missing in {map:?}"))
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// A GET to `reviews:9080/reviews/1`, the way the proxy calls the tracer.
fn start(tracer: &Tracer, server: bool, map: &mut HeaderMap) -> RequestSpan {
    let method = Method::GET;
    let uri = Uri::from_static("/reviews/1");
    map.entry(http::header::HOST)
        .or_insert(HeaderValue::from_static("reviews:9080"));
    let info = RequestInfo::new(&method, &uri)
        .version(Version::HTTP_11)
        .peer("127.0.0.7:40000".parse().expect("addr"));
    if server {
        tracer.start_server(map, &info)
    } else {
        tracer.start_client(map, &info)
    }
}

async fn one_span(receiver: &OtlpReceiver, tracer: &Tracer) -> ReceivedSpan {
    tracer.flush().await;
    let mut spans = receiver.wait_for_spans(1, WAIT).await.expect("span");
    assert_eq!(spans.len(), 1, "{spans:#?}");
    spans.remove(0)
}

/// The traceparent's span id.
fn traceparent_span_id(map: &HeaderMap) -> String {
    text(map, "traceparent")[36..52].to_owned()
}

#[tokio::test]
async fn server_span_continues_incoming_traceparent() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    // At 1% sampling: the caller's sampled flag is followed.
    let tracer = Tracer::new(config(receiver.endpoint(), 0.01)).expect("tracer");
    let mut map = headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("tracestate", "vendor=opaque"),
    ]);
    let mut span = start(&tracer, true, &mut map);
    assert_eq!(span.trace_id().as_deref(), Some(TRACE));
    span.finish(200, None);
    let got = one_span(&receiver, &tracer).await;
    assert_eq!(got.trace_id(), TRACE);
    assert_eq!(got.parent_span_id().as_deref(), Some(SPAN));
    assert_eq!(got.kind(), SpanKind::Server);
    // The app sees this span as its parent; tracestate passes untouched.
    assert_eq!(
        text(&map, "traceparent"),
        format!("00-{TRACE}-{}-01", got.span_id())
    );
    assert_eq!(text(&map, "tracestate"), "vendor=opaque");
    assert_eq!(got.service_name(), Some("reviews"));
    assert_eq!(got.resource_str("service.namespace"), Some("default"));
}

#[tokio::test]
async fn b3_single_header_is_honoured() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let tracer = Tracer::new(config(receiver.endpoint(), 0.01)).expect("tracer");
    let mut map = headers(&[("b3", &format!("{TRACE}-{SPAN}-1"))]);
    start(&tracer, true, &mut map).finish(200, None);
    let got = one_span(&receiver, &tracer).await;
    assert_eq!(got.trace_id(), TRACE);
    assert_eq!(got.parent_span_id().as_deref(), Some(SPAN));
    assert_eq!(text(&map, "b3"), format!("{TRACE}-{}-1", got.span_id()));
    assert_eq!(traceparent_span_id(&map), got.span_id());
}

#[tokio::test]
async fn b3_multi_headers_are_honoured() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let tracer = Tracer::new(config(receiver.endpoint(), 0.01)).expect("tracer");
    let narrow = &TRACE[16..];
    let mut map = headers(&[
        ("x-b3-traceid", narrow),
        ("x-b3-spanid", SPAN),
        ("x-b3-parentspanid", "1111111111111111"),
        ("x-b3-sampled", "1"),
    ]);
    start(&tracer, false, &mut map).finish(200, None);
    let got = one_span(&receiver, &tracer).await;
    assert_eq!(got.trace_id(), format!("{:0>32}", narrow));
    assert_eq!(got.parent_span_id().as_deref(), Some(SPAN));
    // Answered in kind: 64-bit trace id, this span, its parent.
    assert_eq!(text(&map, "x-b3-traceid"), narrow);
    assert_eq!(text(&map, "x-b3-spanid"), got.span_id());
    assert_eq!(text(&map, "x-b3-parentspanid"), SPAN);
    assert_eq!(text(&map, "x-b3-sampled"), "1");
}

#[tokio::test]
async fn client_span_id_is_the_outgoing_traceparent_parent() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let tracer = Tracer::new(config(receiver.endpoint(), 1.0)).expect("tracer");
    let mut map = HeaderMap::new();
    let mut span = start(&tracer, false, &mut map);
    span.finish(200, None);
    let got = one_span(&receiver, &tracer).await;
    assert_eq!(got.kind(), SpanKind::Client);
    assert_eq!(got.parent_span_id(), None, "a root span");
    assert_eq!(traceparent_span_id(&map), got.span_id());
    assert_eq!(span.span_id().as_deref(), Some(got.span_id().as_str()));
    assert!(text(&map, "traceparent").ends_with("-01"));
    assert_eq!(map.get("b3"), None, "no B3 came in, none goes out");
}

#[tokio::test]
async fn ratio_zero_exports_nothing_and_passes_headers() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let tracer = Tracer::new(config(receiver.endpoint(), 0.0)).expect("tracer");
    let traceparent = format!("00-{TRACE}-{SPAN}-01");
    for _ in 0..50 {
        let mut map = headers(&[("traceparent", &traceparent)]);
        let mut span = start(&tracer, true, &mut map);
        assert_eq!(text(&map, "traceparent"), traceparent);
        span.finish(200, None);
        let mut bare = HeaderMap::new();
        start(&tracer, false, &mut bare).finish(200, None);
    }
    tracer.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.span_count(), 0);
}

#[tokio::test]
async fn ratio_one_exports_every_span() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let tracer = Tracer::new(config(receiver.endpoint(), 1.0)).expect("tracer");
    for i in 0..200u16 {
        let mut map = HeaderMap::new();
        start(&tracer, i % 2 == 0, &mut map).finish(200, None);
    }
    tracer.flush().await;
    let spans = receiver.wait_for_spans(200, WAIT).await.expect("spans");
    assert_eq!(spans.len(), 200);
    assert_eq!(tracer.exported_spans(), 200);
    assert_eq!(tracer.dropped_spans(), 0);
}

#[tokio::test]
async fn unsampled_parent_is_not_exported_but_propagated() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let tracer = Tracer::new(config(receiver.endpoint(), 1.0)).expect("tracer");
    let mut map = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]);
    let mut span = start(&tracer, true, &mut map);
    assert!(!span.is_sampled());
    assert_eq!(span.trace_id().as_deref(), Some(TRACE));
    span.finish(200, None);
    let out = text(&map, "traceparent");
    assert!(out.starts_with(&format!("00-{TRACE}-")), "{out}");
    assert!(out.ends_with("-00"), "{out}");
    assert_ne!(traceparent_span_id(&map), SPAN, "a span id of this hop");
    tracer.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.span_count(), 0);
}

#[tokio::test]
async fn span_attributes_follow_http_semantic_conventions() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let tracer = Tracer::new(config(receiver.endpoint(), 1.0)).expect("tracer");
    let mut map = headers(&[("x-request-id", "req-42")]);
    let mut client = start(&tracer, false, &mut map);
    client.set_route("reviews-route");
    client.set_destination("reviews", "v2");
    client.set_upstream("127.0.0.1:9081");
    client.add_retry(1, "503");
    client.set_upstream("127.0.0.1:9082");
    client.set_peer_identity("spiffe://cluster.local/ns/default/sa/reviews");
    client.finish(503, None);
    assert_eq!(client.request_id(), "req-42");
    let got = one_span(&receiver, &tracer).await;

    assert_eq!(got.name(), "GET reviews-route");
    assert_eq!(got.status(), StatusCode::Error);
    let expected = [
        (attr::HTTP_REQUEST_METHOD, Some("GET")),
        (attr::URL_PATH, Some("/reviews/1")),
        (attr::HTTP_ROUTE, Some("reviews-route")),
        (attr::SERVER_ADDRESS, Some("reviews")),
        (attr::NETWORK_PEER_ADDRESS, Some("127.0.0.1")),
        (attr::NETWORK_PROTOCOL_VERSION, Some("1.1")),
        (attr::PEER_SERVICE, Some("reviews")),
        (attr::REMORA_DESTINATION_SERVICE, Some("reviews")),
        (attr::REMORA_DESTINATION_SUBSET, Some("v2")),
        (
            attr::REMORA_PEER_IDENTITY,
            Some("spiffe://cluster.local/ns/default/sa/reviews"),
        ),
        (attr::ERROR_TYPE, Some("503")),
    ];
    for (key, value) in expected {
        assert_eq!(got.attr_str(key), value, "{key}: {:?}", got.attr_keys());
    }
    assert_eq!(got.attr_int(attr::HTTP_RESPONSE_STATUS_CODE), Some(503));
    assert_eq!(got.attr_int(attr::SERVER_PORT), Some(9080));
    assert_eq!(got.attr_int(attr::NETWORK_PEER_PORT), Some(9082));
    assert_eq!(got.attr_int(attr::REMORA_RETRIES), Some(1));
    assert_eq!(got.event_names(), [attr::RETRY_EVENT]);
    let mut keys = got.attr_keys();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), before, "no key twice: {keys:?}");
}

/// What a span costs on the request path, per call.
struct Timing {
    total: Duration,
    slowest: Duration,
}

fn time_spans(tracer: &Tracer, count: u32) -> Timing {
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..count {
        let call = Instant::now();
        let mut map = HeaderMap::new();
        let mut span = start(tracer, false, &mut map);
        span.set_route("reviews-route");
        span.set_destination("reviews", "v1");
        span.finish(200, None);
        slowest = slowest.max(call.elapsed());
    }
    Timing {
        total: started.elapsed(),
        slowest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_or_silent_collector_does_not_slow_requests() {
    const COUNT: u32 = 20_000;
    let receiver = OtlpReceiver::start().await.expect("receiver");
    // Closed: a port nothing listens on.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    // Silent: accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let small_queue = |endpoint: String| TraceConfig {
        max_queue_size: 256,
        max_export_batch_size: 64,
        export_timeout: Duration::from_secs(2),
        ..config(endpoint, 1.0)
    };

    let disabled = Tracer::disabled();
    let reachable = Tracer::new(config(receiver.endpoint(), 1.0)).expect("tracer");
    // Istio's 1%: what most requests cost with tracing on.
    let unsampled = Tracer::new(config(receiver.endpoint(), 0.01)).expect("tracer");
    let absent = Tracer::new(small_queue(format!("http://{closed}"))).expect("tracer");
    let stalled = Tracer::new(small_queue(format!("http://{silent_addr}"))).expect("tracer");

    let runs = [
        ("disabled", &disabled),
        ("reachable", &reachable),
        ("1% sampled", &unsampled),
        ("closed port", &absent),
        ("silent collector", &stalled),
    ]
    .map(|(name, tracer)| {
        let timing = time_spans(tracer, COUNT);
        println!(
            "{name:>16}: {COUNT} spans in {:?} ({:?}/span, slowest {:?}), dropped {}",
            timing.total,
            timing.total / COUNT,
            timing.slowest,
            tracer.dropped_spans()
        );
        (name, timing)
    });
    let reachable_total = runs[1].1.total;
    for (name, timing) in &runs {
        // A span that waited on the exporter would wait out its 2 s timeout
        // on the silent collector: a bound of half that tells blocking from a
        // thread descheduled on a loaded machine (seen: 132 ms).
        assert!(
            timing.slowest < Duration::from_secs(1),
            "{name}: a span blocked for {:?}",
            timing.slowest
        );
        assert!(
            timing.total < reachable_total * 10,
            "{name}: {:?} against {reachable_total:?} with a collector",
            timing.total
        );
    }
    assert_eq!(runs[1].0, "reachable");
    // The silent collector holds the export: the queue fills, and the rest
    // is dropped and counted.
    assert!(stalled.dropped_spans() > 0);
    assert_eq!(stalled.exported_spans(), 0);
    reachable.flush().await;
    receiver
        .wait_for_spans(
            (u64::from(COUNT) - reachable.dropped_spans() - reachable.failed_spans()) as usize,
            WAIT,
        )
        .await
        .expect("the reachable collector got what was not dropped");
    hold.abort();
}
