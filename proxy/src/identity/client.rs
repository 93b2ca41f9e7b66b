//! The proxy's side of the `Sign` RPC: one fresh connection per call, plaintext or TLS.
//!
//! A new connection per call is deliberate: the TLS client certificate is chosen at the
//! handshake, so a renewal must handshake with the SVID current at that moment (a pooled
//! connection would still carry the one from bootstrap, or none). Calls are rare.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use remora_certs::{AllowedPeers, MeshTls, SpiffeId, TrustBundle, TrustDomain};
use remora_proto::pb::identity::identity_client::IdentityClient;
use remora_proto::pb::identity::{SignRequest, SignResponse};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::identity::args::CaAddress;
use remora_proto::error_chain;

/// Namespace and service account of the control plane's own identity, which its TLS port
/// presents: `spiffe://<td>/ns/remora-system/sa/remora`.
pub(crate) const CONTROL_PLANE_NAMESPACE: &str = "remora-system";
/// See [`CONTROL_PLANE_NAMESPACE`].
pub(crate) const CONTROL_PLANE_SERVICE_ACCOUNT: &str = "remora";

/// Connecting, the handshake and the call together take at most this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a `Sign` call brought no certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The CA answered and said no: the credentials or the CSR are not acceptable. Asking
    /// again the same way will not help.
    #[error("the CA refused: {message} ({code:?})")]
    Refused {
        /// The gRPC status code (`PermissionDenied`, `InvalidArgument`, `Unauthenticated`…).
        code: Code,
        /// The CA's message, as sent.
        message: String,
    },
    /// The CA could not be reached or did not answer (connection, TLS handshake, timeout,
    /// transport error): worth retrying.
    #[error("cannot reach the CA at {address}: {reason}")]
    Unreachable {
        /// `host:port` dialled.
        address: String,
        /// What failed.
        reason: String,
    },
    /// The CA answered with something this proxy cannot use (wrong identity, a chain not for
    /// our key, an unusable bundle).
    #[error("the CA's answer is unusable: {0}")]
    BadResponse(String),
    /// The key or CSR could not be made.
    #[error("cannot make a key and CSR: {0}")]
    Local(String),
}

impl SignError {
    /// Whether the CA itself refused (as opposed to not being reachable).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }

    fn from_status(status: &tonic::Status, address: &CaAddress) -> Self {
        match status.code() {
            Code::PermissionDenied
            | Code::InvalidArgument
            | Code::Unauthenticated
            | Code::FailedPrecondition => Self::Refused {
                code: status.code(),
                message: status.message().to_owned(),
            },
            _ => Self::Unreachable {
                address: address.to_string(),
                reason: format!("{:?}: {}", status.code(), status.message()),
            },
        }
    }
}

/// Something that signs CSRs: the control plane's CA over gRPC ([`CaClient`]), or an
/// in-memory CA in tests.
pub(crate) trait Signer: Send + Sync + 'static {
    /// Sends one `Sign` request. `present_svid`: over TLS, present the workload's current SVID
    /// as the client certificate (false once it has expired, since the CA would refuse the
    /// handshake).
    fn sign(
        &self,
        request: SignRequest,
        present_svid: bool,
    ) -> impl Future<Output = Result<SignResponse, SignError>> + Send;

    /// Whether this signer can authenticate with the SVID (TLS), not only with the token.
    fn can_present_svid(&self) -> bool;
}

/// The control plane's identity service.
#[derive(Debug, Clone)]
pub(crate) struct CaClient {
    address: CaAddress,
    tls: Option<CaTls>,
}

#[derive(Debug, Clone)]
struct CaTls {
    /// The workload's mTLS state: its bundle verifies the control plane, its SVID (once there
    /// is one) is presented.
    mesh: MeshTls,
    /// Built once over `mesh`, which it reads at every handshake.
    config: Arc<ClientConfig>,
    control_plane: SpiffeId,
}

impl CaClient {
    /// A plaintext client: the token travels in clear.
    pub(crate) fn plaintext(address: CaAddress) -> Self {
        Self { address, tls: None }
    }

    /// A TLS client verifying the control plane's identity in `trust_domain` against `mesh`'s
    /// trust bundle and presenting `mesh`'s SVID.
    pub(crate) fn tls(
        address: CaAddress,
        mesh: MeshTls,
        trust_domain: &TrustDomain,
    ) -> Result<Self, remora_certs::TlsError> {
        let control_plane = control_plane_id(trust_domain);
        let config = mesh.client_config(AllowedPeers::ids([control_plane.clone()]))?;
        Ok(Self {
            address,
            tls: Some(CaTls {
                mesh,
                config,
                control_plane,
            }),
        })
    }

    /// The address dialled.
    pub(crate) fn address(&self) -> &CaAddress {
        &self.address
    }

    async fn channel(&self, present_svid: bool) -> Result<Channel, SignError> {
        let unreachable = |reason: String| SignError::Unreachable {
            address: self.address.to_string(),
            reason,
        };
        let Some(tls) = &self.tls else {
            return Endpoint::from_shared(format!("http://{}", self.address))
                .map_err(|e| unreachable(e.to_string()))?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| unreachable(error_chain(&e)));
        };
        let config = if present_svid {
            Arc::clone(&tls.config)
        } else {
            // Same bundle, no client certificate.
            let bundle = TrustBundle::from_der(tls.mesh.trust_bundle().load().certs().to_vec())
                .map_err(|e| SignError::Local(e.to_string()))?;
            MeshTls::new(bundle)
                .client_config(AllowedPeers::ids([tls.control_plane.clone()]))
                .map_err(|e| SignError::Local(e.to_string()))?
        };
        tls_channel(
            Endpoint::from_static("http://identity.remora.invalid"),
            &self.address,
            config,
        )
        .await
        .map_err(|e| unreachable(error_chain(&e)))
    }
}

/// A gRPC channel to the control plane's TLS port at `address`, connected now with `config`
/// (which verifies the control plane and, if it has one, presents the workload's SVID as the
/// handshake happens). `endpoint` carries the channel settings; its URI is not dialled.
pub(crate) async fn tls_channel(
    endpoint: Endpoint,
    address: &CaAddress,
    config: Arc<ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let connector = TlsConnector::from(config);
    let target = address.to_string();
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let target = target.clone();
            async move {
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                // SPIFFE peers are checked by URI SAN, not by name: give the IP, which also
                // keeps SNI off the wire.
                let server = ServerName::IpAddress(tcp.peer_addr()?.ip().into());
                let tls = connector.connect(server, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
}

impl Signer for CaClient {
    async fn sign(
        &self,
        request: SignRequest,
        present_svid: bool,
    ) -> Result<SignResponse, SignError> {
        let call = async {
            let channel = self.channel(present_svid).await?;
            IdentityClient::new(channel)
                .sign(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| SignError::from_status(&status, &self.address))
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| {
                Err(SignError::Unreachable {
                    address: self.address.to_string(),
                    reason: format!("no answer within {CALL_TIMEOUT:?}"),
                })
            })
    }

    fn can_present_svid(&self) -> bool {
        self.tls.is_some()
    }
}

/// How a proxy that got its first certificate over plaintext renews: over the control plane's
/// TLS port, which the bundle that came with that certificate verifies, presenting the
/// certificate. A token that expires, or travels in clear, then no longer matters after
/// bootstrap.
///
/// Only while the TLS port cannot be reached (a firewall that lets 15010 through and not
/// 15012, say) does a renewal go over plaintext with the token, with a `warning` event each
/// time: losing the identity at expiry would be worse.
#[derive(Debug)]
pub(crate) struct RenewOverTls {
    tls: CaClient,
    plaintext: CaClient,
}

impl RenewOverTls {
    /// Renewals over `tls`, over `plaintext` while `tls` is unreachable.
    pub(crate) fn new(tls: CaClient, plaintext: CaClient) -> Self {
        Self { tls, plaintext }
    }
}

impl Signer for RenewOverTls {
    async fn sign(
        &self,
        request: SignRequest,
        present_svid: bool,
    ) -> Result<SignResponse, SignError> {
        let error = match self.tls.sign(request.clone(), present_svid).await {
            Err(error @ SignError::Unreachable { .. }) if !request.token.is_empty() => error,
            other => return other,
        };
        let message = format!(
            "{error}; renewing over plaintext at {} instead, the token in clear",
            self.plaintext.address()
        );
        tracing::warn!("{message}");
        crate::events::emit("warning", &[("message", &message)]);
        self.plaintext.sign(request, false).await
    }

    fn can_present_svid(&self) -> bool {
        true
    }
}

/// `spiffe://<td>/ns/remora-system/sa/remora`.
pub(crate) fn control_plane_id(trust_domain: &TrustDomain) -> SpiffeId {
    // Two constant, valid segments and an already validated trust domain.
    SpiffeId::workload(
        trust_domain,
        CONTROL_PLANE_NAMESPACE,
        CONTROL_PLANE_SERVICE_ACCOUNT,
    )
    .unwrap_or_else(|_| trust_domain.id())
}
