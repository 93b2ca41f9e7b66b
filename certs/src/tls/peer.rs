//! A peer's SPIFFE identity: reading it from an X509-SVID, and deciding whether it is allowed.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, CommonState, OtherError};
use x509_parser::extensions::GeneralName;

use crate::encoding;
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// Why a peer's certificate does not prove an acceptable SPIFFE identity.
///
/// Inside a handshake, verifiers return it wrapped as
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`; recover it with
/// [`PeerIdentityError::from_rustls`].
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerIdentityError {
    /// The certificate does not parse.
    #[error("the peer certificate cannot be parsed: {reason}")]
    Malformed {
        /// What the X.509 parser said.
        reason: String,
    },
    /// No URI SAN at all.
    #[error("the peer certificate has no URI SAN; an X509-SVID carries exactly one SPIFFE ID")]
    NoUriSan,
    /// More than one URI SAN.
    #[error(
        "the peer certificate has {} URI SANs ({}); an X509-SVID carries exactly one",
        uris.len(),
        uris.join(", ")
    )]
    MultipleUriSans {
        /// The URI SANs found.
        uris: Vec<String>,
    },
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("the peer certificate's URI SAN is not a SPIFFE ID: {0}")]
    InvalidSpiffeId(SpiffeIdError),
    /// The SPIFFE ID names a trust domain, not a workload.
    #[error(
        "the peer certificate's SPIFFE ID {0} has no path; workload identities always have one"
    )]
    NotAWorkload(SpiffeId),
    /// A valid SPIFFE ID that is not among those allowed for this connection.
    #[error("peer identity {presented} is not allowed: expected {allowed}")]
    NotAllowed {
        /// The peer's identity.
        presented: SpiffeId,
        /// What this connection accepts.
        allowed: AllowedPeers,
    },
}

impl PeerIdentityError {
    /// Recovers the identity error from a rustls error made by this crate's verifiers.
    pub fn from_rustls(error: &rustls::Error) -> Option<&Self> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                other.0.downcast_ref::<Self>()
            }
            _ => None,
        }
    }
}

/// Debug shows the message: rustls formats `CertificateError::Other` with `{:?}`, so this is
/// what logs of a refused handshake say.
impl fmt::Debug for PeerIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerIdentityError({:?})", self.to_string())
    }
}

impl From<PeerIdentityError> for rustls::Error {
    fn from(error: PeerIdentityError) -> Self {
        // Sent to the peer as a bad_certificate alert.
        Self::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
    }
}

/// The peer identities a connection accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowedPeers {
    /// Exactly these identities (Istio's `subjectAltNames` of a destination).
    Ids(BTreeSet<SpiffeId>),
    /// Any workload identity in this trust domain (what Istio checks when a destination has no
    /// SAN list). The chain to the trust bundle is checked either way.
    TrustDomain(TrustDomain),
}

impl AllowedPeers {
    /// Accepts exactly these identities.
    pub fn ids(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self::Ids(ids.into_iter().collect())
    }

    /// Accepts any workload of `trust_domain`.
    pub fn trust_domain(trust_domain: TrustDomain) -> Self {
        Self::TrustDomain(trust_domain)
    }

    /// Whether nothing at all is allowed (an empty ID set).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Ids(ids) if ids.is_empty())
    }

    /// Checks a peer's identity against this set.
    pub fn check(&self, id: &SpiffeId) -> Result<(), PeerIdentityError> {
        let allowed = match self {
            Self::Ids(ids) => ids.contains(id),
            Self::TrustDomain(td) => id.trust_domain_name() == td.as_str(),
        };
        if allowed {
            Ok(())
        } else {
            Err(PeerIdentityError::NotAllowed {
                presented: id.clone(),
                allowed: self.clone(),
            })
        }
    }
}

impl fmt::Display for AllowedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ids(ids) if ids.is_empty() => f.write_str("no identity at all"),
            Self::Ids(ids) if ids.len() == 1 => f.write_str(&join(ids)),
            Self::Ids(ids) => write!(f, "one of {}", join(ids)),
            Self::TrustDomain(td) => write!(f, "a workload of trust domain {td}"),
        }
    }
}

fn join(ids: &BTreeSet<SpiffeId>) -> String {
    let ids: Vec<&str> = ids.iter().map(SpiffeId::as_str).collect();
    ids.join(", ")
}

/// When a certificate stops being valid (its `notAfter`).
pub fn not_after_of(cert: &CertificateDer<'_>) -> Result<std::time::SystemTime, PeerIdentityError> {
    let x509 =
        encoding::parse_x509(cert).map_err(|reason| PeerIdentityError::Malformed { reason })?;
    let secs = x509.validity().not_after.timestamp();
    let secs = u64::try_from(secs).unwrap_or(0);
    Ok(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Reads the SPIFFE ID of an X509-SVID leaf: its one URI SAN, a SPIFFE ID with a path.
///
/// Checks the certificate's content only; whether it chains to a trusted root is the
/// verifiers' business.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, PeerIdentityError> {
    let x509 =
        encoding::parse_x509(cert).map_err(|reason| PeerIdentityError::Malformed { reason })?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| PeerIdentityError::Malformed {
            reason: e.to_string(),
        })?;
    let mut uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| &ext.value.general_names)
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    let uri = match uris.len() {
        0 => return Err(PeerIdentityError::NoUriSan),
        1 => uris.remove(0),
        _ => {
            return Err(PeerIdentityError::MultipleUriSans {
                uris: uris.into_iter().map(str::to_owned).collect(),
            });
        }
    };
    let id = SpiffeId::parse(uri).map_err(PeerIdentityError::InvalidSpiffeId)?;
    if id.is_trust_domain_id() {
        return Err(PeerIdentityError::NotAWorkload(id));
    }
    Ok(id)
}

/// The peer's SPIFFE ID once a handshake is done, from a `ClientConnection` or
/// `ServerConnection` (both deref to [`CommonState`]); `None` when the peer sent no certificate.
///
/// Call it only on connections made with this crate's configs, whose verifiers have already
/// checked the chain and the identity.
pub fn peer_identity(conn: &CommonState) -> Option<SpiffeId> {
    spiffe_id_of(conn.peer_certificates()?.first()?).ok()
}
