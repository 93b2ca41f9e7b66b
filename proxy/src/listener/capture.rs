//! The outbound listener with transparent capture: every connection is
//! asked for its original destination ([`orig_dst`]); one made to the
//! listener itself is served as the explicit HTTP proxy it always was,
//! and a captured one goes through protocol detection:
//!
//! - HTTP is served and routed as usual, by `Host`, or else by the
//!   original IP when it is a mesh endpoint; a destination outside the
//!   mesh gets `outboundTrafficPolicy` (through untouched, or 502);
//! - anything else is forwarded as opaque TCP ([`outbound_tcp`]): to a
//!   mesh endpoint with an identity through an mTLS tunnel ([`tunnel`]),
//!   to any other destination directly (or refused by `REGISTRY_ONLY`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::activity::{Activity, ConnectionLimit, Phase};
use super::captured::Captured;
use super::detect::{self, Prefixed, Protocol};
use super::inbound::{Dialled, Inbound};
use super::orig_dst::{self, OriginalDst};
use super::outbound::{self, Outbound};
use super::tcp::{self, BLACKHOLE, PASSTHROUGH, TcpRecord};
use super::watchdog::Watched;
use super::{Builders, next_connection, sniff_http, tunnel};
use crate::config::OutboundPolicy;
use crate::peer::Peer;
use crate::telemetry::Direction;
use crate::upstream::Transport;

/// Serves the outbound listener until `shutdown` turns true, then drains
/// its HTTP connections as [`super::serve`] does (the caller bounds the
/// wait). Opaque TCP connections carry on until the drain is over
/// ([`tcp::end_all`]).
pub async fn serve_outbound(
    listener: TcpListener,
    outbound: Arc<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builders = Arc::new(Builders::new());
    let limit = ConnectionLimit::new("outbound", false);
    let graceful = GracefulShutdown::new();
    // Compared with the original destination instead of asking each
    // socket, unless the listener is bound to every address.
    let bound = listener.local_addr().ok();
    while let Some(stream) = next_connection(&listener, &mut shutdown).await {
        let Some(slot) = limit.admit() else {
            continue;
        };
        let outbound = Arc::clone(&outbound);
        let builders = Arc::clone(&builders);
        let watcher = graceful.watcher();
        let dst = orig_dst::captured_at(&stream, bound);
        let stream = slot.watch(stream);
        let activity = Arc::clone(slot.activity());
        tokio::spawn(slot.guard(async move {
            match dst {
                None => {
                    let Some((io, builder)) = sniff_http(stream, &activity, &builders, false).await
                    else {
                        return;
                    };
                    let service = http_service(outbound, None, activity);
                    if let Err(e) = watcher
                        .watch(builder.serve_connection(TokioIo::new(io), service))
                        .await
                    {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                Some(dst) => captured(stream, dst, outbound, &builders, watcher, activity).await,
            }
        }));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The hyper service of the outbound path; a captured connection's
/// requests carry its [`Captured`].
fn http_service(
    outbound: Arc<Outbound>,
    captured: Option<Arc<Captured>>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::listener::observe::Observed>,
    Error = Infallible,
    Future = impl Future<
        Output = Result<http::Response<crate::listener::observe::Observed>, Infallible>,
    > + Send,
> + Clone {
    service_fn(move |mut req| {
        let stream = activity.stream();
        if let Some(c) = &captured {
            req.extensions_mut().insert(Arc::clone(c));
        }
        // Boxed, as in `listener::serve`: the future is a few KiB.
        let fut = Box::pin(outbound::handle(Arc::clone(&outbound), req));
        async move {
            let resp = fut.await;
            drop(stream);
            Ok::<_, Infallible>(resp)
        }
    })
}

/// One captured connection: detect, then HTTP or TCP.
async fn captured(
    mut stream: Watched<TcpStream>,
    dst: OriginalDst,
    outbound: Arc<Outbound>,
    builders: &Builders,
    watcher: Watcher,
    activity: Arc<Activity>,
) {
    let dst = dst.0;
    let declared_tcp = outbound.capture.opaque_ports.contains(&dst.port())
        || outbound.config.load().capture().is_declared_tcp(dst);
    let (protocol, prefix) = if declared_tcp {
        (Protocol::Tcp, bytes::Bytes::new())
    } else {
        match detect::detect(&mut stream, outbound.capture.silence).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, %dst, "captured connection failed before detection");
                return;
            }
        }
    };
    if !activity.established(phase_of(protocol), false) {
        return;
    }
    let io = Prefixed::new(prefix, stream);
    match protocol {
        Protocol::Tcp => outbound_tcp(io, dst, &outbound).await,
        Protocol::Http1 | Protocol::Http2 => {
            let captured = Arc::new(Captured::new(dst));
            let conn = builders.for_protocol(protocol).serve_connection(
                TokioIo::new(io),
                http_service(Arc::clone(&outbound), Some(captured), activity),
            );
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, %dst, "captured connection ended with an error");
            }
        }
    }
}

/// The watchdog's phase for a detected protocol.
fn phase_of(protocol: Protocol) -> Phase {
    match protocol {
        Protocol::Http1 => Phase::Http1,
        Protocol::Http2 => Phase::Http2,
        Protocol::Tcp => Phase::Tcp,
    }
}

/// Forwards a captured connection as opaque TCP: through an mTLS tunnel
/// to a mesh endpoint with an identity, directly to any other endpoint
/// and (under `ALLOW_ANY`) to a destination outside the mesh.
pub async fn outbound_tcp<C>(client: C, dst: SocketAddr, outbound: &Outbound)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut record = TcpRecord::start(
        Arc::clone(&outbound.telemetry),
        Direction::Outbound,
        dst.to_string(),
    );
    let (known, policy) = {
        let config = outbound.config.load();
        let capture = config.capture();
        (capture.at(dst.ip()).cloned(), capture.policy())
    };
    let Some(known) = known else {
        if policy == OutboundPolicy::RegistryOnly {
            tracing::debug!(%dst, "TCP refused: REGISTRY_ONLY and not a service of the mesh");
            record.set_outside_mesh(BLACKHOLE);
            record.flag("NR");
            record.finish(0, 0);
            return;
        }
        record.set_outside_mesh(PASSTHROUGH);
        return direct(client, dst, record).await;
    };
    record.set_cluster(&known.cluster);
    let transport = known.cluster.transport(&known.endpoint);
    if !matches!(transport, Transport::Mtls(_)) {
        return direct(client, dst, record).await;
    }
    record.set_upstream(known.endpoint.address().to_owned(), true);
    match tunnel::open(&known.endpoint, known.cluster.pool(), transport, dst).await {
        Ok(upstream) => tcp::forward(client, upstream, record).await,
        Err(e) => {
            tracing::debug!(error = %e, %dst, "TCP tunnel failed");
            record.flag(e.flag());
            record.finish(0, 0);
        }
    }
}

/// Plain TCP to the original destination.
async fn direct<C>(client: C, dst: SocketAddr, mut record: TcpRecord)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    record.set_upstream(dst.to_string(), false);
    let connect = TcpStream::connect(dst);
    match tokio::time::timeout(super::HANDSHAKE_TIMEOUT, connect).await {
        Ok(Ok(upstream)) => {
            let _ = upstream.set_nodelay(true);
            tcp::forward(client, upstream, record).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %dst, "TCP connect failed");
            record.flag("UF");
            record.finish(0, 0);
        }
        Err(_) => {
            tracing::debug!(%dst, "TCP connect timed out");
            record.flag("UF");
            record.finish(0, 0);
        }
    }
}

/// Inbound: a captured plaintext connection `dialled` at the app (the
/// mode allowed plaintext): HTTP is served as usual, to that address (or
/// `--app` for its port); anything else is forwarded there as TCP.
pub(super) async fn inbound_plaintext(
    mut stream: Watched<TcpStream>,
    dialled: Dialled,
    builders: &Builders,
    inbound: Arc<Inbound>,
    watcher: Watcher,
    activity: Arc<Activity>,
) {
    let port = dialled.addr.port();
    let (protocol, prefix) = if inbound.capture.opaque_ports.contains(&port) {
        (Protocol::Tcp, bytes::Bytes::new())
    } else {
        match detect::detect(&mut stream, inbound.capture.silence).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, port, "captured connection failed before detection");
                return;
            }
        }
    };
    if !activity.established(phase_of(protocol), false) {
        return;
    }
    let io = Prefixed::new(prefix, stream);
    match protocol {
        Protocol::Tcp => inbound_tcp(io, dialled, &inbound).await,
        Protocol::Http1 | Protocol::Http2 => {
            let peer = Peer::plaintext();
            let builder = builders.for_protocol(protocol);
            super::inbound_http::serve(builder, io, peer, inbound, watcher, dialled, activity)
                .await;
        }
    }
}

/// Inbound: a captured plaintext TCP connection `dialled` at the app,
/// authorized (as a peer without identity) and forwarded to the address it
/// dialled, or `--app` for its port ([`Inbound::app_address`]).
pub(super) async fn inbound_tcp<C>(client: C, dialled: Dialled, inbound: &Inbound)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let port = dialled.addr.port();
    let app = inbound.app_socket(dialled.addr.ip(), port);
    let mut record = TcpRecord::start(
        Arc::clone(&inbound.telemetry),
        Direction::Inbound,
        app.to_string(),
    );
    if let Err(denied) = inbound.authorize_tcp(port, &Peer::plaintext()) {
        tracing::debug!(port, %denied, "inbound TCP refused");
        record.flag("RBAC");
        record.finish(0, 0);
        return;
    }
    direct(client, app, record).await;
}
