//! A real OTLP/gRPC trace receiver on `127.0.0.1:0`, standing in for
//! Jaeger or an OpenTelemetry Collector: it answers the
//! `opentelemetry.proto.collector.trace.v1.TraceService/Export` call as a
//! collector does and keeps every `ResourceSpans` it is sent.
//!
//! ```ignore
//! let receiver = OtlpReceiver::start().await?;
//! // give receiver.endpoint() to the proxy as its OTLP endpoint, send traffic
//! let spans = receiver.wait_for_spans(2, Duration::from_secs(10)).await?;
//! let server = receiver.spans_of_service("reviews");
//! ```
//!
//! Stops when dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

pub use opentelemetry_proto::tonic::common::v1::any_value::Value;
pub use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
pub use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
pub use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

/// A running receiver. Every export it accepts is kept, in order.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<ResourceSpans>>,
    /// Woken on every export.
    arrived: Notify,
}

/// The collector service: keeps what it is sent.
struct Collector(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans;
        lock(&self.0.received).extend(spans);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the spans from the next check.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OtlpReceiver {
    /// Starts listening on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the OTLP receiver")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(Collector(Arc::clone(&shared)));
        let task = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("OTLP receiver stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint to configure an OTLP/gRPC exporter with:
    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received, as sent.
    pub fn resource_spans(&self) -> Vec<ResourceSpans> {
        lock(&self.shared.received).clone()
    }

    /// Every span received, each with its resource's service name.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.shared.received)
            .iter()
            .flat_map(|rs| {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                rs.scope_spans.iter().flat_map(move |ss| {
                    let resource = resource.clone();
                    ss.spans.iter().map(move |span| ReceivedSpan {
                        resource: resource.clone(),
                        span: span.clone(),
                    })
                })
            })
            .collect()
    }

    /// How many spans arrived so far.
    pub fn span_count(&self) -> usize {
        lock(&self.shared.received)
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }

    /// Waits until at least `count` spans arrived, and returns them all;
    /// an error naming how many did arrive after `timeout`.
    pub async fn wait_for_spans(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let have = self.span_count();
            if have >= count {
                return Ok(self.spans());
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                bail!(
                    "{have} of {count} spans arrived within {timeout:?}: {:#?}",
                    self.spans()
                );
            }
        }
    }

    /// The spans of one trace (trace id in hex).
    pub fn spans_in_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.filter(|s| s.trace_id() == trace_id)
    }

    /// The spans whose parent is `parent_span_id` (hex).
    pub fn children_of(&self, parent_span_id: &str) -> Vec<ReceivedSpan> {
        self.filter(|s| s.parent_span_id().as_deref() == Some(parent_span_id))
    }

    /// The span with this id (hex), if it arrived.
    pub fn span(&self, span_id: &str) -> Option<ReceivedSpan> {
        self.filter(|s| s.span_id() == span_id).into_iter().next()
    }

    /// The spans whose resource says `service.name = service`.
    pub fn spans_of_service(&self, service: &str) -> Vec<ReceivedSpan> {
        self.filter(|s| s.service_name() == Some(service))
    }

    fn filter(&self, keep: impl Fn(&ReceivedSpan) -> bool) -> Vec<ReceivedSpan> {
        self.spans().into_iter().filter(|s| keep(s)).collect()
    }

    /// Stops the server and waits for it to end.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}

/// One received span with its resource's attributes.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The attributes of the resource that sent it.
    pub resource: Vec<KeyValue>,
    /// The span as it came over the wire.
    pub span: Span,
}

impl ReceivedSpan {
    /// The trace id in lowercase hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id in lowercase hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent's span id in lowercase hex; `None` for a root span.
    pub fn parent_span_id(&self) -> Option<String> {
        (!self.span.parent_span_id.is_empty()).then(|| hex(&self.span.parent_span_id))
    }

    /// The span's name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// SERVER, CLIENT, ….
    pub fn kind(&self) -> SpanKind {
        self.span.kind()
    }

    /// The status code (Unset, Ok, Error).
    pub fn status(&self) -> StatusCode {
        self.span
            .status
            .as_ref()
            .map_or(StatusCode::Unset, |s| s.code())
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&str> {
        find_str(&self.resource, "service.name")
    }

    /// A resource attribute as text.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        find_str(&self.resource, key)
    }

    /// A span attribute's value.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        find(&self.span.attributes, key)
    }

    /// A span attribute as text.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        find_str(&self.span.attributes, key)
    }

    /// A span attribute as an integer.
    pub fn attr_int(&self, key: &str) -> Option<i64> {
        match find(&self.span.attributes, key) {
            Some(Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    /// The keys of the span's attributes, in order.
    pub fn attr_keys(&self) -> Vec<&str> {
        self.span
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect()
    }

    /// The names of the span's events, in order.
    pub fn event_names(&self) -> Vec<&str> {
        self.span.events.iter().map(|e| e.name.as_str()).collect()
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn find_str<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find(attributes, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Lowercase hex, as trace and span ids are written in headers.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
