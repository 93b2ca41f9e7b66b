//! mTLS to peer proxies: one multiplexed HTTP/2 connection per endpoint,
//! opened with the cluster's client config and pooled with the SPIFFE ID
//! the peer proved in its handshake.
//!
//! HTTP/1.1 requests from the app travel over it too, converted by
//! [`crate::listener::orig_proto`] before [`Endpoint::send`].

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::TokioIo;
use remora_certs::{AllowedPeers, MeshTls, PeerIdentityError, SpiffeId, TlsError, peer_identity};
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, ClientConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::replay::RequestBody;
use super::endpoint::Endpoint;
use super::pool::{PoolSettings, UpstreamError};
use crate::telemetry::Direction;
use crate::telemetry::stats::tls_handshake_failed;

/// How a request reaches an endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Transport<'a> {
    /// Plain TCP, in the protocol the request came in.
    Plaintext,
    /// mTLS and HTTP/2, with the cluster's client config.
    Mtls(&'a MtlsClient),
}

/// A cluster's mTLS client side, built once per snapshot.
#[derive(Debug, Clone)]
pub enum MtlsClient {
    /// The proxy has an identity: connect with `config`, which accepts the
    /// peers in `allowed` (the SPIFFE IDs of the cluster's mTLS endpoints).
    Ready {
        /// The rustls config, its verifier checking `allowed`.
        config: Arc<ClientConfig>,
        /// The identities the cluster's endpoints may present.
        allowed: AllowedPeers,
    },
    /// The snapshot says mTLS but this proxy has no identity: every request
    /// fails with [`TlsFailure::NoIdentity`].
    NoIdentity,
}

impl MtlsClient {
    /// The client side for peers in `allowed`, with the proxy's TLS state if
    /// it has one.
    pub fn new(mesh_tls: Option<&MeshTls>, allowed: AllowedPeers) -> Result<Self, TlsError> {
        Ok(match mesh_tls {
            Some(tls) => Self::Ready {
                config: tls.client_config(allowed.clone())?,
                allowed,
            },
            None => Self::NoIdentity,
        })
    }
}

/// Why an mTLS connection to a peer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The endpoint wants mTLS and this proxy has no identity.
    #[error("this proxy has no identity")]
    NoIdentity,
    /// The peer's certificate chains to the bundle but does not carry an
    /// acceptable identity (e.g. a SPIFFE ID outside the allowed set).
    #[error("{0}")]
    PeerIdentity(PeerIdentityError),
    /// Any other handshake failure: an untrusted chain, an alert, a reset.
    #[error("{reason}; expected {expected}")]
    Handshake {
        /// What went wrong.
        reason: String,
        /// The identities the cluster accepts.
        expected: AllowedPeers,
    },
    /// The handshake did not finish within the connect timeout.
    #[error("the TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    /// The peer ended the connection with a fatal alert right after the
    /// handshake. In TLS 1.3 the client's handshake is over before the
    /// server has checked the client's certificate, so this is how a
    /// server's refusal of our certificate arrives: on the first read.
    #[error(
        "the peer refused our certificate: it sent alert {0:?} as the handshake ended; \
         does it trust the CA that issued ours?"
    )]
    RefusedOurCertificate(rustls::AlertDescription),
    /// The peer did not agree to HTTP/2 over ALPN.
    #[error("the peer negotiated ALPN {0} instead of h2")]
    Alpn(String),
}

/// The text of [`UpstreamError::Tls`].
pub(super) fn tls_message(address: &str, failure: &TlsFailure) -> String {
    match failure {
        TlsFailure::NoIdentity => {
            format!("mTLS required to reach {address} but this proxy has no identity")
        }
        _ => format!("mTLS handshake with {address} failed: {failure}"),
    }
}

/// The pooled mTLS connection of an endpoint and who is on the other side.
#[derive(Debug)]
pub(super) struct MtlsH2 {
    sender: http2::SendRequest<RequestBody>,
    peer: SpiffeId,
    /// The fatal alert that ended the connection, if one did.
    alert: PeerAlert,
}

impl MtlsH2 {
    /// What a request needs: the sender, and where a refusal is noted
    /// (not the peer's ID, which would be a string copied per request).
    fn for_request(&self) -> (http2::SendRequest<RequestBody>, PeerAlert) {
        (self.sender.clone(), Arc::clone(&self.alert))
    }
}

/// Where an mTLS connection notes the fatal alert its peer sent.
pub(super) type PeerAlert = Arc<OnceLock<AlertDescription>>;

impl Endpoint {
    /// The shared mTLS connection, (re)connected when absent, closed, or
    /// `fresh` is asked. A connection opened for a cluster with another
    /// allowed set is reused only if its peer is in `allowed` too;
    /// otherwise a new handshake decides (and, if it succeeds, its
    /// connection replaces the pooled one).
    pub(super) async fn mtls_sender(
        &self,
        settings: &PoolSettings,
        client: &MtlsClient,
        fresh: bool,
    ) -> Result<(http2::SendRequest<RequestBody>, PeerAlert), UpstreamError> {
        let MtlsClient::Ready { config, allowed } = client else {
            return Err(self.tls_error(TlsFailure::NoIdentity));
        };
        let mut slot = self.connections.h2_mtls.lock().await;
        if let Some(conn) = slot
            .as_ref()
            .filter(|c| !fresh && !c.sender.is_closed() && allowed.check(&c.peer).is_ok())
        {
            return Ok(conn.for_request());
        }
        // Boxed: the handshakes' state is large, and most requests find a
        // connection; every request's future is moved whole, so it stays small.
        let conn = Box::pin(self.open_mtls(settings, config, allowed)).await?;
        let for_request = conn.for_request();
        *slot = Some(conn);
        Ok(for_request)
    }

    /// A new mTLS connection: a connection slot, TCP, TLS, then the h2
    /// handshake.
    async fn open_mtls(
        &self,
        settings: &PoolSettings,
        config: &Arc<ClientConfig>,
        allowed: &AllowedPeers,
    ) -> Result<MtlsH2, UpstreamError> {
        let conn_slot = self.new_slot(settings).await?;
        let (io, peer) = self.connect_mtls(settings, config, allowed).await?;
        let io = AlertWatch::new(io);
        let alert = Arc::clone(&io.alert);
        let sender = match self.h2_handshake(TokioIo::new(io), conn_slot).await {
            Ok(sender) => sender,
            Err(e) => return Err(self.refused_by_peer(&alert).unwrap_or(e)),
        };
        Ok(MtlsH2 {
            sender,
            peer,
            alert,
        })
    }

    /// TCP connect, TLS handshake bounded by the connect timeout, then the
    /// checks rustls leaves to us: ALPN h2 and a peer identity.
    async fn connect_mtls(
        &self,
        settings: &PoolSettings,
        config: &Arc<ClientConfig>,
        allowed: &AllowedPeers,
    ) -> Result<(TlsStream<TcpStream>, SpiffeId), UpstreamError> {
        let tcp = self.connect_tcp(settings).await?.into_inner();
        let ip = tcp.peer_addr().map_err(|source| UpstreamError::Connect {
            address: self.address().to_owned(),
            source,
        })?;
        // The verifier ignores the name; an IP keeps SNI off the wire.
        let name = ServerName::IpAddress(ip.ip().into());
        let handshake = TlsConnector::from(Arc::clone(config)).connect(name, tcp);
        let stream = match tokio::time::timeout(settings.connect_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(self.handshake_failed(classify(&e, allowed))),
            Err(_) => {
                return Err(self.handshake_failed(TlsFailure::Timeout(settings.connect_timeout)));
            }
        };
        let conn = stream.get_ref().1;
        match conn.alpn_protocol() {
            Some(b"h2") => {}
            other => {
                let got = other.map_or_else(
                    || "(none)".to_owned(),
                    |p| String::from_utf8_lossy(p).into_owned(),
                );
                return Err(self.handshake_failed(TlsFailure::Alpn(got)));
            }
        }
        let Some(peer) = peer_identity(conn) else {
            return Err(self.handshake_failed(TlsFailure::Handshake {
                reason: "the peer presented no SPIFFE identity".to_owned(),
                expected: allowed.clone(),
            }));
        };
        Ok((stream, peer))
    }

    /// What a request failing on an mTLS connection comes to when the
    /// peer's `alert` ended that connection:
    /// [`TlsFailure::RefusedOurCertificate`]; `None` if no alert came.
    pub(super) fn refused_by_peer(&self, alert: &PeerAlert) -> Option<UpstreamError> {
        let alert = *alert.get()?;
        Some(self.handshake_failed(TlsFailure::RefusedOurCertificate(alert)))
    }

    fn handshake_failed(&self, failure: TlsFailure) -> UpstreamError {
        tls_handshake_failed(Direction::Outbound);
        tracing::debug!(endpoint = self.address(), error = %failure, "mTLS handshake failed");
        self.tls_error(failure)
    }

    fn tls_error(&self, failure: TlsFailure) -> UpstreamError {
        UpstreamError::Tls {
            address: self.address().to_owned(),
            failure,
        }
    }
}

/// An mTLS connection's stream that notes a fatal alert the peer sends
/// before any data: a refusal of our certificate. hyper's HTTP/2 keeps only
/// the text of the I/O error that ends a connection, so a request failing on
/// it learns the alert from here. An alert after data (the peer's SETTINGS
/// come first) is something else, and left to the generic error.
struct AlertWatch {
    inner: TlsStream<TcpStream>,
    alert: PeerAlert,
    /// Whether any data came from the peer.
    answered: bool,
}

impl AlertWatch {
    fn new(inner: TlsStream<TcpStream>) -> Self {
        Self {
            inner,
            alert: PeerAlert::default(),
            answered: false,
        }
    }

    fn note<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &result
            && !self.answered
            && let Some(rustls::Error::AlertReceived(alert)) =
                e.get_ref().and_then(|inner| inner.downcast_ref())
        {
            let _ = self.alert.set(*alert);
        }
        result
    }
}

impl AsyncRead for AlertWatch {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.answered && buf.filled().len() > before {
            self.answered = true;
        }
        self.note(result)
    }
}

impl AsyncWrite for AlertWatch {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What tokio-rustls's error says: our verifier's identity error when it
/// refused the peer, rustls's error otherwise, else the I/O error.
fn classify(e: &std::io::Error, allowed: &AllowedPeers) -> TlsFailure {
    let handshake = |reason: String| TlsFailure::Handshake {
        reason,
        expected: allowed.clone(),
    };
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return handshake(e.to_string());
    };
    if let Some(id) = PeerIdentityError::from_rustls(tls) {
        return TlsFailure::PeerIdentity(id.clone());
    }
    match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => handshake("the peer's certificate does not chain to the trust bundle".to_owned()),
        rustls::Error::AlertReceived(alert) => {
            handshake(format!("the peer refused the handshake (alert {alert:?})"))
        }
        other => handshake(other.to_string()),
    }
}
