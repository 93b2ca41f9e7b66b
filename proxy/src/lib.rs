//! `remora-proxy`, Remora's data plane: a sidecar that routes the app's
//! outbound HTTP by the control plane's config and forwards inbound
//! requests to the app.
//!
//! Start at [`listener::outbound::handle`] and [`listener::inbound::handle`]:
//! each is the whole request path of its direction.

pub mod admin;
pub mod app_health;
pub mod balance;
pub mod capture;
pub mod config;
pub mod discovery;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod identity;
pub mod lifecycle;
pub mod limits;
pub mod listener;
pub mod outlier;
pub mod peer;
pub mod retry;
pub mod stats;
pub mod telemetry;
pub mod tls_stats;
pub mod upstream;
pub mod wait_ready;

use remora_route::authz;
