//! The control plane's own Prometheus metrics, served in the OpenMetrics
//! text format by `GET /metrics` on the monitoring port.
//!
//! | Metric | Type | What |
//! |---|---|---|
//! | `remora_connected_proxies` | gauge | discovery streams open now |
//! | `remora_pushes_total{result="ack"\|"nack"}` | counter | answered snapshots, by answer |
//! | `remora_push_latency_seconds` | histogram | from sending a snapshot to its ACK |
//! | `remora_nacks_total` | counter | snapshots a proxy rejected |
//! | `remora_snapshots_refused_total` | counter | snapshots not sent because they exceed what a proxy accepts (once per proxy and version) |
//! | `remora_config_errors_total` | counter | config rejections, one per `rejected` event (a file's unchanged content is reported once) |
//! | `remora_config_files_rejected` | gauge | files whose current content is rejected |
//! | `remora_certificates_signed_total` | counter | workload certificates signed |
//! | `remora_config_info{version}` | gauge | always 1; `version` names the config in force |
//! | `remora_translations_total` | counter | translations of the mesh, each building the snapshots of every view at once |
//! | `remora_view_snapshots_built_total` | counter | view snapshots built (a view: the proxies of one namespace and labels) |
//! | `remora_views` | gauge | views with a proxy connected now |
//!
//! Cardinality is bounded by construction: no label carries a proxy id or a
//! file path, `result` has two values, and `remora_config_info` keeps exactly
//! one series (the previous version's is dropped when the config changes).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of `remora_pushes_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PushLabels {
    /// `ack` or `nack`.
    result: &'static str,
}

/// The label of `remora_config_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConfigLabels {
    version: String,
}

/// Every metric of the control plane, registered once. Cloning is cheap and
/// every clone updates the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    connected_proxies: Gauge,
    pushes: Family<PushLabels, Counter>,
    push_latency: Histogram,
    nacks: Counter,
    snapshots_refused: Counter,
    config_errors: Counter,
    files_rejected: Gauge,
    certificates_signed: Counter,
    config_info: Family<ConfigLabels, Gauge>,
    translations: Counter,
    view_snapshots_built: Counter,
    views: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero. Each instance is
    /// independent, so tests can build their own.
    pub fn new() -> Self {
        let connected_proxies = Gauge::default();
        let pushes = Family::<PushLabels, Counter>::default();
        // 1 ms to ~16 s: a push is ACKed in milliseconds unless a proxy is
        // stuck.
        let push_latency = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let nacks = Counter::default();
        let snapshots_refused = Counter::default();
        let config_errors = Counter::default();
        let files_rejected = Gauge::default();
        let certificates_signed = Counter::default();
        let config_info = Family::<ConfigLabels, Gauge>::default();
        let translations = Counter::default();
        let view_snapshots_built = Counter::default();
        let views = Gauge::default();
        // Both results exist from the start, so a rate() over them works
        // before the first NACK.
        for result in ["ack", "nack"] {
            drop(pushes.get_or_create(&PushLabels { result }));
        }

        let mut registry = Registry::with_prefix("remora");
        registry.register(
            "connected_proxies",
            "Proxies with an open discovery stream",
            connected_proxies.clone(),
        );
        registry.register(
            "pushes",
            "Snapshots answered by a proxy, by answer (ack or nack)",
            pushes.clone(),
        );
        registry.register_with_unit(
            "push_latency",
            "Time from sending a snapshot to its ACK",
            Unit::Seconds,
            push_latency.clone(),
        );
        registry.register("nacks", "Snapshots a proxy rejected (NACK)", nacks.clone());
        registry.register(
            "snapshots_refused",
            "Snapshots not sent because they exceed the size a proxy accepts",
            snapshots_refused.clone(),
        );
        registry.register(
            "config_errors",
            "Config rejections: a file (or the directory) reported rejected",
            config_errors.clone(),
        );
        registry.register(
            "config_files_rejected",
            "Config files whose current content is rejected",
            files_rejected.clone(),
        );
        registry.register(
            "certificates_signed",
            "Workload certificates signed",
            certificates_signed.clone(),
        );
        registry.register(
            "config_info",
            "Always 1; the version label names the config in force",
            config_info.clone(),
        );
        registry.register(
            "translations",
            "Translations of the mesh, each building the snapshots of every view at once",
            translations.clone(),
        );
        registry.register(
            "view_snapshots_built",
            "View snapshots built (a view: the proxies of one namespace and labels)",
            view_snapshots_built.clone(),
        );
        registry.register("views", "Views with a proxy connected now", views.clone());
        Metrics {
            registry: Arc::new(registry),
            connected_proxies,
            pushes,
            push_latency,
            nacks,
            snapshots_refused,
            config_errors,
            files_rejected,
            certificates_signed,
            config_info,
            translations,
            view_snapshots_built,
            views,
        }
    }

    /// Records one translation of the mesh that built `views` view
    /// snapshots, of the `views` views connected.
    pub fn translated(&self, views: usize) {
        self.translations.inc();
        self.view_snapshots_built.inc_by(views as u64);
        self.views.set(i64::try_from(views).unwrap_or(i64::MAX));
    }

    /// Every metric in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Records a workload certificate signed. Called by the identity
    /// service for every CSR it signs.
    pub fn certificate_signed(&self) {
        self.certificates_signed.inc();
    }

    /// A discovery stream opened.
    pub(crate) fn proxy_connected(&self) {
        self.connected_proxies.inc();
    }

    /// A discovery stream ended.
    pub(crate) fn proxy_disconnected(&self) {
        self.connected_proxies.dec();
    }

    /// Discovery streams open now.
    pub fn connected_proxies(&self) -> i64 {
        self.connected_proxies.get()
    }

    /// A proxy ACKed a snapshot `latency` after it was sent.
    pub(crate) fn push_acked(&self, latency: Duration) {
        self.pushes
            .get_or_create(&PushLabels { result: "ack" })
            .inc();
        self.push_latency.observe(latency.as_secs_f64());
    }

    /// A proxy NACKed a snapshot.
    pub(crate) fn push_nacked(&self) {
        self.pushes
            .get_or_create(&PushLabels { result: "nack" })
            .inc();
        self.nacks.inc();
    }

    /// A snapshot was not sent: it exceeds what a proxy accepts.
    pub(crate) fn snapshot_refused(&self) {
        self.snapshots_refused.inc();
    }

    /// A config file (or the directory) was rejected.
    pub(crate) fn config_rejected(&self) {
        self.config_errors.inc();
    }

    /// `n` config files are rejected right now.
    pub(crate) fn set_files_rejected(&self, n: usize) {
        self.files_rejected
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The config in force is now `version`.
    pub(crate) fn set_config_version(&self, version: &str) {
        // Clear first: one series, whatever the history.
        self.config_info.clear();
        self.config_info
            .get_or_create(&ConfigLabels {
                version: version.to_owned(),
            })
            .set(1);
    }
}

#[cfg(test)]
mod tests;
