//! Remora end to end: the workspace's binaries as real processes on
//! loopback and in network namespaces, one module per behaviour, all in one
//! test binary (one link instead of one per file).
//!
//! Run one module with `cargo nextest run -p remora-e2e -E 'test(/^routing::/)'`.
//! `.config/nextest.toml` keys its per-test settings on these module paths
//! (the Docker tests of [`deploy`] run one at a time).

mod access_log;
mod admin;
mod app_health;
mod authz;
mod bad_config;
mod canary;
mod capture;
mod cert_rotation;
mod circuit_breaker;
mod control_plane_restart;
mod credentials;
mod deploy;
mod describe;
mod floods;
mod h2_grpc;
mod host_port;
mod identity;
mod limits;
mod logs;
mod metrics;
mod mtls;
mod nack;
mod outlier;
mod proxy_status;
mod registration;
mod retries;
mod routing;
mod sidecar_scope;
mod timeouts_faults;
mod traces;
mod upstream_protocol;
mod validate;
mod weight_change;
