//! What the proxy tells about the traffic it carries: traces (and, beside
//! them, metrics and access logs).

pub mod access_log;
pub mod observe;
pub mod trace;

pub use observe::{Direction, Observed, Record, Telemetry};
