//! Why the proxy answered a request itself, and the one place that maps
//! each reason to an HTTP status.

use std::time::Duration;

use http::{Response, StatusCode};

use crate::http::{ProxyBody, local_reply};
use crate::upstream::UpstreamError;

/// A request the proxy could not forward.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The request names no host.
    #[error("request has no Host header or authority")]
    NoHost,
    /// No virtual host for the request's host.
    #[error("no route matched: no service known as `{host}`")]
    UnknownHost {
        /// The host as requested.
        host: String,
    },
    /// A captured request for a destination outside the mesh, refused by
    /// `outboundTrafficPolicy: REGISTRY_ONLY`.
    #[error(
        "outbound traffic policy REGISTRY_ONLY: `{host}` ({destination}) is not a service of the mesh"
    )]
    OutsideMesh {
        /// The host as requested.
        host: String,
        /// The original destination, `ip:port`.
        destination: std::net::SocketAddr,
    },
    /// The virtual host exists but none of its routes match.
    #[error("no route matched for {service}")]
    NoRouteMatched {
        /// The service.
        service: String,
    },
    /// The chosen destination has no endpoints.
    #[error("no healthy upstream: service {service} subset {subset} has no endpoints")]
    NoEndpoint {
        /// The service.
        service: String,
        /// The subset (`(none)` for the whole service).
        subset: String,
    },
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The route's `timeout` fired before the response headers came
    /// (retries and backoff included).
    #[error("upstream request timeout: no response within the route timeout of {after:?}")]
    Timeout {
        /// The route's timeout.
        after: Duration,
    },
    /// The `perTryTimeout` fired on the last try, with no retry left.
    #[error("upstream per-try timeout: no response within {after:?} from {address}")]
    PerTryTimeout {
        /// The retry policy's per-try timeout.
        after: Duration,
        /// The endpoint of the last try.
        address: String,
    },
    /// The client's body could not be read for buffering.
    #[error(transparent)]
    RequestBody(#[from] crate::retry::body::BufferError),
    /// An AuthorizationPolicy refused the inbound request.
    #[error(transparent)]
    Denied(#[from] crate::authz::Denied),
    /// The request's headers are over `--max-request-headers-kb` or
    /// `--max-headers-count`: refused with 431 before it is routed.
    #[error(transparent)]
    RequestHeadersTooLarge(crate::limits::TooLarge),
    /// The upstream's response headers are over `--max-response-headers-kb`
    /// or `--max-headers-count`: 502, and the response is not forwarded.
    #[error("upstream response refused: {0}")]
    ResponseHeadersTooLarge(crate::limits::TooLarge),
    /// The request's path cannot be normalised safely.
    #[error(transparent)]
    BadPath(#[from] crate::http::path::PathError),
    /// The request's `Host` is missing, repeated, malformed, or differs
    /// from its target's authority.
    #[error(transparent)]
    BadHost(#[from] crate::http::host::HostError),
    /// The peer sidecar's app port is not one ([`crate::http::dst_port`]).
    #[error(transparent)]
    BadDstPort(#[from] crate::http::dst_port::BadDstPort),
}

impl ProxyError {
    /// The status Remora answers with, Envoy-style: routing misses are 404,
    /// an unreachable or missing upstream is 503, a broken upstream response
    /// or a failed mTLS handshake is 502, a timeout is 504, a bad request
    /// body, an ambiguous Host or a path that cannot be normalised is 400,
    /// an AuthorizationPolicy denial is 403, request headers over the limit
    /// are 431 and response headers over it 502, a destination outside the
    /// mesh under `REGISTRY_ONLY` is 502 (Istio's BlackHoleCluster).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoHost => StatusCode::BAD_REQUEST,
            Self::UnknownHost { .. } | Self::NoRouteMatched { .. } => StatusCode::NOT_FOUND,
            Self::NoEndpoint { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(
                UpstreamError::Connect { .. }
                | UpstreamError::ConnectTimeout { .. }
                | UpstreamError::ClosedBeforeSend { .. }
                | UpstreamError::AppUnreached { .. }
                | UpstreamError::Overflow { .. }
                | UpstreamError::Stale { .. },
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(UpstreamError::Request { .. } | UpstreamError::Tls { .. })
            | Self::OutsideMesh { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } | Self::PerTryTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::RequestBody(_) | Self::BadPath(_) | Self::BadHost(_) | Self::BadDstPort(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::RequestHeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::ResponseHeadersTooLarge(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The Envoy-style response flag for the access log.
    pub fn flag(&self) -> &'static str {
        match self {
            Self::NoHost
            | Self::UnknownHost { .. }
            | Self::NoRouteMatched { .. }
            | Self::OutsideMesh { .. } => "NR",
            Self::NoEndpoint { .. } => "UH",
            Self::Upstream(e) => e.flag(),
            Self::Timeout { .. } | Self::PerTryTimeout { .. } => "UT",
            Self::RequestBody(_)
            | Self::RequestHeadersTooLarge(_)
            | Self::BadPath(_)
            | Self::BadHost(_)
            | Self::BadDstPort(_) => "DPE",
            Self::Denied(_) => "RBAC",
            Self::ResponseHeadersTooLarge(_) => "UPE",
        }
    }

    /// The local reply for this error; the body says why.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let overloaded = matches!(self, Self::Upstream(UpstreamError::Overflow { .. }));
        let mut resp = local_reply(self.status(), self.to_string());
        if overloaded {
            resp.headers_mut().insert(
                "x-remora-overloaded",
                http::HeaderValue::from_static("true"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests;
