//! The handle the request path carries to its observers: where access log
//! lines and spans go, and the workload beside the proxy as metric labels.

use std::sync::Arc;

use super::access_log::AccessLog;
use super::metrics::{self, Metrics, UNKNOWN};
use super::trace::Tracer;

/// What the proxy's observers share.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Where access log lines go.
    pub access_log: AccessLog,
    /// Request spans, exported over OTLP (or disabled).
    pub tracer: Tracer,
    /// The workload this proxy stands beside, for metric labels.
    pub workload: Workload,
}

impl Telemetry {
    /// No access log, no traces, an unnamed workload (tests).
    pub fn off() -> Self {
        Self {
            access_log: AccessLog::off(),
            tracer: Tracer::disabled(),
            workload: Workload::unknown(),
        }
    }
}

/// Makes metric label values, shared per value: the handle the
/// config build is given to label its clusters once per snapshot, so that
/// no request interns and the config reaches for no global.
#[derive(Debug, Clone, Copy)]
pub struct Interner {
    metrics: &'static Metrics,
}

impl Interner {
    /// Interns into the process's metrics.
    pub fn global() -> Self {
        Self {
            metrics: metrics::global(),
        }
    }

    /// `value` as a shared label value.
    pub(crate) fn intern(&self, value: &str) -> Arc<str> {
        self.metrics.intern(value)
    }

    /// The shared [`UNKNOWN`] (the process's metrics are the only ones).
    pub(crate) fn unknown(&self) -> Arc<str> {
        metrics::unknown()
    }
}

/// The workload beside this proxy, as request metrics name it: the source
/// of its outbound requests and the destination of its inbound ones.
#[derive(Debug, Clone)]
pub struct Workload {
    service: Arc<str>,
    fqdn: Arc<str>,
    version: Arc<str>,
}

impl Workload {
    /// `service` in `namespace`; `version` is its `version` label, if any.
    pub fn new(service: &str, namespace: &str, version: Option<&str>) -> Self {
        let m = metrics::global();
        Self {
            service: m.intern(service),
            fqdn: m.intern(&format!("{service}.{namespace}.svc.cluster.local")),
            version: m.intern(version.filter(|v| !v.is_empty()).unwrap_or(UNKNOWN)),
        }
    }

    /// The service name, as the source of outbound metrics.
    pub(crate) fn service_label(&self) -> Arc<str> {
        Arc::clone(&self.service)
    }

    /// The service's FQDN, as the destination of inbound metrics.
    pub(crate) fn fqdn_label(&self) -> Arc<str> {
        Arc::clone(&self.fqdn)
    }

    /// The service's FQDN (`unknown` when not told), as the control plane
    /// names the service in snapshots.
    pub(crate) fn fqdn(&self) -> &str {
        &self.fqdn
    }

    /// The `version` label, as the subset of inbound metrics.
    pub(crate) fn version_label(&self) -> Arc<str> {
        Arc::clone(&self.version)
    }

    /// A workload the proxy was not told about.
    pub(crate) fn unknown() -> Self {
        let unknown = metrics::unknown();
        Self {
            service: Arc::clone(&unknown),
            fqdn: Arc::clone(&unknown),
            version: unknown,
        }
    }
}
