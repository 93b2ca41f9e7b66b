//! `remora-proxy`, Remora's data plane: a sidecar that routes the app's
//! outbound HTTP by the control plane's config and forwards inbound
//! requests to the app.
//!
//! Start at [`listener::outbound::handle`] and [`listener::inbound::handle`]:
//! each is the whole request path of its direction.
//!
//! The library exists for the binary (`src/main.rs`), the tests in `tests/`
//! and the benchmarks in `benches/`, and exports only what they use: every
//! other item is `pub(crate)`, and `unreachable_pub` (a workspace lint) keeps
//! it so. Nothing outside this package depends on it; what the control plane
//! shares with the proxy is in `remora-route`.

pub mod admin;
pub mod app_health;
mod balance;
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
mod outlier;
mod peer;
pub mod retry;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod wait_ready;

use remora_route::authz;
