//! Upstream endpoints: their live state (active requests, pooled
//! connections, plaintext and mTLS), kept across config snapshots so that a
//! config change does not drop pools or reset load figures.

mod body;
mod endpoint;
mod limits;
mod pool;
mod tls;

/// Outlier detection counts what an attempt came to; the request path says it.
pub use crate::outlier::Outcome;
pub(crate) use body::{BodyTimeout, RequestBody, UpstreamBody};
pub use endpoint::{Endpoint, EndpointRegistry};
pub(crate) use pool::{PoolSettings, UpstreamError};
pub(crate) use tls::{MtlsClient, Transport};
