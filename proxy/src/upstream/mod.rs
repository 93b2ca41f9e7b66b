//! Upstream endpoints: their live state (active requests, pooled
//! connections, plaintext and mTLS), kept across config snapshots so that a
//! config change does not drop pools or reset load figures.

mod body;
mod endpoint;
mod limits;
mod pool;
mod tls;

pub(crate) use body::{BodyTimeout, RequestBody, UpstreamBody};
pub use endpoint::{Endpoint, EndpointRegistry};
pub(crate) use pool::{PoolSettings, UpstreamError};
pub(crate) use tls::{MtlsClient, Transport};

/// What one attempt on an endpoint came to, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status (5xx count as errors; 502,
    /// 503 and 504 also as gateway errors).
    Response(http::StatusCode),
    /// No connection could be made: a gateway error.
    ConnectFailure,
    /// The connection broke or timed out mid-request: a gateway error.
    Reset,
    /// A circuit-breaker limit refused the request locally: never counted.
    Overflow,
}
