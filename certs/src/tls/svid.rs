//! The workload's side of identity: its key, its CSR, and the SVID it presents.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::encoding::{self, PRIVATE_KEY};
use crate::spiffe_id::SpiffeId;
use crate::tls::TlsError;
use crate::tls::peer::spiffe_id_of;

/// A workload's private key: ECDSA P-256, made in-process; it never leaves the proxy.
pub struct WorkloadKey {
    key: KeyPair,
}

impl WorkloadKey {
    /// Generates a new ECDSA P-256 key pair.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
            TlsError::Generate {
                what: "key pair",
                reason: e.to_string(),
            }
        })?;
        Ok(Self { key })
    }

    /// A PKCS#10 CSR (PEM) asking for `id`: its only SAN, signed with this key. The CSR holds
    /// the public key only.
    pub fn csr(&self, id: &SpiffeId) -> Result<String, TlsError> {
        let generate = |e: rcgen::Error| TlsError::Generate {
            what: "CSR",
            reason: e.to_string(),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.as_str().try_into().map_err(generate)?)];
        let csr = params.serialize_request(&self.key).map_err(generate)?;
        csr.pem().map_err(generate)
    }

    /// Pairs this key with the certificate chain the CA issued for it (leaf first, then
    /// intermediates, PEM — [`crate::SignedCert::cert_chain_pem`]) into an [`Svid`].
    pub fn certify(&self, cert_chain_pem: &str) -> Result<Svid, TlsError> {
        let origin = "issued certificate chain";
        let chain = encoding::decode_certs(cert_chain_pem, origin)?;
        let key = PrivatePkcs8KeyDer::from(self.key.serialize_der());
        Svid::new(origin, chain, key.into())
    }

    /// The public key, SubjectPublicKeyInfo PEM (for logs and tests).
    pub fn public_key_pem(&self) -> String {
        self.key.public_key_pem()
    }
}

impl fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadKey").finish_non_exhaustive()
    }
}

/// An X509-SVID with its private key: what a workload presents in mTLS.
#[derive(Clone)]
pub struct Svid {
    id: SpiffeId,
    certified: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
    /// When this process loaded the certificate (for [`Svid::renew_at`]).
    loaded_at: SystemTime,
}

impl Svid {
    /// Loads an SVID from PEM: the chain (leaf first) and its PKCS#8 private key.
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let chain = encoding::decode_certs(cert_chain_pem, "SVID certificate chain")?;
        let key = encoding::decode_one(key_pem, "SVID private key", PRIVATE_KEY)?;
        Self::new(
            "SVID certificate chain",
            chain,
            PrivatePkcs8KeyDer::from(key).into(),
        )
    }

    fn new(
        origin: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
            origin: origin.to_owned(),
        })?;
        let id = spiffe_id_of(leaf).map_err(|error| TlsError::NotAnSvid {
            origin: origin.to_owned(),
            error,
        })?;
        let x509 =
            encoding::parse_x509(leaf).map_err(|reason| encoding::PemError::BadCertificate {
                origin: origin.to_owned(),
                index: 0,
                reason,
            })?;
        let not_before = encoding::system_time(x509.validity().not_before);
        let not_after = encoding::system_time(x509.validity().not_after);
        let certified =
            CertifiedKey::from_der(chain, key, &crate::crypto_provider()).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    origin: origin.to_owned(),
                },
                other => TlsError::BadKey {
                    origin: origin.to_owned(),
                    reason: other.to_string(),
                },
            })?;
        Ok(Self {
            id,
            certified: Arc::new(certified),
            not_before,
            not_after,
            loaded_at: SystemTime::now(),
        })
    }

    /// The SPIFFE ID this SVID proves.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificate chain presented in TLS: leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// Start of the leaf's validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When to ask for the next certificate: half-way through the validity, as Istio does
    /// by default, which leaves the other half for retries while the control plane is away.
    ///
    /// The validity counts from when the certificate could first be used here: the later of
    /// `not_before` and the time it was loaded. The CA backdates `not_before` by
    /// [`crate::CLOCK_SKEW`] (a minute) for peers whose clocks lag; measured from `not_before`, a
    /// 10-second certificate would be "half-way" 25 seconds before it was even issued, and the
    /// proxy would renew in a loop.
    pub fn renew_at(&self) -> SystemTime {
        let start = self.loaded_at.clamp(self.not_before, self.not_after);
        let left = self.not_after.duration_since(start).unwrap_or_default();
        start + left / 2
    }
}

impl fmt::Debug for Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Svid")
            .field("id", &self.id)
            .field("not_after", &encoding::format_time(self.not_after))
            .finish_non_exhaustive()
    }
}

/// The workload's current SVID, replaceable while connections use it; empty until the first
/// certificate arrives.
///
/// It is the certificate resolver of both the client and the server configs built by
/// [`crate::MeshTls`]: each handshake presents whatever SVID is current, so a rotation takes
/// effect for the next handshake without rebuilding configs. While empty, a server handshake
/// fails and a client presents no certificate (which a mandatory-mTLS peer refuses).
///
/// # Concurrency
/// Lock-free: handshakes read it through `arc-swap`; `store` never waits for them.
#[derive(Clone, Default)]
pub struct SharedSvid(Arc<ArcSwapOption<Svid>>);

impl SharedSvid {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current SVID, if any.
    pub fn load(&self) -> Option<Arc<Svid>> {
        self.0.load_full()
    }

    /// Makes `svid` the one presented by all later handshakes.
    pub fn store(&self, svid: Svid) {
        self.0.store(Some(Arc::new(svid)));
    }

    fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.0.load().as_ref().map(|svid| svid.certified.clone())
    }
}

impl fmt::Debug for SharedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedSvid").field(&self.load()).finish()
    }
}

impl ResolvesClientCert for SharedSvid {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // One identity per workload: hints and schemes do not change what we present. Our
        // ECDSA P-256 keys sign with a scheme every TLS 1.3 peer supports.
        self.certified_key()
    }

    fn has_certs(&self) -> bool {
        self.0.load().is_some()
    }
}

impl ResolvesServerCert for SharedSvid {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // SNI is not used to pick a certificate: a workload has one identity.
        self.certified_key()
    }
}

#[cfg(test)]
mod tests;
