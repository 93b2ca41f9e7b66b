//! mTLS between workloads with rustls: SVIDs, trust bundles, SPIFFE verifiers, and the client
//! and server configs that tie them together.
//!
//! # Rotation
//! [`MeshTls`] holds the workload's [`SharedSvid`] and [`SharedTrustBundle`]; the configs it
//! builds read both at every handshake. To rotate, store a new SVID or bundle: the next handshake
//! uses it, connections already open are untouched, and no config is rebuilt. Configs are cheap
//! to keep: build one client config per set of allowed peers (e.g. per upstream cluster) and one
//! server config per inbound listener, and reuse them for every connection.
//!
//! Session resumption is off on both sides: a resumed session would skip verification against
//! the current bundle and keep presenting the old certificate, so a rotation would not reach the
//! connections that resume. Proxies pool and multiplex connections, so full handshakes are rare.

mod bundle;
mod error;
mod peer;
mod svid;
mod verifier;

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

pub use bundle::{SharedTrustBundle, TrustBundle};
pub use error::TlsError;
pub use peer::{AllowedPeers, PeerIdentityError, not_after_of, peer_identity, spiffe_id_of};
pub use svid::{SharedSvid, Svid, WorkloadKey};
pub use verifier::{SpiffeClientVerifier, SpiffeServerVerifier};

/// ALPN protocols offered and accepted between proxies, in order of preference.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Whether a server requires clients to present an SVID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate is refused (PeerAuthentication `STRICT`).
    Required,
    /// A client may connect without a certificate and is then unauthenticated
    /// ([`peer_identity`] is `None`); a certificate, if sent, is still fully verified.
    Optional,
}

/// A workload's mTLS state: its current SVID and the trust bundle, both swappable, and the
/// rustls configs built over them.
///
/// Clones share the same SVID and bundle slots.
#[derive(Clone, Debug)]
pub struct MeshTls {
    svid: SharedSvid,
    bundle: SharedTrustBundle,
}

impl MeshTls {
    /// A state with `bundle` and no SVID yet (servers cannot handshake until one is stored).
    pub fn new(bundle: TrustBundle) -> Self {
        Self {
            svid: SharedSvid::new(),
            bundle: SharedTrustBundle::new(bundle),
        }
    }

    /// The SVID slot, to store a renewed certificate or to check readiness.
    pub fn svid(&self) -> &SharedSvid {
        &self.svid
    }

    /// The trust bundle slot, to store an updated bundle.
    pub fn trust_bundle(&self) -> &SharedTrustBundle {
        &self.bundle
    }

    /// A client config for connecting to a peer whose SPIFFE ID must be in `allowed`,
    /// presenting our current SVID; TLS 1.3 only, ALPN [`ALPN_PROTOCOLS`].
    ///
    /// The `ServerName` later given to `ClientConnection::new` is not checked: pass the peer's
    /// IP address (`ServerName::IpAddress`), which also keeps SNI off the wire. Only the URI SAN
    /// identifies a SPIFFE peer (see [`SpiffeServerVerifier`]).
    pub fn client_config(&self, allowed: AllowedPeers) -> Result<Arc<ClientConfig>, TlsError> {
        if allowed.is_empty() {
            return Err(TlsError::NoAllowedPeers);
        }
        let verifier = SpiffeServerVerifier::new(self.bundle.clone(), allowed);
        let mut config = ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous() // our verifier replaces webpki's hostname check, see its docs
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(self.svid.clone()));
        config.alpn_protocols = alpn();
        config.resumption = Resumption::disabled(); // see the module docs
        Ok(Arc::new(config))
    }

    /// A server config presenting our current SVID and verifying client SVIDs against the
    /// bundle, accepting only clients whose SPIFFE ID is in `clients` (for a workload: any
    /// workload of its trust domain, [`AllowedPeers::trust_domain`]); TLS 1.3 only, ALPN
    /// [`ALPN_PROTOCOLS`].
    pub fn server_config(
        &self,
        client_auth: ClientAuth,
        clients: AllowedPeers,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        if clients.is_empty() {
            return Err(TlsError::NoAllowedPeers);
        }
        let verifier = SpiffeClientVerifier::new(self.bundle.clone(), client_auth, clients);
        let mut config = ServerConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(self.svid.clone()));
        config.alpn_protocols = alpn();
        // No resumption (see the module docs): no session cache, no tickets.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

fn alpn() -> Vec<Vec<u8>> {
    ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect()
}
