//! Connections to one endpoint: a stack of idle HTTP/1.1 connections and one
//! shared, multiplexed HTTP/2 connection.
//!
//! The protocol towards the endpoint is the protocol the request came in
//! with, so gRPC (h2, trailers) passes through unchanged.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};

use super::replay::RequestBody;
use super::tls::{MtlsH2, TlsFailure, tls_message};

/// Idle HTTP/1.1 connections kept per endpoint; more are closed.
const MAX_IDLE_H1: usize = 64;

/// Pool behaviour and circuit-breaker limits from the DestinationRule's
/// `connectionPool`, per destination host. 0 means unlimited throughout
/// (Istio's defaults are 2^32−1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `tcp.connectTimeout` (Istio's default: 10 s).
    pub connect_timeout: Duration,
    /// `http.maxRequestsPerConnection`; 0 means unlimited, 1 disables keep-alive.
    pub max_requests_per_connection: u32,
    /// `tcp.maxConnections`: open connections (HTTP/1.1 and HTTP/2).
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection
    /// while `max_connections` are open; one more overflows at once.
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests`: requests in flight, for any HTTP version.
    pub max_requests: u32,
    /// The shorter of `tcp.idleTimeout` and `http.idleTimeout` (Istio's
    /// default: 1 h): a pooled HTTP/1.1 connection idle this long is
    /// closed instead of reused.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_requests_per_connection: 0,
            max_connections: 0,
            max_pending_requests: 0,
            max_requests: 0,
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// Why a request could not be sent or answered by the upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("connect to {address} failed: {source}")]
    Connect {
        /// The endpoint.
        address: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The TCP connection was not made in time.
    #[error("connect to {address} timed out after {after:?}")]
    ConnectTimeout {
        /// The endpoint.
        address: String,
        /// The connect timeout in force.
        after: Duration,
    },
    /// The connection failed before or while the response headers came.
    #[error("upstream {address} failed: {source}")]
    Request {
        /// The endpoint.
        address: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// The shared HTTP/2 connection closed before the request could be
    /// sent on it, and so did the fresh one opened in its place: the
    /// endpoint accepts connections but cannot keep one. The request was
    /// not sent; as no usable connection could be made, it counts as a
    /// connect failure.
    #[error("HTTP/2 connection to {address} closed twice before the request could be sent")]
    ClosedBeforeSend {
        /// The endpoint.
        address: String,
    },
    /// A pooled HTTP/1.1 connection failed before any byte of the response
    /// came: the upstream had closed it while idle, and the request was
    /// written into a closing socket (the race behind Istio's "503 UC").
    /// The upstream did not process it, but the proxy cannot prove that, so
    /// only idempotent methods are retried on it by default.
    #[error(
        "pooled connection to {address} was closed by the upstream before it answered: {source}"
    )]
    Stale {
        /// The endpoint.
        address: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// A circuit-breaker limit of the destination host was reached: the
    /// request was not sent. Answered 503 with `x-remora-overloaded: true`,
    /// never retried, never counted against the host's health.
    #[error("upstream {address} overloaded: {limit} reached")]
    Overflow {
        /// The endpoint.
        address: String,
        /// Which limit, e.g. `maxConnections (1)`.
        limit: String,
    },
    /// The peer sidecar answered that it could not connect to its app
    /// ([`crate::http::APP_UNREACHED`], from an mTLS peer): a connect
    /// failure of that endpoint, and the request never reached an app.
    #[error("upstream {address}: its sidecar could not connect to its app")]
    AppUnreached {
        /// The endpoint (the peer sidecar).
        address: String,
    },
    /// No usable mTLS connection: the handshake failed (the peer's chain or
    /// SPIFFE ID was refused, or it refused ours), ALPN did not give h2, or
    /// this proxy has no identity. The request never reached the app.
    #[error("{}", tls_message(.address, .failure))]
    Tls {
        /// The endpoint.
        address: String,
        /// What went wrong.
        failure: TlsFailure,
    },
}

impl UpstreamError {
    /// The Envoy-style response flag for the access log: `UF` no
    /// connection, `UO` a circuit-breaker limit, `UC` a pooled connection
    /// the upstream had closed, `UR` a failure while the request was on
    /// its way.
    pub fn flag(&self) -> &'static str {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::ClosedBeforeSend { .. }
            | Self::AppUnreached { .. }
            | Self::Tls { .. } => "UF",
            Self::Overflow { .. } => "UO",
            Self::Stale { .. } => "UC",
            Self::Request { .. } => "UR",
        }
    }

    /// No connection was made (Envoy's `connect-failure`): TCP failed, or
    /// the mTLS handshake did. A missing identity of our own is not one: it
    /// says nothing about the endpoint.
    pub(crate) fn is_connect_failure(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::ClosedBeforeSend { .. }
            | Self::AppUnreached { .. } => true,
            Self::Tls { failure, .. } => *failure != TlsFailure::NoIdentity,
            _ => false,
        }
    }

    /// The endpoint needs mTLS and this proxy has no identity: a local
    /// problem, never counted against the endpoint's health.
    pub(crate) fn is_missing_identity(&self) -> bool {
        matches!(
            self,
            Self::Tls {
                failure: TlsFailure::NoIdentity,
                ..
            }
        )
    }

    /// The request certainly never reached the app: a connect failure, an
    /// h2 stream the server refused, or a request hyper never wrote. Such
    /// failures are safe to retry for any method.
    pub(crate) fn never_reached_app(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::ClosedBeforeSend { .. }
            | Self::AppUnreached { .. }
            | Self::Overflow { .. }
            | Self::Tls { .. } => true,
            Self::Request { source, .. } => {
                source.is_canceled() // hyper: the request was not sent
                    || is_refused(source)
            }
            Self::Stale { .. } => false,
        }
    }

    /// The h2 stream was refused by the server (Envoy's `refused-stream`).
    pub(crate) fn is_refused_stream(&self) -> bool {
        matches!(self, Self::Request { source, .. } if is_refused(source))
    }

    /// The connection broke after the request may have been sent (Envoy's
    /// `reset`).
    pub(crate) fn is_reset(&self) -> bool {
        matches!(self, Self::Request { .. } | Self::Stale { .. })
    }

    /// A reused connection that the upstream had closed while idle.
    pub(crate) fn is_stale(&self) -> bool {
        matches!(self, Self::Stale { .. })
    }

    /// A circuit-breaker overflow.
    pub(crate) fn is_overflow(&self) -> bool {
        matches!(self, Self::Overflow { .. })
    }
}

/// Whether hyper's error on a reused connection says the peer had closed
/// it: end of stream or a reset before the response began.
pub(super) fn closed_early(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_closed() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = err.source();
    }
    false
}

/// Whether hyper's error is an h2 stream the server refused (RST_STREAM or
/// GOAWAY with REFUSED_STREAM: RFC 9113 says it was not processed).
fn is_refused(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = err.source();
    }
    false
}

/// An idle HTTP/1.1 connection and how many requests it has carried.
#[derive(Debug)]
pub(super) struct IdleH1 {
    pub(super) sender: http1::SendRequest<RequestBody>,
    pub(super) uses: u32,
    /// When it went idle, for the idle timeout.
    pub(super) since: Instant,
    /// When it goes idle past this, it is closed rather than reused.
    pub(super) idle_timeout: Duration,
}

impl IdleH1 {
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < self.idle_timeout
    }
}

/// The connections of one endpoint.
#[derive(Debug, Default)]
pub(super) struct Connections {
    idle_h1: Mutex<Vec<IdleH1>>,
    pub(super) h2: tokio::sync::Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// The mTLS connection to a peer proxy (always HTTP/2).
    pub(super) h2_mtls: tokio::sync::Mutex<Option<MtlsH2>>,
    /// A [`reap`] task is watching the idle connections.
    pub(super) reaper: AtomicBool,
}

impl Connections {
    /// Keeps a connection whose response finished cleanly, closing those
    /// past their idle timeout or closed by the upstream meanwhile.
    /// Returns whether it was kept.
    pub(super) fn put_idle(&self, mut conn: IdleH1) -> bool {
        let now = Instant::now();
        conn.since = now;
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.usable(now));
        if idle.len() < MAX_IDLE_H1 {
            idle.push(conn);
            true
        } else {
            false
        }
    }

    /// Closes (drops) the idle connections past their timeout or closed by
    /// the upstream; returns when the next one expires, if any is left.
    pub(super) fn close_expired(&self, now: Instant) -> Option<Instant> {
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.usable(now));
        idle.iter().map(|c| c.since + c.idle_timeout).min()
    }

    pub(super) fn idle_count(&self) -> usize {
        self.idle_h1.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The most recently used idle connection that is still open and within
    /// its idle timeout; the others on the way are closed (dropped).
    pub(super) fn take_idle(&self) -> Option<IdleH1> {
        let now = Instant::now();
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.usable(now) {
                return Some(conn);
            }
        }
        None
    }
}
