//! The gRPC TLS port (15012): a server certificate for the control plane's own identity,
//! issued by its own CA and renewed half-way through its life, and the TLS handshakes in front
//! of tonic.
//!
//! Clients verify the server as `spiffe://<td>/ns/remora-system/sa/remora` against the trust
//! bundle (the certificate has that URI SAN and no DNS name); client certificates are optional
//! and, when sent, verified against the bundle and the trust domain, so that a proxy can renew
//! with the certificate it holds ([`super::IdentityService`]) and open its discovery stream as
//! the identity it proves ([`crate::discovery`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use remora_certs::{
    AllowedPeers, Ca, CaError, ClientAuth, MeshTls, SpiffeId, SpiffeIdError, Svid, TlsError,
    TrustBundle, TrustDomain, WorkloadKey,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::{CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before retrying a failed renewal of the server certificate.
const RENEWAL_RETRY: Duration = Duration::from_secs(30);

/// A bound TLS port with the control plane's server certificate, renewed in the background
/// for as long as this value lives.
#[derive(Debug)]
pub struct TlsPort {
    listener: TcpListener,
    tls: MeshTls,
    trust_domain: TrustDomain,
    renewal: AbortOnDrop,
}

impl TlsPort {
    /// Issues the control plane's server certificate from `ca`, valid for `lifetime`, and
    /// starts renewing it half-way through its life. Must run inside a tokio runtime.
    pub fn new(
        listener: TcpListener,
        ca: Arc<Ca>,
        lifetime: Duration,
    ) -> Result<Self, TlsPortError> {
        let bundle = TrustBundle::from_pem(&ca.trust_bundle_pem())?;
        let tls = MeshTls::new(bundle);
        tls.svid().store(issue_server_svid(&ca, lifetime)?);
        let trust_domain = ca.trust_domain().clone();
        let renewal = AbortOnDrop(tokio::spawn(renew(ca, tls.clone(), lifetime)));
        Ok(Self {
            listener,
            tls,
            trust_domain,
            renewal,
        })
    }

    /// The address the port is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The SPIFFE ID the server certificate carries: `spiffe://<td>/ns/remora-system/sa/remora`.
    pub fn server_id(&self) -> Option<SpiffeId> {
        self.tls.svid().load().map(|svid| svid.id().clone())
    }

    /// Accepts connections and completes TLS handshakes concurrently (a slow client holds up
    /// no one), yielding the established streams for tonic's `serve_with_incoming`. Accepting
    /// stops when the returned stream is dropped; renewal stops with it.
    pub fn incoming(
        self,
    ) -> Result<impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>>, TlsPortError> {
        // A client certificate, when sent, must be a workload of our own trust domain.
        let clients = AllowedPeers::trust_domain(self.trust_domain.clone());
        let acceptor = TlsAcceptor::from(self.tls.server_config(ClientAuth::Optional, clients)?);
        let (tx, rx) = mpsc::channel(64);
        let renewal = self.renewal;
        let listener = self.listener;
        tokio::spawn(async move {
            let _stop_renewal = renewal;
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = tx.closed() => return,
                };
                let (tcp, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "cannot accept on the gRPC TLS port");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// Why the TLS port's certificate or config could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsPortError {
    /// The trust domain does not make a valid control-plane SPIFFE ID.
    #[error("the control plane's own identity is invalid: {0}")]
    Identity(#[from] SpiffeIdError),
    /// The CA refused to sign the control plane's certificate.
    #[error("the CA cannot issue the control plane's own certificate: {0}")]
    Issue(#[from] CaError),
    /// The key, SVID, bundle or rustls config could not be made.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
}

/// The control plane's own SVID: a fresh key, and a leaf from its own CA.
fn issue_server_svid(ca: &Ca, lifetime: Duration) -> Result<Svid, TlsPortError> {
    let id = SpiffeId::workload(
        ca.trust_domain(),
        CONTROL_PLANE_NAMESPACE,
        CONTROL_PLANE_SERVICE_ACCOUNT,
    )?;
    let key = WorkloadKey::generate()?;
    let signed = ca.sign_csr(key.csr(&id)?.as_bytes(), &id, lifetime)?;
    Ok(key.certify(&signed.cert_chain_pem())?)
}

/// Renews the server certificate half-way through its life, forever.
async fn renew(ca: Arc<Ca>, tls: MeshTls, lifetime: Duration) {
    loop {
        let renew_at = tls
            .svid()
            .load()
            .map_or_else(SystemTime::now, |svid| svid.renew_at());
        let wait = renew_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        match issue_server_svid(&ca, lifetime) {
            Ok(svid) => {
                tracing::info!(not_after = ?svid.not_after(), "renewed the gRPC TLS certificate");
                tls.svid().store(svid);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot renew the gRPC TLS certificate; retrying");
                tokio::time::sleep(RENEWAL_RETRY).await;
            }
        }
    }
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
