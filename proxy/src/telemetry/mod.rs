//! What the proxy tells about the traffic it carries: traces, Prometheus
//! metrics and access logs, plus the run-time log level.

pub mod access_log;
mod handle;
pub mod log_level;
pub mod metrics;
pub(crate) mod stats;
pub mod trace;

pub use handle::{Interner, Telemetry, Workload};

/// Which way a request goes through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From the app to a service.
    Outbound,
    /// From a peer to the app.
    Inbound,
}

impl Direction {
    /// `outbound` or `inbound`, as logs and metric labels say it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}
