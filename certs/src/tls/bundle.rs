//! The trust bundle: the root certificates that peers' chains must lead to.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use crate::encoding;
use crate::tls::TlsError;

/// A parsed, immutable set of trust anchors (root certificates).
///
/// Built once per bundle update, so that handshakes never parse it.
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    /// rustls' webpki client verifier over `roots`: it does the chain checks for our
    /// server-side verifier, which adds the SPIFFE checks on top.
    client_chain_verifier: Arc<dyn ClientCertVerifier>,
}

impl TrustBundle {
    /// Parses PEM root certificates (e.g. [`crate::Ca::trust_bundle_pem`] or what the control
    /// plane sends).
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        Self::from_certs("trust bundle", encoding::decode_certs(pem, "trust bundle")?)
    }

    /// Builds a bundle from DER root certificates.
    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        Self::from_certs("trust bundle", certs)
    }

    fn from_certs(origin: &str, certs: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        if certs.is_empty() {
            return Err(TlsError::EmptyTrustBundle {
                origin: origin.to_owned(),
            });
        }
        let mut roots = RootCertStore::empty();
        for (index, cert) in certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|e| TlsError::BadTrustAnchor {
                    origin: origin.to_owned(),
                    index,
                    reason: e.to_string(),
                })?;
        }
        let roots = Arc::new(roots);
        let client_chain_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), crate::crypto_provider())
                .build()
                .map_err(|e| TlsError::BadTrustAnchor {
                    origin: origin.to_owned(),
                    index: 0,
                    reason: e.to_string(),
                })?;
        Ok(Self {
            certs,
            roots,
            client_chain_verifier,
        })
    }

    /// The root certificates, DER.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The root certificates, PEM.
    pub fn to_pem(&self) -> String {
        encoding::encode_certs(&self.certs)
    }

    pub(crate) fn roots(&self) -> &RootCertStore {
        &self.roots
    }

    pub(crate) fn client_chain_verifier(&self) -> &dyn ClientCertVerifier {
        self.client_chain_verifier.as_ref()
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.certs.len())
            .finish_non_exhaustive()
    }
}

/// A trust bundle that can be replaced while connections use it.
///
/// Clones share the same slot. Verifiers load the current bundle at each handshake, so
/// [`SharedTrustBundle::store`] takes effect for the next handshake without rebuilding configs.
///
/// # Concurrency
/// Lock-free: `load` is an `arc-swap` read; handshakes in progress keep the bundle they loaded.
#[derive(Clone)]
pub struct SharedTrustBundle(Arc<ArcSwap<TrustBundle>>);

impl SharedTrustBundle {
    /// A slot holding `bundle`.
    pub fn new(bundle: TrustBundle) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(bundle)))
    }

    /// The current bundle.
    pub fn load(&self) -> Arc<TrustBundle> {
        self.0.load_full()
    }

    /// Replaces the bundle for all later handshakes. During a root rotation, store a bundle
    /// holding both the old and the new root.
    pub fn store(&self, bundle: TrustBundle) {
        self.0.store(Arc::new(bundle));
    }
}

impl fmt::Debug for SharedTrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedTrustBundle")
            .field(&self.0.load())
            .finish()
    }
}
