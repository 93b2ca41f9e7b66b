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
use remora_certs::{AllowedPeers, MeshTls, PeerIdentityError, SpiffeId, TlsError};
use rustls::{AlertDescription, CertificateError, ClientConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::replay::RequestBody;

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
    pub(super) sender: http2::SendRequest<RequestBody>,
    pub(super) peer: SpiffeId,
    /// The fatal alert that ended the connection, if one did.
    pub(super) alert: PeerAlert,
}

impl MtlsH2 {
    /// What a request needs: the sender, and where a refusal is noted
    /// (not the peer's ID, which would be a string copied per request).
    pub(super) fn for_request(&self) -> (http2::SendRequest<RequestBody>, PeerAlert) {
        (self.sender.clone(), Arc::clone(&self.alert))
    }
}

/// Where an mTLS connection notes the fatal alert its peer sent.
pub(super) type PeerAlert = Arc<OnceLock<AlertDescription>>;

/// An mTLS connection's stream that notes a fatal alert the peer sends
/// before any data: a refusal of our certificate. hyper's HTTP/2 keeps only
/// the text of the I/O error that ends a connection, so a request failing on
/// it learns the alert from here. An alert after data (the peer's SETTINGS
/// come first) is something else, and left to the generic error.
pub(super) struct AlertWatch {
    inner: TlsStream<TcpStream>,
    pub(super) alert: PeerAlert,
    /// Whether any data came from the peer.
    answered: bool,
}

impl AlertWatch {
    pub(super) fn new(inner: TlsStream<TcpStream>) -> Self {
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
pub(super) fn classify(e: &std::io::Error, allowed: &AllowedPeers) -> TlsFailure {
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
