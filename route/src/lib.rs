//! `remora-route`: the discovery proto compiled into validated types, with
//! no I/O. Regexes are compiled, weights scheduled, retry, fault and
//! outlier policies checked, AuthorizationPolicies compiled and cluster
//! references resolved, once per snapshot; the request path never re-checks.
//!
//! Both sides use it, and so agree by construction on what a snapshot
//! means: the proxy serves with it ([`CompiledSnapshot::compile`] with its
//! live clusters as destinations), the control plane validates what it
//! pushes and `remora describe` routes a request with it. The crates
//! depend one way: `remora` → `remora-route` ← `remora-proxy`; neither
//! side depends on the other.

pub mod authz;
mod cluster;
mod duration;
mod error;
pub mod fault;
pub mod grpc;
pub mod host;
mod inbound;
mod matcher;
pub mod outlier;
pub mod path;
pub mod protocol;
pub mod retry;
mod snapshot;
mod table;
mod weighted;

pub use cluster::{ClusterSpec, ConnectionPoolSpec, EndpointSpec, LoadBalancer};
pub use error::ConfigError;
pub use inbound::{InboundPolicy, MtlsMode};
pub use matcher::{RequestMatch, StringMatcher};
pub use snapshot::{CompiledSnapshot, OutboundPolicy};
pub use table::{Route, RouteTable, VirtualHost};
pub use weighted::WeightedSchedule;
