//! What the proxy tells about the traffic it carries: traces, Prometheus
//! metrics and access logs, plus the run-time log level.

pub mod access_log;
pub mod log_level;
pub mod metrics;
pub(crate) mod observe;
pub mod trace;

pub(crate) use observe::{Direction, Observed, Record};
pub use observe::{Telemetry, Workload};
