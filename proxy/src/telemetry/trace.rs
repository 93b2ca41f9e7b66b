//! Request traces, exported over OTLP/gRPC to any collector (Jaeger takes
//! OTLP on port 4317 and shows the traces on 16686).
//!
//! Each direction starts one span per request: inbound a SERVER span
//! ([`Tracer::start_server`]), outbound a CLIENT span
//! ([`Tracer::start_client`]). Starting reads the caller's context from
//! W3C `traceparent` or B3 (`b3`, or `x-b3-*`), makes the span its child,
//! and rewrites the headers so that the next hop sees this span as its
//! parent: `traceparent` always (`tracestate` passes as it came), and B3 in
//! the format that arrived. `x-request-id` is kept, or made when missing.
//!
//! # Why the OpenTelemetry API directly, not `tracing-opentelemetry`
//!
//! A request span here is data about traffic, not a diagnostic scope of the
//! proxy's code: it is started from headers, continued across hops, and
//! written back into headers, with a sampling decision made before anything
//! is recorded. Through `tracing-opentelemetry` each request would build a
//! `tracing` span, go through the subscriber's registry and layers, and
//! reach its OTel span through extensions, on every request whether sampled
//! or not; the proxy's own `tracing` filter would then also decide whether
//! a request is traced. Calling the SDK's tracer directly costs one
//! sampling decision and, for the 99% of requests that are not sampled, no
//! span data at all (the SDK builds a non-recording span; setters return at
//! once). The proxy's `tracing` logs stay as they are.
//!
//! # Cost when off
//!
//! With no endpoint (or a ratio of 0 from the proxy's `--trace-sampling`)
//! no exporter, provider or span exists: starting a span reads the trace
//! headers (to give access logs a trace id), keeps or makes `x-request-id`,
//! and passes every trace header on untouched. A ratio of 0 from the
//! control plane keeps the tracer, since a later snapshot may raise it.
//!
//! # Concurrency
//!
//! Finished spans go into a bounded queue with one `try_send`; a task on
//! the proxy's runtime exports them in batches (see `export`). A slow or
//! absent collector never slows a request: the queue fills and spans are
//! dropped and counted ([`Tracer::dropped_spans`]).

mod config;
mod context;
mod export;
mod sampler;
mod span;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::HeaderMap;
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};

pub use config::{OTEL_EXPORTER_OTLP_ENDPOINT, SamplingRatio, TraceConfig, TraceError};
pub use sampler::SamplingControl;
pub use span::{RequestInfo, RequestSpan, attr};

use context::{Incoming, Outgoing, Sampling, ensure_request_id};
use export::{ExportHandle, ExportStats, QueueProcessor, QueueSettings};
use sampler::{ForcedSampling, MeshSampler, ratio_keeps};
use span::{Side, initial_name};

/// Starts request spans and owns the export pipeline. Cheap to clone; all
/// clones share one queue. Built once at start; [`Tracer::disabled`] when
/// tracing is off.
#[derive(Debug, Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Enabled>>,
}

#[derive(Debug)]
struct Enabled {
    tracer: SdkTracer,
    /// Kept so that the provider (and its processor) lives as long as the
    /// tracer.
    _provider: SdkTracerProvider,
    ratio: SamplingControl,
    stats: Arc<ExportStats>,
    export: ExportHandle,
}

impl Tracer {
    /// A tracer per `config`, its ratio fixed at `config.sampling`:
    /// disabled without an endpoint or at a sampling ratio of 0, else
    /// exporting over OTLP/gRPC. Must run inside the Tokio runtime (the
    /// export task is spawned on it). The collector is connected lazily: an
    /// absent one is not an error here.
    pub fn new(config: TraceConfig) -> Result<Self, TraceError> {
        let sampling = SamplingControl::pinned(config.sampling);
        Self::with_sampling(config, sampling)
    }

    /// [`Tracer::new`], sampling at whatever ratio `sampling` holds when
    /// each span starts (`config.sampling` is not read), so the control
    /// plane can change it without rebuilding the tracer. Disabled at a
    /// ratio of 0 only when `sampling` is pinned: a mesh's 0 may be raised
    /// later.
    pub fn with_sampling(
        config: TraceConfig,
        sampling: SamplingControl,
    ) -> Result<Self, TraceError> {
        let Some(endpoint) = config.endpoint.as_deref() else {
            return Ok(Self::disabled());
        };
        if sampling.is_pinned() && sampling.ratio().get() <= 0.0 {
            return Ok(Self::disabled());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TraceError::NoRuntime);
        }
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(config.export_timeout)
            .build()
            .map_err(|e| TraceError::Exporter(e.to_string()))?;
        Ok(Self::with_exporter_sampling(&config, exporter, sampling))
    }

    /// Tracing off: spans are never built; trace headers pass untouched.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A tracer that exports to `exporter` (tests use an in-memory one) at
    /// the fixed ratio `config.sampling`. Must run inside the Tokio runtime.
    #[cfg(test)]
    pub(crate) fn with_exporter<E>(config: &TraceConfig, exporter: E) -> Self
    where
        E: SpanExporter + 'static,
    {
        Self::with_exporter_sampling(config, exporter, SamplingControl::pinned(config.sampling))
    }

    /// A tracer that exports to `exporter`, at the ratio `sampling` holds
    /// when each span starts. Must run inside the Tokio runtime.
    pub(crate) fn with_exporter_sampling<E>(
        config: &TraceConfig,
        exporter: E,
        sampling: SamplingControl,
    ) -> Self
    where
        E: SpanExporter + 'static,
    {
        let stats = Arc::new(ExportStats::default());
        let settings = QueueSettings {
            max_queue_size: config.max_queue_size,
            max_export_batch_size: config.max_export_batch_size.max(1),
            scheduled_delay: config.scheduled_delay,
            export_timeout: config.export_timeout,
        };
        let (processor, export) = QueueProcessor::spawn(exporter, settings, Arc::clone(&stats));
        let mut resource = Resource::builder().with_service_name(config.service_name.clone());
        if let Some(namespace) = &config.service_namespace {
            resource =
                resource.with_attribute(KeyValue::new("service.namespace", namespace.clone()));
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(MeshSampler {
                ratio: sampling.clone(),
            })
            .with_resource(resource.build())
            .build();
        let scope = InstrumentationScope::builder("remora-proxy")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Self {
            inner: Some(Arc::new(Enabled {
                tracer,
                _provider: provider,
                ratio: sampling,
                stats,
                export,
            })),
        }
    }

    /// Whether spans are built and exported.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts the SERVER span of an inbound request and rewrites `headers`
    /// for the app. Call once the request head is read, before the request
    /// is forwarded.
    pub fn start_server(&self, headers: &mut HeaderMap, info: &RequestInfo<'_>) -> RequestSpan {
        self.start(Side::Server, headers, info)
    }

    /// Starts the CLIENT span of an outbound request and rewrites `headers`
    /// for the upstream. Call once the request head is read, before
    /// routing; retries share the span (each is a `retry` event).
    pub fn start_client(&self, headers: &mut HeaderMap, info: &RequestInfo<'_>) -> RequestSpan {
        self.start(Side::Client, headers, info)
    }

    fn start(&self, side: Side, headers: &mut HeaderMap, info: &RequestInfo<'_>) -> RequestSpan {
        let request_id = ensure_request_id(headers);
        let incoming = Incoming::extract(headers);
        match &self.inner {
            None => {
                RequestSpan::untraced(side, incoming.parent.map(|p| p.trace_id), None, request_id)
            }
            Some(enabled) => enabled.start(side, headers, info, incoming, request_id),
        }
    }

    /// Spans dropped because the export queue was full: the collector is
    /// slower than the traffic, or away.
    pub fn dropped_spans(&self) -> u64 {
        self.stat(|s| &s.dropped)
    }

    /// Spans the collector accepted.
    pub fn exported_spans(&self) -> u64 {
        self.stat(|s| &s.exported)
    }

    /// Spans lost in exports that failed or timed out.
    pub fn failed_spans(&self) -> u64 {
        self.stat(|s| &s.failed)
    }

    fn stat(&self, counter: impl Fn(&ExportStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |e| counter(&e.stats).load(Ordering::Relaxed))
    }

    /// Exports every span finished so far; resolves when that export has
    /// ended (sent, failed or timed out).
    pub async fn flush(&self) {
        if let Some(enabled) = &self.inner {
            enabled.export.flush().await;
        }
    }

    /// Exports what is queued and stops exporting. Call on graceful
    /// shutdown, bounded by a timeout of the caller's choice; spans that
    /// end afterwards are dropped.
    pub async fn shutdown(&self) {
        if let Some(enabled) = &self.inner {
            enabled.export.shutdown().await;
        }
    }
}

impl Enabled {
    fn start(
        &self,
        side: Side,
        headers: &mut HeaderMap,
        info: &RequestInfo<'_>,
        incoming: Incoming,
        request_id: http::HeaderValue,
    ) -> RequestSpan {
        let kind = match side {
            Side::Server => SpanKind::Server,
            Side::Client => SpanKind::Client,
        };
        let builder = SpanBuilder::from_name(initial_name(info.method)).with_kind(kind);
        let span = self
            .tracer
            .build_with_context(builder, &self.parent_context(&incoming));
        let sc = opentelemetry::trace::Span::span_context(&span).clone();
        if !sc.is_valid() {
            // The provider is shut down: pass the headers on as they came.
            return RequestSpan::untraced(
                side,
                incoming.parent.map(|p| p.trace_id),
                None,
                request_id,
            );
        }
        Outgoing {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            parent_span_id: incoming.parent.map(|p| p.span_id),
            sampled: sc.is_sampled(),
            debug: incoming.sampling == Sampling::Debug,
        }
        .inject(headers, incoming.b3);
        if opentelemetry::trace::Span::is_recording(&span) {
            RequestSpan::recording(span, side, info, headers, request_id)
        } else {
            RequestSpan::untraced(side, Some(sc.trace_id()), Some(sc.span_id()), request_id)
        }
    }

    /// The caller's span as a remote parent, its sampling flag resolved:
    /// a B3 parent that deferred the decision is sampled by the ratio here.
    /// A decision without ids is carried as [`ForcedSampling`].
    fn parent_context(&self, incoming: &Incoming) -> Context {
        let Some(parent) = incoming.parent else {
            return match incoming.sampling {
                Sampling::Deferred => Context::new(),
                Sampling::Sampled | Sampling::Debug => {
                    Context::new().with_value(ForcedSampling(true))
                }
                Sampling::NotSampled => Context::new().with_value(ForcedSampling(false)),
            };
        };
        let sampled = match incoming.sampling {
            Sampling::Sampled | Sampling::Debug => true,
            Sampling::NotSampled => false,
            Sampling::Deferred => ratio_keeps(self.ratio.ratio(), parent.trace_id),
        };
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            parent.trace_id,
            parent.span_id,
            flags,
            true,
            TraceState::NONE,
        ))
    }
}

#[cfg(test)]
mod tests;
