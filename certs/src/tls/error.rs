//! What can go wrong on the workload side: keys, SVIDs, trust bundles and rustls configs.

use crate::encoding::PemError;
use crate::tls::peer::PeerIdentityError;

/// Why a workload key, SVID, trust bundle or TLS config could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Key generation or CSR encoding failed.
    #[error("cannot make the {what}: {reason}")]
    Generate {
        /// "key pair" or "CSR".
        what: &'static str,
        /// What failed.
        reason: String,
    },
    /// Malformed PEM, or a certificate that does not parse.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A private key that rustls cannot use.
    #[error("{origin}: unusable private key: {reason}")]
    BadKey {
        /// The input.
        origin: String,
        /// What rustls said.
        reason: String,
    },
    /// An SVID without any certificate.
    #[error("{origin}: no certificate; expected the leaf followed by its intermediates")]
    NoCertificate {
        /// The input.
        origin: String,
    },
    /// The leaf certificate's public key is not the workload's key.
    #[error("{origin}: the leaf certificate was not issued for this key")]
    KeyMismatch {
        /// The input.
        origin: String,
    },
    /// The leaf certificate is not an X509-SVID.
    #[error("{origin}: {error}")]
    NotAnSvid {
        /// The input.
        origin: String,
        /// Why it is not one.
        error: PeerIdentityError,
    },
    /// A trust bundle without certificates.
    #[error("{origin}: the trust bundle holds no certificate")]
    EmptyTrustBundle {
        /// The input.
        origin: String,
    },
    /// A trust bundle certificate that webpki cannot use as a trust anchor.
    #[error("{origin}: certificate {index} cannot be a trust anchor: {reason}")]
    BadTrustAnchor {
        /// The input.
        origin: String,
        /// 0-based index of the certificate.
        index: usize,
        /// What webpki said.
        reason: String,
    },
    /// A client config that would allow no peer at all.
    #[error("no peer identity is allowed: give at least one SPIFFE ID, or a trust domain")]
    NoAllowedPeers,
    /// rustls refused the configuration.
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}
