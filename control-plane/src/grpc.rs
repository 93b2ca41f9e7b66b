//! The control plane's two gRPC ports, each serving Discovery and Identity:
//!
//! - plaintext (`--grpc-addr`, 15010): what proxies use today, and where a proxy that has no
//!   trust bundle yet can get its first certificate;
//! - TLS (`--grpc-tls-addr`, 15012): the server proves it is
//!   `spiffe://<td>/ns/remora-system/sa/remora`; a client certificate is optional and, when
//!   sent, authenticates certificate renewals.

use std::future::Future;

use futures_util::FutureExt;
use remora_proto::pb::identity::identity_server::IdentityServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::transport::server::Router;

use crate::discovery::{DiscoveryServer, DiscoveryService};
use crate::identity::{IdentityService, TlsPort, TlsPortError};

/// Serves Discovery and Identity on `plaintext` and on `tls` until `shutdown` completes, then
/// lets open streams end and returns.
pub async fn serve(
    plaintext: TcpListener,
    tls: TlsPort,
    discovery: DiscoveryService,
    identity: IdentityService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let shutdown = shutdown.boxed().shared();
    let tls_incoming = tls.incoming()?;
    let plaintext = router(discovery.clone(), identity.clone())
        .serve_with_incoming_shutdown(TcpListenerStream::new(plaintext), shutdown.clone());
    let tls = router(discovery, identity).serve_with_incoming_shutdown(tls_incoming, shutdown);
    tokio::try_join!(plaintext, tls)?;
    Ok(())
}

/// Both services behind one tonic server, with the keepalive that `discovery::serve_service`
/// uses: a proxy that vanished without closing its stream is noticed within 15 s.
fn router(discovery: DiscoveryService, identity: IdentityService) -> Router {
    Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .add_service(DiscoveryServer::new(discovery))
        .add_service(IdentityServer::new(identity))
}

/// Connections waiting to be accepted, per gRPC port: the most Linux allows
/// by default (`net.core.somaxconn`). Tokio's default, 1,024, is reached
/// when thousands of proxies reconnect at once (a control plane restart),
/// and the kernel then resets connections instead of queueing them.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a gRPC port with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Why the gRPC servers stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The TLS port's rustls config could not be made.
    #[error(transparent)]
    Tls(#[from] TlsPortError),
    /// A tonic server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}
