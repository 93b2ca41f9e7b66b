//! rustls verifiers that authenticate SPIFFE peers: the chain must lead to the trust bundle and
//! the leaf must carry exactly one SPIFFE ID.
//!
//! DNS names are never checked. SPIFFE peers are identified by their URI SAN, a mesh dials
//! peers by the IP address the registry gave, and an X509-SVID need not carry any DNS name; a
//! hostname check would prove nothing and refuse valid peers. So the `ServerName` that rustls
//! passes is ignored, and the identity check is the allowed-set check instead.

use std::fmt;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::tls::ClientAuth;
use crate::tls::bundle::SharedTrustBundle;
use crate::tls::peer::{AllowedPeers, spiffe_id_of};

/// Client side: verifies the server's X509-SVID against the trust bundle and an allowed set.
pub struct SpiffeServerVerifier {
    bundle: SharedTrustBundle,
    allowed: AllowedPeers,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier that accepts servers whose chain leads to `bundle` (read at each handshake)
    /// and whose SPIFFE ID is in `allowed`.
    pub fn new(bundle: SharedTrustBundle, allowed: AllowedPeers) -> Self {
        Self {
            bundle,
            allowed,
            algorithms: crate::crypto_provider().signature_verification_algorithms,
        }
    }

    /// The identities this verifier accepts.
    pub fn allowed(&self) -> &AllowedPeers {
        &self.allowed
    }
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    /// Checks the chain (signatures, validity at `now`, serverAuth usage) against the current
    /// bundle, then the SPIFFE ID against the allowed set. `server_name` is ignored (see the
    /// module docs); OCSP is not used in the mesh.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bundle = self.bundle.load();
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            bundle.roots(),
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let id = spiffe_id_of(end_entity)?;
        self.allowed.check(&id)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Server side: verifies a client's X509-SVID against the trust bundle and an allowed set
/// (for a workload's inbound listener: any workload of its own trust domain).
///
/// It authenticates, it does not authorize: any workload of the allowed trust domain gets
/// through, and the inbound path then applies AuthorizationPolicy to [`crate::peer_identity`].
/// The trust domain is checked because a chain to the bundle does not prove it: a CA may sign
/// (or an operator's CA may have signed) `spiffe://evil.example/...`, and a policy naming
/// `namespaces: [default]` must not match a workload of another trust domain.
pub struct SpiffeClientVerifier {
    bundle: SharedTrustBundle,
    client_auth: ClientAuth,
    allowed: AllowedPeers,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeClientVerifier {
    /// A verifier over `bundle` (read at each handshake) accepting clients whose SPIFFE ID is
    /// in `allowed`; `client_auth` says whether a client without a certificate is refused or
    /// let through unauthenticated.
    pub fn new(bundle: SharedTrustBundle, client_auth: ClientAuth, allowed: AllowedPeers) -> Self {
        Self {
            bundle,
            client_auth,
            allowed,
            algorithms: crate::crypto_provider().signature_verification_algorithms,
        }
    }
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeClientVerifier")
            .field("client_auth", &self.client_auth)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_auth == ClientAuth::Required
    }

    /// No CA hints: a workload has exactly one certificate, so hints would not change its
    /// choice, and the bundle can be swapped under us (a borrowed list could not follow it).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    /// Checks the chain (signatures, validity at `now`, clientAuth usage) against the current
    /// bundle, then that the leaf carries exactly one SPIFFE ID, and that it is allowed.
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bundle = self.bundle.load();
        bundle
            .client_chain_verifier()
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = spiffe_id_of(end_entity)?;
        self.allowed.check(&id)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
