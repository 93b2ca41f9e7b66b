//! The inbound listener's connections: TLS or plaintext per
//! PeerAuthentication, then HTTP/1.1 or HTTP/2 per ALPN, with the peer put
//! into every request's extensions.
//!
//! Per connection, the mode is the current config's
//! ([`crate::config::InboundPolicy::mode_for`] the app port):
//!
//! - STRICT: TLS with a client certificate; plaintext is closed at once;
//! - PERMISSIVE: the first byte decides, without consuming it: a TLS
//!   handshake record (0x16) means TLS, with an optional client
//!   certificate, anything else plaintext HTTP;
//! - DISABLE: plaintext only.
//!
//! Without an identity the listener is plaintext only, whatever the mode.
//! Waiting for the first byte and the handshake are bounded by
//! [`HANDSHAKE_TIMEOUT`], so a silent client cannot hold a task forever.

use std::sync::Arc;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use remora_certs::peer_identity;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::activity::ConnectionLimit;
use super::activity::Phase;
use super::inbound::{Dialled, Inbound};
use super::watchdog::Watched;
use super::{Builders, HANDSHAKE_TIMEOUT, inbound_http, next_connection, sniff_http};
use super::{capture, orig_dst};
use crate::config::MtlsMode;
use crate::peer::Peer;
use crate::telemetry::Direction;
use crate::telemetry::stats::tls_handshake_failed;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What the listener does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Serve plaintext HTTP.
    Plaintext,
    /// Peek: TLS (client certificate optional) or plaintext.
    Detect,
    /// TLS with a client certificate, nothing else.
    TlsRequired,
}

/// The handshake for `mode`; without an identity (`has_identity` false)
/// the listener can only serve plaintext.
pub(crate) fn handshake_for(mode: MtlsMode, has_identity: bool) -> Handshake {
    match (mode, has_identity) {
        (_, false) | (MtlsMode::Disable, true) => Handshake::Plaintext,
        (MtlsMode::Permissive, true) => Handshake::Detect,
        (MtlsMode::Strict, true) => Handshake::TlsRequired,
    }
}

/// The server for a negotiated ALPN protocol; `None` when none was
/// negotiated (the version is then sniffed).
fn for_alpn<'b>(
    builders: &'b Builders,
    alpn: Option<&[u8]>,
) -> Option<(Phase, &'b auto::Builder<TokioExecutor>)> {
    match alpn {
        Some(b"h2") => Some((Phase::Http2, &builders.h2)),
        Some(b"http/1.1") => Some((Phase::Http1, &builders.h1)),
        _ => None,
    }
}

/// Serves the inbound path on every connection accepted from `listener`
/// until `shutdown` turns true, then closes the listener and drains the open
/// connections as [`super::serve`] does. Each connection's TLS handshake
/// runs on its own task.
pub async fn serve_inbound(
    listener: TcpListener,
    inbound: Arc<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builders = Arc::new(Builders::new());
    // The mTLS reserve only means something when peers can prove an identity.
    let limit = ConnectionLimit::new("inbound", inbound.tls.is_some());
    let graceful = GracefulShutdown::new();
    while let Some(stream) = next_connection(&listener, &mut shutdown).await {
        let Some(slot) = limit.admit() else {
            continue;
        };
        let watcher = graceful.watcher();
        let inbound = Arc::clone(&inbound);
        let builders = Arc::clone(&builders);
        // Captured (redirected from the app's port): that port, else `--app`'s.
        let original = orig_dst::captured(&stream).map(|dst| dst.0);
        let Ok(local) = stream.local_addr() else {
            continue; // closed already
        };
        let dialled = Dialled::new(local, original);
        let captured = original.map(|dst| dst.port());
        let stream = slot.watch(stream);
        let activity = Arc::clone(slot.activity());
        tokio::spawn(slot.guard(async move {
            if captured.is_some_and(|port| inbound.is_own_port(port)) {
                return; // never forward to the proxy's own listeners
            }
            let port = captured.unwrap_or(inbound.app_port);
            match secure(stream, &inbound, port, captured.is_some()).await {
                Some(Accepted::Plain(stream)) => match original {
                    Some(_) => {
                        capture::inbound_plaintext(
                            stream, dialled, &builders, inbound, watcher, activity,
                        )
                        .await;
                    }
                    None => {
                        let Some((io, builder)) =
                            sniff_http(stream, &activity, &builders, false).await
                        else {
                            return;
                        };
                        let peer = Peer::plaintext();
                        inbound_http::serve(builder, io, peer, inbound, watcher, dialled, activity)
                            .await;
                    }
                },
                Some(Accepted::Silent(stream)) => {
                    if !activity.established(Phase::Tcp, false) {
                        return;
                    }
                    let client = super::detect::Prefixed::new(bytes::Bytes::new(), stream);
                    capture::inbound_tcp(client, dialled, &inbound).await;
                }
                Some(Accepted::Tls(stream)) => {
                    let conn = stream.get_ref().1;
                    let peer = Peer {
                        identity: peer_identity(conn),
                        tls: true,
                    };
                    let authenticated = peer.identity.is_some();
                    match for_alpn(&builders, conn.alpn_protocol()) {
                        Some((phase, builder)) => {
                            if !activity.established(phase, authenticated) {
                                return;
                            }
                            inbound_http::serve(
                                builder, stream, peer, inbound, watcher, dialled, activity,
                            )
                            .await;
                        }
                        None => {
                            let Some((io, builder)) =
                                sniff_http(stream, &activity, &builders, authenticated).await
                            else {
                                return;
                            };
                            inbound_http::serve(
                                builder, io, peer, inbound, watcher, dialled, activity,
                            )
                            .await;
                        }
                    }
                }
                None => {}
            }
        }));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The listener's connections, counted for their watchdog.
type Conn = Watched<TcpStream>;

enum Accepted {
    Plain(Conn),
    /// A captured plaintext client that said nothing within the detection
    /// bound (PERMISSIVE): a server-first protocol, forwarded as TCP.
    Silent(Conn),
    Tls(Box<tokio_rustls::server::TlsStream<Conn>>),
}

/// The connection after its handshake, per the current mode for `port`;
/// `None` when it was refused or failed (already logged and counted). A
/// `captured` connection waits for its first byte only as long as
/// protocol detection would.
async fn secure(stream: Conn, inbound: &Inbound, port: u16, captured: bool) -> Option<Accepted> {
    let mode = inbound.config.load().inbound().mode_for(port);
    let Some(tls) = &inbound.tls else {
        if mode == MtlsMode::Strict {
            inbound.warn_strict_without_identity();
        }
        return Some(Accepted::Plain(stream));
    };
    match handshake_for(mode, true) {
        Handshake::Plaintext => Some(Accepted::Plain(stream)),
        Handshake::Detect if captured => {
            let first =
                tokio::time::timeout(inbound.capture.silence, stream.get_ref().readable()).await;
            if first.is_err() {
                return Some(Accepted::Silent(stream));
            }
            if starts_with_tls(&stream).await? {
                tls_accept(stream, &tls.optional).await
            } else {
                Some(Accepted::Plain(stream))
            }
        }
        Handshake::Detect => {
            if starts_with_tls(&stream).await? {
                tls_accept(stream, &tls.optional).await
            } else {
                Some(Accepted::Plain(stream))
            }
        }
        Handshake::TlsRequired => {
            if starts_with_tls(&stream).await? {
                tls_accept(stream, &tls.required).await
            } else {
                tracing::debug!(
                    peer = ?stream.get_ref().peer_addr().ok(),
                    "plaintext connection refused: PeerAuthentication is STRICT"
                );
                tls_handshake_failed(Direction::Inbound);
                None
            }
        }
    }
}

/// Whether the connection's first byte starts a TLS handshake; the byte
/// stays in the socket. `None` when the client closes or stays silent.
async fn starts_with_tls(stream: &Conn) -> Option<bool> {
    let stream = stream.get_ref();
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(0)) => None,
        Ok(Ok(_)) => Some(first[0] == TLS_HANDSHAKE_RECORD),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "inbound connection failed before its first byte");
            None
        }
        Err(_) => {
            tracing::debug!(
                peer = ?stream.peer_addr().ok(),
                "inbound connection sent nothing within {HANDSHAKE_TIMEOUT:?}; closed"
            );
            None
        }
    }
}

async fn tls_accept(stream: Conn, config: &Arc<ServerConfig>) -> Option<Accepted> {
    let peer = stream.get_ref().peer_addr().ok();
    let accept = TlsAcceptor::from(Arc::clone(config)).accept(stream);
    let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(stream)) => return Some(Accepted::Tls(Box::new(stream))),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("not finished within {HANDSHAKE_TIMEOUT:?}"),
    };
    tracing::debug!(?peer, error, "inbound TLS handshake failed");
    tls_handshake_failed(Direction::Inbound);
    None
}

#[cfg(test)]
mod tests;
