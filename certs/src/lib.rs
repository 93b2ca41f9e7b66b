//! SPIFFE identities for Remora.
//!
//! - [`SpiffeId`] and [`TrustDomain`]: validated SPIFFE IDs (`spiffe://<td>/ns/<ns>/sa/<sa>`).
//! - [`Ca`]: the control plane's CA, generated on first start or supplied by the operator; it
//!   signs workloads' CSRs into short-lived X509-SVIDs ([`Ca::sign_csr`]).
//! - [`WorkloadKey`] and [`Svid`]: the proxy's key (never leaves the process), its CSR, and the
//!   certificate it presents.
//! - [`MeshTls`]: rustls client and server configs that present the current SVID and verify
//!   peers by SPIFFE ID against the trust bundle, both swappable for rotation;
//!   [`peer_identity`] reads the peer's identity after the handshake.
//!
//! Everything TLS is rustls with the `ring` provider ([`crypto_provider`]); certificates are
//! made with rcgen. No OpenSSL.

mod ca;
mod encoding;
mod spiffe_id;
mod tls;

use std::sync::{Arc, LazyLock};

use rustls::crypto::CryptoProvider;

pub use ca::{
    CA_CERT_FILE, CA_CHAIN_FILE, CA_KEY_FILE, CLOCK_SKEW, Ca, CaError, MAX_QUOTED_LEN,
    MAX_QUOTED_SANS, ROOT_LIFETIME, SignedCert,
};
pub use encoding::PemError;
pub use spiffe_id::{
    MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, SpiffeId, SpiffeIdError, SpiffeIdErrorKind,
    TrustDomain,
};
pub use tls::{
    ALPN_PROTOCOLS, AllowedPeers, ClientAuth, MeshTls, PeerIdentityError, SharedSvid,
    SharedTrustBundle, SpiffeClientVerifier, SpiffeServerVerifier, Svid, TlsError, TrustBundle,
    WorkloadKey, not_after_of, peer_identity, spiffe_id_of,
};

/// The rustls crypto provider used for everything in this crate: `ring`.
///
/// Every config is built with it explicitly, so it works whatever process-wide default another
/// crate may have installed.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}
