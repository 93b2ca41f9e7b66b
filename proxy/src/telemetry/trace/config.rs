//! Trace settings: where spans go, whom they are from, how many are kept.

use std::time::Duration;

/// What can go wrong setting tracing up. Nothing on the request path fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The sampling ratio or percentage is out of range.
    #[error("trace sampling must be a percentage from 0 to 100, got {0}")]
    InvalidSampling(String),
    /// The OTLP endpoint is not one the proxy can send to.
    #[error("OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The OTLP exporter refused its settings.
    #[error("the OTLP exporter could not be built: {0}")]
    Exporter(String),
    /// [`Tracer::new`](super::Tracer::new) was called outside a Tokio runtime: the exporter and
    /// the export task live on one.
    #[error("tracing must be set up inside the Tokio runtime")]
    NoRuntime,
}

/// The share of new traces that are recorded, in `[0, 1]`. Held, it is in
/// range: the hot path never checks it again.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct SamplingRatio(f64);

impl SamplingRatio {
    /// Istio's default: 1% of traces.
    pub const ISTIO_DEFAULT: Self = Self(0.01);
    /// Every trace.
    #[cfg(test)]
    pub(crate) const ALWAYS: Self = Self(1.0);
    /// No trace: nothing is exported, and the tracer works as disabled.
    #[cfg(test)]
    pub(crate) const NEVER: Self = Self(0.0);

    /// A ratio from 0 to 1.
    pub fn new(ratio: f64) -> Result<Self, TraceError> {
        if (0.0..=1.0).contains(&ratio) {
            Ok(Self(ratio))
        } else {
            Err(TraceError::InvalidSampling(ratio.to_string()))
        }
    }

    /// A percentage from 0 to 100, as Istio's `tracing.sampling` writes it
    /// (`1.0` is 1%).
    pub(crate) fn from_percent(percent: f64) -> Result<Self, TraceError> {
        if (0.0..=100.0).contains(&percent) {
            Ok(Self(percent / 100.0))
        } else {
            Err(TraceError::InvalidSampling(format!("{percent}%")))
        }
    }

    /// Parses a percentage (`"1"`, `"0.5"`, `"100"`): a `clap` value parser.
    pub fn parse_percent(s: &str) -> Result<Self, TraceError> {
        let percent = s
            .trim()
            .trim_end_matches('%')
            .parse::<f64>()
            .map_err(|_| TraceError::InvalidSampling(s.to_owned()))?;
        Self::from_percent(percent)
    }

    /// The ratio, from 0 to 1.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for SamplingRatio {
    fn default() -> Self {
        Self::ISTIO_DEFAULT
    }
}

/// The standard OpenTelemetry variables the proxy reads.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Takes precedence over [`OTEL_EXPORTER_OTLP_ENDPOINT`] for traces, as
/// the OpenTelemetry spec says.
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The `service.name` resource attribute, over the proxy's `--service`.
pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// How the proxy traces. Built once at start by [`TraceConfig::from_env`]
/// (or by hand in tests) and handed to [`super::Tracer::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// The OTLP/gRPC collector, `http://host:port` (Jaeger: port 4317).
    /// `None`: tracing is off; trace headers still pass through.
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute: what Jaeger lists.
    pub service_name: String,
    /// The `service.namespace` resource attribute.
    pub service_namespace: Option<String>,
    /// The share of new traces recorded; a caller's decision is followed.
    pub sampling: SamplingRatio,
    /// Finished spans waiting for export; past this, spans are dropped and
    /// counted ([`super::Tracer::dropped_spans`]). OpenTelemetry's default.
    pub max_queue_size: usize,
    /// Spans per export call.
    pub max_export_batch_size: usize,
    /// How long a span may wait for a batch to fill before it is sent.
    pub scheduled_delay: Duration,
    /// An export that takes longer is abandoned and its spans counted as
    /// failed.
    pub export_timeout: Duration,
}

impl TraceConfig {
    /// Tracing off: no endpoint.
    pub fn disabled(service_name: impl Into<String>) -> Self {
        Self {
            endpoint: None,
            service_name: service_name.into(),
            service_namespace: None,
            sampling: SamplingRatio::default(),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
        }
    }

    /// The settings from the proxy's flags and the process environment:
    /// the endpoint from `endpoint_flag`, else
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (empty values count as unset); the
    /// service name from `OTEL_SERVICE_NAME`, else `service`.
    pub fn from_env(
        endpoint_flag: Option<&str>,
        service: &str,
        namespace: Option<&str>,
        sampling: SamplingRatio,
    ) -> Result<Self, TraceError> {
        Self::resolve(endpoint_flag, service, namespace, sampling, |name| {
            std::env::var(name).ok()
        })
    }

    /// [`TraceConfig::from_env`] with the environment given as a function.
    pub fn resolve(
        endpoint_flag: Option<&str>,
        service: &str,
        namespace: Option<&str>,
        sampling: SamplingRatio,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TraceError> {
        let non_empty = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        let endpoint = endpoint_flag
            .map(str::to_owned)
            .and_then(non_empty)
            .or_else(|| env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).and_then(non_empty))
            .or_else(|| env(OTEL_EXPORTER_OTLP_ENDPOINT).and_then(non_empty))
            .map(|e| normalize_endpoint(&e))
            .transpose()?;
        let service_name = env(OTEL_SERVICE_NAME)
            .and_then(non_empty)
            .unwrap_or_else(|| service.to_owned());
        Ok(Self {
            endpoint,
            service_namespace: namespace.filter(|n| !n.is_empty()).map(str::to_owned),
            sampling,
            ..Self::disabled(service_name)
        })
    }
}

/// `host:port` becomes `http://host:port`; `https` is refused (this build
/// carries no TLS for OTLP: run a collector or Jaeger beside the proxy).
fn normalize_endpoint(endpoint: &str) -> Result<String, TraceError> {
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let invalid = |reason: &'static str| TraceError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("https is not supported: use http://")),
        _ => return Err(invalid("the scheme must be http")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
