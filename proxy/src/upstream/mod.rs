//! Upstream endpoints: their live state (active requests, pooled
//! connections), kept across config snapshots so that a config change does
//! not drop pools or reset load figures.

mod body;
mod endpoint;
mod pool;

pub use body::UpstreamBody;
pub use endpoint::{ActiveRequest, Endpoint, EndpointRegistry};
pub use pool::{PoolSettings, UpstreamError};
