//! Upstream endpoints: their live state (active requests, pooled
//! connections, plaintext and mTLS), kept across config snapshots so that a
//! config change does not drop pools or reset load figures; and the bodies
//! that travel to them and back, the request's replayable for retries
//! ([`replay`]).

mod body;
mod endpoint;
mod limits;
mod pool;
pub mod replay;
mod send;
mod tls;

/// Outlier detection counts what an attempt came to; the request path says it.
pub use crate::outlier::Outcome;
pub(crate) use body::{BodyTimeout, UpstreamBody};
pub use endpoint::{Endpoint, EndpointRegistry};
pub(crate) use pool::{PoolSettings, UpstreamError};
pub(crate) use replay::RequestBody;
pub(crate) use tls::{MtlsClient, Transport};
