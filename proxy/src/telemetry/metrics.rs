//! The proxy's Prometheus metrics: one process-wide registry, served as
//! Prometheus text on the stats port (`/stats/prometheus`, 15090 by
//! default) and as plain lines on the admin API's `/stats`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `remora_requests_total` | counter | [`RequestLabels`] |
//! | `remora_request_duration_milliseconds` | histogram | [`RequestLabels`] |
//! | `remora_tcp_connections_opened_total`, `remora_tcp_connections_closed_total` | counter | [`TcpLabels`] |
//! | `remora_tcp_sent_bytes_total` (to the client), `remora_tcp_received_bytes_total` (from it) | counter | [`TcpLabels`] |
//! | `remora_retry_attempts_total`, `remora_retry_budget_exhausted_total`, ... | counter | none (see [`super::stats`]) |
//! | `remora_outlier_ejected_hosts` | gauge | `destination_service`, `destination_subset` |
//! | `remora_upstream_connections_active` | gauge | `direction` |
//! | `remora_upstream_connections_opened_total` | counter | `direction` |
//! | `remora_tls_handshake_failures_total` | counter | `direction` (from [`super::stats`]) |
//! | `remora_certificate_expiry_timestamp_seconds` | gauge | none |
//! | `remora_config_version` | gauge (info: always 1) | `version` |
//! | `remora_config_last_applied_timestamp_seconds` | gauge | none |
//!
//! Cardinality stays bounded: label values come from the config (services,
//! subsets), from verified peer identities, from status codes and response
//! flags — never from a path, a header or a Host the proxy does not know.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Direction;

/// The `Content-Type` of `/stats/prometheus`: the Prometheus text format 0.0.4.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (ms) of the request duration buckets: from half a
/// millisecond (a sidecar's own cost) to ten seconds (a slow upstream).
pub(crate) const DURATION_BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The label value for what the proxy cannot name (an unknown Host, an
/// unauthenticated peer, a workload without a `version` label).
pub(crate) const UNKNOWN: &str = "unknown";

/// Interned label values beyond this many are all reported as
/// [`OVERFLOW`]: a backstop, since values come from the config only.
const MAX_INTERNED: usize = 10_000;

/// The label value used once [`MAX_INTERNED`] distinct values were seen.
const OVERFLOW: &str = "overflow";

/// The labels of `remora_requests_total` and
/// `remora_request_duration_milliseconds`, in Istio's spirit.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// Outbound: this proxy's service; inbound: the peer's service account
    /// (from its verified SPIFFE ID), or `unknown`.
    pub source_service: Arc<str>,
    /// The service's FQDN: outbound, the cluster the request was sent to
    /// (`unknown` when no route was found); inbound, this proxy's own.
    pub destination_service: Arc<str>,
    /// The subset (outbound: the cluster's; inbound: this workload's
    /// `version` label), `unknown` when there is none.
    pub destination_subset: Arc<str>,
    /// The status sent to the client.
    pub response_code: u16,
    /// Outbound: the upstream connection was mTLS; inbound: the peer
    /// connected with mTLS.
    pub mtls: bool,
    /// Envoy-style flags (`UO`, `NR`, `UH`, ...), `-` for none.
    pub response_flags: Arc<str>,
}

/// The labels of the `remora_tcp_*` metrics (Istio's `istio_tcp_*`): those
/// of [`RequestLabels`] but the status, which TCP has not.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TcpLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// As in [`RequestLabels`].
    pub source_service: Arc<str>,
    /// As in [`RequestLabels`]; `PassthroughCluster` for a destination
    /// outside the mesh, `BlackHoleCluster` for one refused by
    /// `REGISTRY_ONLY` (Istio's names).
    pub destination_service: Arc<str>,
    /// As in [`RequestLabels`].
    pub destination_subset: Arc<str>,
    /// Outbound: carried over mTLS to the peer; inbound: the peer
    /// connected with mTLS.
    pub mtls: bool,
    /// Envoy-style flags (`UF`, `UH`, `NR`, ...), `-` for none.
    pub response_flags: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

type DurationFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The registry and the metrics the request path updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
    connections_opened: Family<DirectionLabel, Counter>,
    tcp_opened: Family<TcpLabels, Counter>,
    tcp_closed: Family<TcpLabels, Counter>,
    tcp_sent: Family<TcpLabels, Counter>,
    tcp_received: Family<TcpLabels, Counter>,
    cert_expiry: Gauge,
    config_applied: Gauge<f64, AtomicU64>,
    interned: RwLock<HashSet<Arc<str>>>,
}

/// The two series of one [`RequestLabels`] set: they share the Family's
/// storage, so the scrape sees what the cache adds.
#[derive(Debug, Clone)]
struct RequestSeries {
    requests: Counter,
    duration: Histogram,
}

type SeriesCache = HashMap<RequestLabels, RequestSeries, foldhash::fast::RandomState>;

thread_local! {
    /// Each thread's handles on the request series it has counted: a
    /// request costs one lookup with a fast hash and no lock, where the
    /// Families would take a lock and a SipHash of the labels twice. Its
    /// size is bounded as the Families' are: by the label values.
    static SERIES: RefCell<SeriesCache> = RefCell::default();
}

/// What the scrape-time gauges read; set once by `main`.
struct Sources {
    config: OnceLock<Arc<dyn LiveConfig>>,
    app: OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
}

/// The applied config as the scrape-time gauges read it. `main` hands the
/// proxy's `ConfigState` (which implements it) to [`watch_config`]: the
/// metrics name no config type, so the config may use the metrics.
pub trait LiveConfig: Send + Sync {
    /// The figures of the config applied now, read once per scrape.
    fn figures(&self, now: Instant) -> ConfigFigures;
}

/// What [`LiveConfig::figures`] reports.
#[derive(Debug, Default)]
pub struct ConfigFigures {
    /// Per cluster: its service, its subset (empty: none) and how many of
    /// its hosts outlier detection holds ejected.
    pub ejected: Vec<(String, String, usize)>,
    /// Open connections to endpoints, each endpoint counted once however
    /// many clusters list it.
    pub open_connections: usize,
    /// The config's version; empty before the first snapshot.
    pub version: String,
}

static SOURCES: Sources = Sources {
    config: OnceLock::new(),
    app: OnceLock::new(),
};

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS_MS)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("remora");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests the proxy finished, by direction, services, subset, code, mTLS and flags",
            requests.clone(),
        );
        let duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "request_duration_milliseconds",
            "Time from a request's arrival to the end of its response, in milliseconds",
            duration.clone(),
        );
        registry.register_collector(Box::new(super::stats::StaticCounters));
        registry.register_collector(Box::new(super::stats::DownstreamCounters));
        let connections_opened = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "upstream_connections_opened",
            "Upstream connections opened (outbound: to endpoints; inbound: to the app)",
            connections_opened.clone(),
        );
        let tcp = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<TcpLabels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let tcp_opened = tcp(
            &mut registry,
            "tcp_connections_opened",
            "Opaque TCP connections the proxy started forwarding",
        );
        let tcp_closed = tcp(
            &mut registry,
            "tcp_connections_closed",
            "Opaque TCP connections the proxy finished forwarding",
        );
        let tcp_sent = tcp(
            &mut registry,
            "tcp_sent_bytes",
            "Bytes of opaque TCP connections sent to the client (counted when they close)",
        );
        let tcp_received = tcp(
            &mut registry,
            "tcp_received_bytes",
            "Bytes of opaque TCP connections received from the client (counted when they close)",
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the workload certificate expires, in Unix seconds (0: no certificate)",
            cert_expiry.clone(),
        );
        let config_applied = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "config_last_applied_timestamp_seconds",
            "When the latest config snapshot was applied, in Unix seconds (0: none yet)",
            config_applied.clone(),
        );
        registry.register_collector(Box::new(LiveState));
        Self {
            registry,
            requests,
            duration,
            connections_opened,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
            cert_expiry,
            config_applied,
            interned: RwLock::new(HashSet::new()),
        }
    }

    /// Counts one finished request and observes its duration.
    pub(crate) fn record_request(&self, labels: RequestLabels, duration_ms: f64) {
        SERIES.with_borrow_mut(|cache| {
            let series = cache
                .entry(labels)
                .or_insert_with_key(|labels| RequestSeries {
                    requests: self.requests.get_or_create(labels).clone(),
                    duration: self.duration.get_or_create(labels).clone(),
                });
            series.requests.inc();
            series.duration.observe(duration_ms);
        });
    }

    /// Counts an opaque TCP connection that starts being forwarded.
    pub(crate) fn tcp_opened(&self, labels: &TcpLabels) {
        self.tcp_opened.get_or_create(labels).inc();
    }

    /// Counts an opaque TCP connection that ended, with its bytes: `sent`
    /// to the client, `received` from it.
    pub(crate) fn tcp_closed(&self, labels: &TcpLabels, sent: u64, received: u64) {
        self.tcp_closed.get_or_create(labels).inc();
        self.tcp_sent.get_or_create(labels).inc_by(sent);
        self.tcp_received.get_or_create(labels).inc_by(received);
    }

    /// `value` as a shared label value. No allocation once a value was
    /// seen: the set of values is the set of services, subsets, identities
    /// and flag combinations, fixed by the config.
    pub(crate) fn intern(&self, value: &str) -> Arc<str> {
        {
            let set = self.interned.read().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = set.get(value) {
                return Arc::clone(v);
            }
        }
        let mut set = self.interned.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = set.get(value) {
            return Arc::clone(v);
        }
        let value: Arc<str> = if set.len() >= MAX_INTERNED {
            Arc::from(OVERFLOW)
        } else {
            Arc::from(value)
        };
        set.insert(Arc::clone(&value));
        value
    }

    /// Every metric in the Prometheus text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            // Only a label or writer error can get here; say so in the body.
            out.push_str(&format!("# encoding failed: {e}\n"));
        }
        out
    }

    /// The samples of [`Self::encode`] without comments: the admin API's
    /// `/stats` (`name{labels} value` lines, the same figures).
    pub(crate) fn encode_samples(&self) -> String {
        self.encode()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .flat_map(|l| [l, "\n"])
            .collect()
    }
}

/// The interned [`UNKNOWN`].
pub(crate) fn unknown() -> Arc<str> {
    static UNKNOWN_VALUE: LazyLock<Arc<str>> = LazyLock::new(|| global().intern(UNKNOWN));
    Arc::clone(&UNKNOWN_VALUE)
}

/// The interned `-`: the response flags of a request without any.
pub(crate) fn no_flags() -> Arc<str> {
    static NO_FLAGS: LazyLock<Arc<str>> = LazyLock::new(|| global().intern("-"));
    Arc::clone(&NO_FLAGS)
}

/// The scrape path on the stats port.
pub(crate) const PROMETHEUS_PATH: &str = "/stats/prometheus";

/// `direction` as a bounded label value.
fn direction_label(direction: &str) -> &'static str {
    match direction {
        "inbound" => "inbound",
        "outbound" => "outbound",
        _ => "other",
    }
}

/// Counts an upstream connection opened; `direction` is `outbound` (to an
/// endpoint) or `inbound` (to the app).
pub(crate) fn upstream_connection_opened(direction: &str) {
    global()
        .connections_opened
        .get_or_create(&DirectionLabel {
            direction: direction_label(direction),
        })
        .inc();
}

/// Sets when the workload certificate expires, in Unix seconds; the
/// identity module calls it whenever it installs a certificate.
pub(crate) fn set_cert_expiry(unix: i64) {
    global().cert_expiry.set(unix);
}

/// Records that a config snapshot was applied now.
pub(crate) fn config_applied() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    global().config_applied.set(now);
}

/// Lets the scrape-time gauges read the applied config (ejected hosts,
/// open connections to endpoints, config version). Only the first call
/// counts.
pub fn watch_config(state: Arc<dyn LiveConfig>) {
    let _ = SOURCES.config.set(state);
}

/// Lets the scrape-time gauges read the open connections to the app (the
/// app's endpoint counts them). Only the first call counts.
pub fn watch_app(open_connections: impl Fn() -> usize + Send + Sync + 'static) {
    let _ = SOURCES.app.set(Box::new(open_connections));
}

/// Gauges read from the live state at scrape time, so that they are always
/// true and cost the request path nothing.
#[derive(Debug)]
struct LiveState;

impl Collector for LiveState {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        let config = SOURCES.config.get().map(|s| s.figures(now));

        let mut ejected = encoder.encode_descriptor(
            "outlier_ejected_hosts",
            "Hosts outlier detection holds ejected right now, by cluster",
            None,
            MetricType::Gauge,
        )?;
        for (service, subset, n) in config.iter().flat_map(|c| &c.ejected) {
            let subset = if subset.is_empty() { UNKNOWN } else { subset };
            let labels = [
                ("destination_service", service.as_str()),
                ("destination_subset", subset),
            ];
            ConstGauge::new(*n as i64).encode(ejected.encode_family(&labels)?)?;
        }

        let mut active = encoder.encode_descriptor(
            "upstream_connections_active",
            "Open upstream connections (outbound: to endpoints; inbound: to the app)",
            None,
            MetricType::Gauge,
        )?;
        let outbound = config.as_ref().map_or(0, |c| c.open_connections);
        let dir = |direction| DirectionLabel { direction };
        ConstGauge::new(outbound as i64).encode(active.encode_family(&dir("outbound"))?)?;
        if let Some(app_connections) = SOURCES.app.get() {
            ConstGauge::new(app_connections() as i64)
                .encode(active.encode_family(&dir("inbound"))?)?;
        }

        let mut tls = encoder.encode_descriptor(
            "tls_handshake_failures",
            "TLS handshakes that failed, by direction",
            None,
            MetricType::Counter,
        )?;
        for direction in [Direction::Inbound, Direction::Outbound] {
            ConstCounter::new(super::stats::handshake_failures(direction))
                .encode(tls.encode_family(&dir(direction.as_str()))?)?;
        }

        if let Some(config) = &config
            && !config.version.is_empty()
        {
            let mut version = encoder.encode_descriptor(
                "config_version",
                "The applied config snapshot's version (the label); always 1",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1i64)
                .encode(version.encode_family(&[("version", config.version.as_str())])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
