//! The identity service: the control plane's CA signs workloads' CSRs into short-lived
//! X509-SVIDs (`remora.identity.v1.Identity/Sign`, see `proto/identity.proto`).
//!
//! A proxy makes its private key in memory and sends only a CSR for
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`; the key never leaves it.
//! The caller is authenticated, in this order:
//!
//! 1. by the request's bootstrap token ([`crate::token`]): the identity the token names. A token
//!    that is present but malformed, forged, altered or expired is refused, whatever else the
//!    caller presents. A single-use token is refused the second time
//!    ([`crate::token::UsedTokens`]), unless the caller also presents, on the TLS port, a
//!    certificate for the same identity: that is a renewal, which the certificate suffices for;
//! 2. with an empty token, on the TLS port, by the client certificate of the handshake (already
//!    verified against the trust bundle): renewal with a certificate that is still valid;
//! 3. otherwise not at all: `UNAUTHENTICATED`.
//!
//! The CSR must then ask for exactly that identity ([`Ca::sign_csr`] checks it). The leaf is
//! valid for the requested lifetime, at most `--cert-lifetime` (24 h by default).
//!
//! The service is served on both gRPC ports next to Discovery ([`crate::grpc`]): the plaintext
//! one, because a proxy's first CSR has to go somewhere before the proxy has any certificate,
//! and the TLS one ([`TlsPort`]), where the token does not travel in clear and renewals can
//! authenticate with the current certificate.

mod args;
mod tls_port;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use remora_certs::{Ca, CaError, PeerIdentityError, SpiffeId, SpiffeIdError, spiffe_id_of};
use remora_proto::pb::identity::identity_server::Identity;
use remora_proto::pb::identity::{SignRequest, SignResponse};
use serde_json::json;
use tonic::{Code, Request, Response, Status};

pub use args::{DEFAULT_DATA_DIR, IdentityArgs, IdentitySetup, StartError, TokenCommand};
pub use tls_port::{TlsPort, TlsPortError};

use crate::events::emit;
use crate::metrics::Metrics;
use crate::token::{TokenError, TokenKey, UsedTokenError, UsedTokens};

/// Default (and maximum) lifetime of a workload certificate: 24 hours.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The namespace of the control plane's own identity.
pub const CONTROL_PLANE_NAMESPACE: &str = "remora-system";
/// The service account of the control plane's own identity.
pub const CONTROL_PLANE_SERVICE_ACCOUNT: &str = "remora";

/// The gRPC `remora.identity.v1.Identity` service. Clones share one CA.
#[derive(Debug, Clone)]
pub struct IdentityService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ca: Arc<Ca>,
    tokens: TokenKey,
    max_lifetime: Duration,
    /// The TLS port's number, sent with every certificate.
    tls_port: u16,
    metrics: Metrics,
    /// The single-use tokens used so far; `None`: single-use tokens are refused.
    used: Option<UsedTokens>,
}

/// Who the caller proved to be, and how.
struct Caller {
    id: SpiffeId,
    via: &'static str,
    /// A single-use token to mark used once the certificate is signed: its ID and expiry.
    single_use: Option<(String, u64)>,
}

impl IdentityService {
    /// A service signing with `ca`, accepting tokens made with `tokens`, issuing leaves valid
    /// for at most `max_lifetime` (also the lifetime when a request asks for none), telling
    /// proxies that the TLS port is `tls_port`, and counting every certificate signed in
    /// `metrics`.
    pub fn new(
        ca: Arc<Ca>,
        tokens: TokenKey,
        max_lifetime: Duration,
        tls_port: u16,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ca,
                tokens,
                max_lifetime,
                tls_port,
                metrics,
                used: None,
            }),
        }
    }

    /// The same service, remembering single-use tokens in `used`. Call it before the service
    /// is cloned (it is a no-op on a shared one).
    pub fn with_used_tokens(mut self, used: UsedTokens) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.used = Some(used);
        }
        self
    }

    /// The CA this service signs with.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.inner.ca
    }

    /// Authenticates and signs one request; `peer` is the identity of the TLS client
    /// certificate, if the request came over TLS with one.
    pub fn sign_request(
        &self,
        request: &SignRequest,
        peer: Option<&SpiffeId>,
    ) -> Result<SignResponse, SignError> {
        let Caller {
            id: allowed,
            via,
            single_use,
        } = self.authenticate(&request.token, peer)?;
        let lifetime = self.lifetime(request.requested_lifetime_seconds);
        let signed = self
            .inner
            .ca
            .sign_csr(request.csr_pem.as_bytes(), &allowed, lifetime)
            .map_err(SignError::Refused)?;
        // Marked used only for a certificate actually issued: a refused CSR does not burn the
        // token. Of two racing requests with one token, the second is refused here.
        if let Some((token_id, expires)) = single_use {
            let used = self
                .inner
                .used
                .as_ref()
                .ok_or(SignError::SingleUseUnsupported)?;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            used.claim(&token_id, expires, now)
                .map_err(SignError::UsedToken)?;
        }
        // The hook for `remora_certificates_signed_total`.
        self.inner.metrics.certificate_signed();
        let not_after_unix = signed
            .not_after()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        emit(
            "signed",
            json!({
                "spiffe_id": allowed.as_str(),
                "not_after_unix": not_after_unix,
                "via": via,
            }),
        );
        tracing::info!(spiffe_id = %allowed, not_after_unix, via, "signed a certificate");
        Ok(SignResponse {
            cert_chain_pem: signed.cert_chain_pem(),
            trust_bundle_pem: self.inner.ca.trust_bundle_pem(),
            not_after_unix,
            spiffe_id: allowed.as_str().to_owned(),
            tls_port: u32::from(self.inner.tls_port),
        })
    }

    /// The identity the caller may have, and how it was established ("token" or
    /// "certificate").
    fn authenticate(&self, token: &str, peer: Option<&SpiffeId>) -> Result<Caller, SignError> {
        if !token.trim().is_empty() {
            let identity = self
                .inner
                .tokens
                .verify(token, SystemTime::now())
                .map_err(SignError::Token)?;
            let id = identity
                .spiffe_id(self.inner.ca.trust_domain())
                .map_err(SignError::TokenIdentity)?;
            let single_use = match (identity.single_use_id(), identity.expires_unix()) {
                // A renewal that also sends the token: the certificate is enough.
                (Some(_), _) if peer == Some(&id) => None,
                (Some(token_id), Some(expires)) => Some((token_id.to_owned(), expires)),
                _ => None,
            };
            let via = match (&single_use, identity.single_use_id()) {
                (Some(_), _) => "single-use token",
                (None, Some(_)) => "certificate",
                (None, None) => "token",
            };
            return Ok(Caller {
                id,
                via,
                single_use,
            });
        }
        match peer {
            Some(id) => Ok(Caller {
                id: id.clone(),
                via: "certificate",
                single_use: None,
            }),
            None => Err(SignError::NoCredentials),
        }
    }

    /// 0 means the maximum; anything longer is cut to it.
    fn lifetime(&self, requested_secs: u64) -> Duration {
        match requested_secs {
            0 => self.inner.max_lifetime,
            secs => Duration::from_secs(secs).min(self.inner.max_lifetime),
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn sign(&self, request: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let remote = request.remote_addr();
        let peer = match request.peer_certs() {
            Some(certs) => match certs.first().map(spiffe_id_of) {
                Some(Ok(id)) => Some(id),
                Some(Err(e)) => return Err(SignError::PeerCertificate(e).into()),
                None => None,
            },
            None => None,
        };
        self.sign_request(request.get_ref(), peer.as_ref())
            .map(Response::new)
            .map_err(|error| {
                tracing::warn!(?remote, %error, "refused a certificate request");
                error.into()
            })
    }
}

/// Why a certificate request was refused. Each maps to one gRPC status code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// No token, and no client certificate either.
    #[error(
        "no credentials: send the bootstrap token from `remora token create`, or, to renew, \
         connect to the TLS port with the current certificate"
    )]
    NoCredentials,
    /// The token is malformed, forged, altered or expired.
    #[error("{0}")]
    Token(TokenError),
    /// The token's fields do not make a SPIFFE ID in this trust domain.
    #[error("the bootstrap token names no valid identity: {0}")]
    TokenIdentity(SpiffeIdError),
    /// The TLS client certificate is not an SVID (cannot happen after the handshake's checks).
    #[error("the client certificate is not an X509-SVID: {0}")]
    PeerCertificate(PeerIdentityError),
    /// The CA refused the CSR: another identity, a bad signature, or not a CSR.
    #[error("certificate refused: {0}")]
    Refused(CaError),
    /// A single-use token used before, or the record of used ones failed.
    #[error("{0}")]
    UsedToken(UsedTokenError),
    /// A single-use token, and this CA keeps no record of used ones.
    #[error("this CA does not accept single-use tokens (it keeps no record of used ones)")]
    SingleUseUnsupported,
}

impl SignError {
    /// The gRPC status code for this refusal.
    pub fn code(&self) -> Code {
        match self {
            Self::NoCredentials => Code::Unauthenticated,
            Self::Token(e) if e.is_malformed() => Code::InvalidArgument,
            Self::Token(_) | Self::PeerCertificate(_) => Code::PermissionDenied,
            Self::TokenIdentity(_) => Code::InvalidArgument,
            Self::UsedToken(UsedTokenError::AlreadyUsed { .. }) => Code::PermissionDenied,
            Self::UsedToken(UsedTokenError::Full) => Code::ResourceExhausted,
            Self::UsedToken(_) => Code::Internal,
            Self::SingleUseUnsupported => Code::FailedPrecondition,
            Self::Refused(e) => match e {
                CaError::IdentityMismatch { .. }
                | CaError::UnsupportedSan { .. }
                | CaError::ForeignTrustDomain { .. }
                | CaError::NotAWorkload { .. } => Code::PermissionDenied,
                CaError::BadCsr { .. } | CaError::CsrSignature | CaError::Pem(_) => {
                    Code::InvalidArgument
                }
                _ => Code::Internal,
            },
        }
    }
}

impl From<SignError> for Status {
    fn from(error: SignError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests;
