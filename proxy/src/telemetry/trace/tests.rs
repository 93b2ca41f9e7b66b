//! The tracer against an in-memory exporter: naming, attributes, status,
//! sampling and propagation. The OTLP wire is tested in `proxy/tests/integration/trace.rs`.

use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Recorder {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("not poisoned").extend(batch);
        Ok(())
    }
}

impl Recorder {
    fn spans(&self) -> Vec<SpanData> {
        self.0.lock().expect("not poisoned").clone()
    }
}

fn tracer(ratio: f64) -> (Tracer, Recorder) {
    let recorder = Recorder::default();
    let config = TraceConfig {
        sampling: SamplingRatio::new(ratio).expect("valid ratio"),
        ..TraceConfig::disabled("reviews")
    };
    (Tracer::with_exporter(&config, recorder.clone()), recorder)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn text(map: &HeaderMap, name: &str) -> Option<String> {
    map.get(name).map(|v| v.to_str().expect("ascii").to_owned())
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| &kv.value)
}

fn get() -> (Method, Uri) {
    (Method::GET, Uri::from_static("/reviews/1?x=y"))
}

#[tokio::test]
async fn disabled_tracer_passes_trace_headers_untouched() {
    let tracer = Tracer::disabled();
    assert!(!tracer.is_enabled());
    let traceparent = format!("00-{TRACE}-{SPAN}-01");
    let original = headers(&[
        ("traceparent", &traceparent),
        ("tracestate", "v=1"),
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
    ]);
    let mut map = original.clone();
    let (method, uri) = get();
    let span = tracer.start_client(&mut map, &RequestInfo::new(&method, &uri));
    assert_eq!(span.trace_id().as_deref(), Some(TRACE));
    assert_eq!(span.span_id(), None);
    assert!(!span.is_sampled());
    let request_id = map.remove("x-request-id").expect("request id made");
    assert_eq!(span.request_id(), request_id);
    assert_eq!(map, original);

    let mut bare = HeaderMap::new();
    let span = tracer.start_server(&mut bare, &RequestInfo::new(&method, &uri));
    assert_eq!(span.trace_id(), None);
    assert_eq!(bare.len(), 1, "only x-request-id is added");
}

#[tokio::test]
async fn server_span_is_named_by_route_and_annotated() {
    let (tracer, recorder) = tracer(1.0);
    let mut map = headers(&[
        ("host", "reviews.default:9080"),
        ("user-agent", "curl/8"),
        ("x-request-id", "req-1"),
    ]);
    let (method, uri) = get();
    let info = RequestInfo::new(&method, &uri)
        .version(Version::HTTP_2)
        .peer("10.1.2.3:5555".parse().expect("addr"));
    let mut span = tracer.start_server(&mut map, &info);
    span.set_route("reviews-v1");
    span.set_peer_identity("spiffe://cluster.local/ns/default/sa/productpage");
    span.finish(503, None);
    span.finish(200, None);
    tracer.flush().await;
    let spans = recorder.spans();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.name, "GET reviews-v1");
    assert_eq!(s.span_kind, SpanKind::Server);
    let str_attr = |key| attr(s, key).map(|v| v.as_str().into_owned());
    assert_eq!(str_attr(attr::HTTP_REQUEST_METHOD).as_deref(), Some("GET"));
    assert_eq!(str_attr(attr::URL_PATH).as_deref(), Some("/reviews/1"));
    assert_eq!(str_attr(attr::HTTP_ROUTE).as_deref(), Some("reviews-v1"));
    assert_eq!(
        str_attr(attr::SERVER_ADDRESS).as_deref(),
        Some("reviews.default")
    );
    assert_eq!(attr(s, attr::SERVER_PORT), Some(&Value::I64(9080)));
    assert_eq!(
        str_attr(attr::NETWORK_PEER_ADDRESS).as_deref(),
        Some("10.1.2.3")
    );
    assert_eq!(
        str_attr(attr::NETWORK_PROTOCOL_VERSION).as_deref(),
        Some("2")
    );
    assert_eq!(
        str_attr(attr::USER_AGENT_ORIGINAL).as_deref(),
        Some("curl/8")
    );
    assert_eq!(
        str_attr(attr::REMORA_PEER_IDENTITY).as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/productpage")
    );
    // The first finish wins.
    assert_eq!(
        attr(s, attr::HTTP_RESPONSE_STATUS_CODE),
        Some(&Value::I64(503))
    );
    assert_eq!(str_attr(attr::ERROR_TYPE).as_deref(), Some("503"));
    assert!(matches!(s.status, Status::Error { .. }));
    assert_eq!(
        str_attr(attr::HTTP_REQUEST_HEADER_X_REQUEST_ID).as_deref(),
        Some("[\"req-1\"]")
    );
}

#[tokio::test]
async fn client_span_carries_destination_upstream_and_retries() {
    let (tracer, recorder) = tracer(1.0);
    let mut map = headers(&[("host", "reviews")]);
    let (method, uri) = (Method::POST, Uri::from_static("/r"));
    let mut span = tracer.start_client(&mut map, &RequestInfo::new(&method, &uri));
    span.set_destination("reviews", "v2");
    span.set_upstream("127.0.0.1:9081");
    span.add_retry(1, "503");
    span.set_upstream("127.0.0.1:9082");
    span.finish(404, None);
    tracer.flush().await;
    let s = &recorder.spans()[0];
    assert_eq!(s.span_kind, SpanKind::Client);
    assert_eq!(s.name, "POST");
    let str_attr = |key| attr(s, key).map(|v| v.as_str().into_owned());
    assert_eq!(str_attr(attr::PEER_SERVICE).as_deref(), Some("reviews"));
    assert_eq!(
        str_attr(attr::REMORA_DESTINATION_SERVICE).as_deref(),
        Some("reviews")
    );
    assert_eq!(
        str_attr(attr::REMORA_DESTINATION_SUBSET).as_deref(),
        Some("v2")
    );
    assert_eq!(
        str_attr(attr::NETWORK_PEER_ADDRESS).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attr(s, attr::NETWORK_PEER_PORT), Some(&Value::I64(9082)));
    assert_eq!(attr(s, attr::REMORA_RETRIES), Some(&Value::I64(1)));
    assert_eq!(attr(s, attr::SERVER_PORT), None);
    // A 4xx fails a client span.
    assert_eq!(str_attr(attr::ERROR_TYPE).as_deref(), Some("404"));
    let events: Vec<_> = s.events.iter().collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, attr::RETRY_EVENT);
}

#[tokio::test]
async fn proxy_failure_sets_error_type_and_ok_status_stays_unset() {
    let (tracer, recorder) = tracer(1.0);
    let (method, uri) = get();
    let info = RequestInfo::new(&method, &uri);
    let mut failed = tracer.start_client(&mut HeaderMap::new(), &info);
    failed.finish(504, Some("timeout"));
    let mut ok = tracer.start_server(&mut HeaderMap::new(), &info);
    ok.finish(404, None);
    tracer.flush().await;
    let spans = recorder.spans();
    assert_eq!(
        attr(&spans[0], attr::ERROR_TYPE)
            .map(Value::as_str)
            .as_deref(),
        Some("timeout")
    );
    assert_eq!(spans[0].status, Status::error("timeout"));
    // A 404 is not a server error.
    assert_eq!(attr(&spans[1], attr::ERROR_TYPE), None);
    assert_eq!(spans[1].status, Status::Unset);
    assert_eq!(attr(&spans[1], attr::REMORA_RETRIES), None);
}

#[tokio::test]
async fn dropped_unfinished_span_is_marked_cancelled() {
    let (tracer, recorder) = tracer(1.0);
    let (method, uri) = get();
    drop(tracer.start_server(&mut HeaderMap::new(), &RequestInfo::new(&method, &uri)));
    tracer.flush().await;
    let spans = recorder.spans();
    assert_eq!(
        attr(&spans[0], attr::ERROR_TYPE)
            .map(Value::as_str)
            .as_deref(),
        Some("cancelled")
    );
}

#[tokio::test]
async fn unknown_method_is_other() {
    let (tracer, recorder) = tracer(1.0);
    let method = Method::from_bytes(b"PURGE").expect("method");
    let uri = Uri::from_static("/");
    let mut span = tracer.start_server(&mut HeaderMap::new(), &RequestInfo::new(&method, &uri));
    span.set_route("cache");
    span.finish(200, None);
    tracer.flush().await;
    let s = &recorder.spans()[0];
    assert_eq!(s.name, "HTTP cache");
    assert_eq!(
        attr(s, attr::HTTP_REQUEST_METHOD)
            .map(Value::as_str)
            .as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        attr(s, attr::HTTP_REQUEST_METHOD_ORIGINAL)
            .map(Value::as_str)
            .as_deref(),
        Some("PURGE")
    );
}

#[tokio::test]
async fn b3_deferred_parent_is_sampled_by_ratio() {
    let (method, uri) = get();
    let info = RequestInfo::new(&method, &uri);
    let b3 = format!("{TRACE}-{SPAN}");

    let (all, recorder) = tracer(1.0);
    let mut map = headers(&[("b3", &b3)]);
    let mut span = all.start_server(&mut map, &info);
    assert!(span.is_sampled());
    span.finish(200, None);
    all.flush().await;
    assert_eq!(recorder.spans().len(), 1);
    assert!(text(&map, "b3").expect("b3").ends_with("-1"));

    // The trace id's low bits are high: a tiny ratio does not keep it.
    let (few, recorder) = tracer(0.000_001);
    let mut map = headers(&[("b3", &b3)]);
    let mut span = few.start_server(&mut map, &info);
    assert!(!span.is_sampled());
    span.finish(200, None);
    few.flush().await;
    assert!(recorder.spans().is_empty());
    assert!(text(&map, "b3").expect("b3").ends_with("-0"));
    assert!(text(&map, "traceparent").expect("tp").ends_with("-00"));
}

#[tokio::test]
async fn b3_decision_without_ids_is_obeyed() {
    let (method, uri) = get();
    let info = RequestInfo::new(&method, &uri);
    let (all, all_recorder) = tracer(1.0);
    let mut deny = headers(&[("b3", "0")]);
    let span = all.start_server(&mut deny, &info);
    assert!(!span.is_sampled());
    assert!(span.trace_id().is_some(), "a new trace is still propagated");
    assert!(text(&deny, "b3").expect("b3").ends_with("-0"));

    let (few, few_recorder) = tracer(0.000_001);
    let mut debug = headers(&[("x-b3-flags", "1")]);
    let mut span = few.start_client(&mut debug, &info);
    assert!(span.is_sampled());
    span.finish(200, None);
    few.flush().await;
    all.flush().await;
    assert_eq!(few_recorder.spans().len(), 1);
    assert!(all_recorder.spans().is_empty());
    assert_eq!(text(&debug, "x-b3-flags").as_deref(), Some("1"));
    assert_eq!(text(&debug, "x-b3-sampled"), None);
}

#[tokio::test]
async fn counters_start_at_zero_and_disabled_reports_zero() {
    let (enabled, _) = tracer(1.0);
    assert_eq!(enabled.dropped_spans(), 0);
    assert_eq!(enabled.exported_spans(), 0);
    assert_eq!(Tracer::disabled().failed_spans(), 0);
    Tracer::disabled().flush().await;
}

#[tokio::test]
async fn ratio_zero_or_no_endpoint_builds_a_disabled_tracer() {
    let none = Tracer::new(TraceConfig::disabled("reviews")).expect("built");
    assert!(!none.is_enabled());
    let zero = Tracer::new(TraceConfig {
        endpoint: Some("http://127.0.0.1:4317".to_owned()),
        sampling: SamplingRatio::NEVER,
        ..TraceConfig::disabled("reviews")
    })
    .expect("built");
    assert!(!zero.is_enabled());
}

#[test]
fn new_outside_a_runtime_is_an_error() {
    let config = TraceConfig {
        endpoint: Some("http://127.0.0.1:4317".to_owned()),
        ..TraceConfig::disabled("reviews")
    };
    assert_eq!(Tracer::new(config).err(), Some(TraceError::NoRuntime));
}

#[test]
fn request_span_is_small_and_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<RequestSpan>();
    assert_send::<Tracer>();
    // It lives in every request's future: the SDK span is boxed.
    assert!(std::mem::size_of::<RequestSpan>() <= 160);
}

#[tokio::test]
async fn mesh_ratio_applies_to_the_running_tracer() {
    let recorder = Recorder::default();
    let sampling = SamplingControl::new(None);
    sampling.apply_mesh(Some(SamplingRatio::NEVER));
    let tracer = Tracer::with_exporter_sampling(
        &TraceConfig::disabled("reviews"),
        recorder.clone(),
        sampling.clone(),
    );
    let (method, uri) = get();
    let root = |tracer: &Tracer| {
        let mut map = HeaderMap::new();
        let mut span = tracer.start_server(&mut map, &RequestInfo::new(&method, &uri));
        let sampled = span.is_sampled();
        span.finish(200, None);
        sampled
    };
    assert!(!root(&tracer), "the mesh's 0 drops new traces");
    sampling.apply_mesh(Some(SamplingRatio::ALWAYS));
    assert!(root(&tracer), "the mesh's 100% keeps them, same tracer");
    tracer.flush().await;
    assert_eq!(
        recorder.spans().len(),
        1,
        "only the second span is exported"
    );
}

#[tokio::test]
async fn a_mesh_ratio_of_zero_keeps_the_tracer_so_it_can_be_raised() {
    let config = TraceConfig {
        endpoint: Some("http://127.0.0.1:4317".to_owned()),
        ..TraceConfig::disabled("reviews")
    };
    let mesh = SamplingControl::new(None);
    mesh.apply_mesh(Some(SamplingRatio::NEVER));
    let tracer = Tracer::with_sampling(config.clone(), mesh).expect("built");
    assert!(tracer.is_enabled());
    let pinned = SamplingControl::new(Some(SamplingRatio::NEVER));
    let tracer = Tracer::with_sampling(config, pinned).expect("built");
    assert!(!tracer.is_enabled(), "the operator's 0 turns tracing off");
}
