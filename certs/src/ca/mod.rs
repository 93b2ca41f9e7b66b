//! The certificate authority: a signing certificate and key that issue X509-SVIDs to workloads.
//!
//! The CA is either a root that Remora generated on first start ([`Ca::generate`],
//! [`Ca::load_or_create`]) or an operator's own root or intermediate ([`Ca::from_pem`]). Either
//! way, the workloads' trust bundle is the root at the top of the chain ([`Ca::trust_bundle_pem`]),
//! and an issued leaf travels with the intermediates between it and that root.

mod error;
mod files;
mod load;
mod sign;

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::CertificateDer;

pub use error::{CaError, MAX_QUOTED_LEN, MAX_QUOTED_SANS};
pub use files::{CA_CERT_FILE, CA_CHAIN_FILE, CA_KEY_FILE};
pub use sign::SignedCert;

use crate::encoding;
use crate::spiffe_id::TrustDomain;

/// How long a generated root is valid: ten years.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// How far back `not_before` is set, so that peers whose clocks lag a little accept new certs.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A certificate authority for one trust domain.
///
/// # Concurrency
/// `Ca` is `Send + Sync` and signs through `&self`; share it behind an `Arc`.
pub struct Ca {
    trust_domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    /// The signing certificate.
    cert: CertificateDer<'static>,
    /// Certificates above `cert`, up to but excluding the root. Empty when `cert` is the root.
    intermediates: Vec<CertificateDer<'static>>,
    /// The self-signed root at the top: `cert` itself when the CA is a root.
    root: CertificateDer<'static>,
    /// End of the signing certificate's validity: no leaf outlives it.
    not_after: SystemTime,
}

impl Ca {
    /// Generates a new self-signed root for `trust_domain`: ECDSA P-256, CA:TRUE,
    /// keyCertSign + cRLSign, valid for [`ROOT_LIFETIME`].
    pub fn generate(trust_domain: TrustDomain) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_error)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, trust_domain.as_str());
        name.push(DnType::CommonName, "Remora root CA");
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + ROOT_LIFETIME).into();
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key).map_err(generate_error)?;
        let cert = CertificateDer::from(cert);
        Ok(Self {
            trust_domain,
            issuer: Issuer::new(params, key),
            root: cert.clone(),
            cert,
            intermediates: Vec::new(),
            not_after: now + ROOT_LIFETIME,
        })
    }

    /// Loads an operator's CA for `trust_domain`: its certificate, its PKCS#8 private key, and
    /// the chain above it up to and including the self-signed root (empty when the certificate
    /// is itself the root; a chain that starts with the CA certificate, as Istio's
    /// `cert-chain.pem` does, is accepted too).
    ///
    /// Checks that the key matches the certificate, that every certificate is a CA valid now,
    /// and that each is signed by the next, ending in a self-signed root.
    pub fn from_pem(
        trust_domain: TrustDomain,
        cert_pem: &str,
        key_pem: &str,
        chain_pem: &str,
    ) -> Result<Self, CaError> {
        load::from_pem(
            trust_domain,
            load::Input::new("CA certificate", cert_pem),
            load::Input::new("CA key", key_pem),
            load::Input::new("CA chain", chain_pem),
        )
    }

    /// The trust domain whose identities this CA issues.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The trust bundle for workloads: the root certificate, PEM.
    pub fn trust_bundle_pem(&self) -> String {
        encoding::encode_certs([&self.root])
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The signing certificate (the root itself, or the operator's intermediate), PEM.
    pub fn cert_pem(&self) -> String {
        encoding::encode_certs([&self.cert])
    }

    /// The signing key, PKCS#8 PEM. Only for writing it to the CA's own 0600 file.
    fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// When the signing certificate expires; leaves are cut off at this time.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The chain sent with each leaf: the signing certificate and the intermediates above it,
    /// excluding the root. Empty when the CA is a root.
    fn leaf_chain(&self) -> Vec<CertificateDer<'static>> {
        if self.cert == self.root {
            return Vec::new();
        }
        std::iter::once(&self.cert)
            .chain(&self.intermediates)
            .cloned()
            .collect()
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("intermediates", &self.intermediates.len())
            .field("is_root", &(self.cert == self.root))
            .field("not_after", &encoding::format_time(self.not_after))
            .finish_non_exhaustive()
    }
}

/// A random positive 128-bit serial number (RFC 5280 wants them unique per CA and unpredictable).
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    crate::crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Generate {
            reason: "the system random number generator failed".to_owned(),
        })?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte, so the encoding keeps its length
    Ok(SerialNumber::from_slice(&bytes))
}

fn generate_error(error: rcgen::Error) -> CaError {
    CaError::Generate {
        reason: error.to_string(),
    }
}
