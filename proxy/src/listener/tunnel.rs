//! Opaque TCP between two sidecars over mTLS, in the manner of Istio's
//! HBONE: an HTTP/2 `CONNECT` stream on the mTLS h2 connection the
//! outbound side already keeps to the peer's inbound port, whose
//! `:authority` is the connection's original destination (`ip:port`).
//! The inbound side checks the peer (its SPIFFE ID from the handshake)
//! against AuthorizationPolicy for that port, connects to the app at
//! that port of the pod address the peer dialled (the authority's address
//! is not believed; `--app` for its own port), answers 200 and forwards
//! bytes.
//!
//! A tunnel is refused with a status and a reason: 400 without a port,
//! 403 from a peer without an identity, to one of the proxy's own ports,
//! or by AuthorizationPolicy, 503 when the app does not accept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::inbound::{Dialled, Inbound};
use super::tcp::{self, TcpRecord};
use crate::http::{ProxyBody, local_reply};
use crate::listener::observe::Observed;
use crate::peer::Peer;
use crate::telemetry::Direction;
use crate::upstream::{Endpoint, PoolSettings, Transport, UpstreamError};

/// How long the inbound side waits for the app to accept.
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// No connection to the peer, or the request failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The original destination cannot be written as a `CONNECT`
    /// authority (no socket address `http` knows of fails so; kept rather
    /// than a panic): nothing was sent, and it is no connect failure.
    #[error("cannot open a tunnel to {target}: it is no valid CONNECT authority: {reason}")]
    BadTarget {
        /// The original destination.
        target: SocketAddr,
        /// Why `http` refused it.
        reason: http::uri::InvalidUri,
    },
    /// The peer refused the tunnel.
    #[error("peer {address} refused the tunnel to {target}: {status} {reason}")]
    Refused {
        /// The peer.
        address: String,
        /// The original destination.
        target: SocketAddr,
        /// Its status.
        status: StatusCode,
        /// Its reason (the body, cut short).
        reason: String,
    },
    /// The peer said yes but the stream did not become a tunnel.
    #[error("tunnel to {address}: {source}")]
    Upgrade {
        /// The peer.
        address: String,
        /// hyper's error.
        source: hyper::Error,
    },
}

impl TunnelError {
    /// The access log's response flag: the upstream failure's own (`UO`
    /// when a circuit-breaker limit kept the tunnel from opening), `UF`
    /// when the peer refused the tunnel or it did not become one.
    pub fn flag(&self) -> &'static str {
        match self {
            Self::Upstream(e) => e.flag(),
            Self::BadTarget { .. } | Self::Refused { .. } | Self::Upgrade { .. } => "UF",
        }
    }
}

/// Outbound: opens a tunnel through `endpoint` (a peer proxy, reached by
/// `transport`, mTLS) to `target`, the original destination.
pub async fn open(
    endpoint: &Arc<Endpoint>,
    pool: &PoolSettings,
    transport: Transport<'_>,
    target: SocketAddr,
) -> Result<TokioIo<Upgraded>, TunnelError> {
    let empty = Either::Right(Either::Left(Full::new(Bytes::new())));
    let mut req = Request::new(empty);
    *req.method_mut() = Method::CONNECT;
    *req.version_mut() = Version::HTTP_2;
    *req.uri_mut() = connect_target(target)?;
    let resp = endpoint
        .send(req, endpoint.start_request(), pool, transport)
        .await?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = tokio::time::timeout(Duration::from_secs(1), resp.into_body().collect()).await;
        let reason = match body {
            Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()[..])
                .chars()
                .take(200)
                .collect(),
            _ => String::new(),
        };
        return Err(TunnelError::Refused {
            address: endpoint.address().to_owned(),
            target,
            status,
            reason,
        });
    }
    hyper::upgrade::on(resp)
        .await
        .map(TokioIo::new)
        .map_err(|source| TunnelError::Upgrade {
            address: endpoint.address().to_owned(),
            source,
        })
}

/// The `CONNECT` target for `target`: its authority, `ip:port`.
fn connect_target(target: SocketAddr) -> Result<http::Uri, TunnelError> {
    http::Uri::try_from(target.to_string())
        .map_err(|reason| TunnelError::BadTarget { target, reason })
}

/// Inbound: answers a `CONNECT` from `peer`, and forwards the tunnel to
/// the app once it is established.
pub(super) async fn accept(
    inbound: Arc<Inbound>,
    req: Request<Incoming>,
    peer: Peer,
    dialled: Dialled,
) -> Response<Observed> {
    let port = req.uri().authority().and_then(|a| a.port_u16());
    let mut record = TcpRecord::start(
        Arc::clone(&inbound.telemetry),
        Direction::Inbound,
        req.uri().to_string(),
    );
    let refused = |record: TcpRecord, status: StatusCode, reason: String, flag: &str| {
        tracing::debug!(peer = ?peer.identity, %status, reason, "tunnel refused");
        let mut record = record;
        record.flag(flag);
        record.finish(0, 0);
        local_reply(status, reason).map(Observed::unrecorded)
    };
    let Some(identity) = peer.identity.as_ref() else {
        return refused(
            record,
            StatusCode::FORBIDDEN,
            "CONNECT tunnels are for mTLS peers with an identity".to_owned(),
            "UAEX",
        );
    };
    record.set_peer(identity);
    let Some(port) = port.filter(|p| *p != 0) else {
        return refused(
            record,
            StatusCode::BAD_REQUEST,
            "CONNECT needs an authority with a port".to_owned(),
            "NR",
        );
    };
    if inbound.is_own_port(port) {
        return refused(
            record,
            StatusCode::FORBIDDEN,
            format!("port {port} is the proxy's own; tunnels reach the app only"),
            "NR",
        );
    }
    if let Err(denied) = inbound.authorize_tcp(port, &peer) {
        return refused(record, StatusCode::FORBIDDEN, denied.to_string(), "RBAC");
    }
    // At the pod address the peer dialled, as captured TCP is: never
    // loopback for another port than `--app`'s.
    let app = inbound.app_socket(dialled.addr.ip(), port);
    record.set_upstream(app.to_string(), true);
    let stream = match tokio::time::timeout(APP_CONNECT_TIMEOUT, TcpStream::connect(app)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return refused(
                record,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the app at {app} does not accept: {e}"),
                "UF",
            );
        }
        Err(_) => {
            return refused(
                record,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the app at {app} did not accept within {APP_CONNECT_TIMEOUT:?}"),
                "UF",
            );
        }
    };
    let _ = stream.set_nodelay(true);
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(tunnel) => tcp::forward(TokioIo::new(tunnel), stream, record).await,
            Err(e) => {
                tracing::debug!(error = %e, "the tunnel did not open");
                record.flag("DC");
                record.finish(0, 0);
            }
        }
    });
    let ok: ProxyBody = Either::Right(Full::new(Bytes::new()));
    Response::new(Observed::unrecorded(ok))
}

#[cfg(test)]
mod tests;
