//! Signing a workload's CSR into an X509-SVID.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose,
    IsCa, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};

use super::error::{MAX_QUOTED_SANS, quoted};
use super::{CLOCK_SKEW, Ca, CaError, generate_error, random_serial};
use crate::encoding::{self, CERTIFICATE_REQUEST};
use crate::spiffe_id::SpiffeId;

/// A leaf certificate issued by [`Ca::sign_csr`], with the chain that links it to the root.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCert {
    id: SpiffeId,
    leaf: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl SignedCert {
    /// The SPIFFE ID in the certificate (its only URI SAN).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The leaf certificate, DER.
    pub fn leaf_der(&self) -> &CertificateDer<'static> {
        &self.leaf
    }

    /// The leaf certificate, PEM.
    pub fn leaf_pem(&self) -> String {
        encoding::encode_certs([&self.leaf])
    }

    /// The intermediates between the leaf and the root (excluding both), DER; empty when the CA
    /// is a root.
    pub fn chain_der(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The intermediates between the leaf and the root, PEM (possibly empty).
    pub fn chain_pem(&self) -> String {
        encoding::encode_certs(&self.chain)
    }

    /// What a workload presents in TLS: the leaf followed by the intermediates, PEM.
    pub fn cert_chain_pem(&self) -> String {
        encoding::encode_certs(std::iter::once(&self.leaf).chain(&self.chain))
    }

    /// Start of validity (one minute before signing, for clock skew).
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

impl std::fmt::Debug for SignedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedCert")
            .field("id", &self.id)
            .field("chain", &self.chain.len())
            .field("not_before", &encoding::format_time(self.not_before))
            .field("not_after", &encoding::format_time(self.not_after))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Signs a workload's CSR (PEM `CERTIFICATE REQUEST`, or DER) for `expected`, the identity
    /// the caller was authenticated as.
    ///
    /// The CSR must carry a valid self-signature, and its SANs must be exactly one URI SAN equal
    /// to `expected`. Only its public key is used: the leaf has `expected` as its only URI SAN,
    /// an empty subject, validity from one minute ago until `lifetime` from now (cut off at the
    /// CA's own expiry), keyUsage digitalSignature, extendedKeyUsage serverAuth + clientAuth and
    /// basicConstraints CA:FALSE.
    pub fn sign_csr(
        &self,
        csr: &[u8],
        expected: &SpiffeId,
        lifetime: Duration,
    ) -> Result<SignedCert, CaError> {
        if expected.trust_domain_name() != self.trust_domain.as_str() {
            return Err(CaError::ForeignTrustDomain {
                id: expected.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        if expected.is_trust_domain_id() {
            return Err(CaError::NotAWorkload {
                id: expected.clone(),
            });
        }
        if lifetime.is_zero() {
            return Err(CaError::ZeroLifetime);
        }
        let request = parse_csr(csr)?;
        check_sans(&request.params.subject_alt_names, expected)?;

        let now = SystemTime::now();
        let not_before = now - CLOCK_SKEW;
        let not_after = now
            .checked_add(lifetime)
            .map_or(self.not_after, |t| t.min(self.not_after));
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![uri_san(expected)?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial()?);
        let leaf = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(generate_error)?;
        Ok(SignedCert {
            id: expected.clone(),
            leaf: leaf.into(),
            chain: self.leaf_chain(),
            // Whole seconds, as encoded in the certificate.
            not_before: truncate_to_secs(not_before),
            not_after: truncate_to_secs(not_after),
        })
    }
}

fn parse_csr(csr: &[u8]) -> Result<CertificateSigningRequestParams, CaError> {
    let der = if csr.trim_ascii_start().starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(csr).map_err(|_| CaError::BadCsr {
            reason: "PEM input is not UTF-8".to_owned(),
        })?;
        encoding::decode_one(text, "CSR", CERTIFICATE_REQUEST)?
    } else {
        csr.to_vec()
    };
    CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der)).map_err(
        |e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => CaError::CsrSignature,
            rcgen::Error::UnsupportedExtension => CaError::BadCsr {
                reason: "it requests an extension other than subjectAltName, keyUsage, \
                         extendedKeyUsage and basicConstraints"
                    .to_owned(),
            },
            other => CaError::BadCsr {
                reason: other.to_string(),
            },
        },
    )
}

/// The CSR's SANs must be exactly one URI SAN, equal to `expected`.
fn check_sans(sans: &[SanType], expected: &SpiffeId) -> Result<(), CaError> {
    let mut uris = Vec::new();
    for san in sans {
        let (kind, value) = match san {
            SanType::URI(uri) => {
                uris.push(uri.as_str());
                continue;
            }
            SanType::DnsName(name) => ("DNS", name.as_str().to_owned()),
            SanType::IpAddress(ip) => ("IP address", ip.to_string()),
            SanType::Rfc822Name(mail) => ("e-mail", mail.as_str().to_owned()),
            SanType::OtherName((oid, _)) => ("otherName", format!("{oid:?}")),
            _ => ("unknown", format!("{san:?}")),
        };
        return Err(CaError::UnsupportedSan {
            kind,
            value: quoted(&value),
        });
    }
    if uris.len() != 1 || uris[0] != expected.as_str() {
        return Err(CaError::IdentityMismatch {
            requested: uris
                .iter()
                .take(MAX_QUOTED_SANS)
                .map(|uri| quoted(uri))
                .collect(),
            requested_total: uris.len(),
            allowed: expected.clone(),
        });
    }
    Ok(())
}

fn uri_san(id: &SpiffeId) -> Result<SanType, CaError> {
    let uri = id.as_str().try_into().map_err(generate_error)?;
    Ok(SanType::URI(uri))
}

fn truncate_to_secs(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => time,
    }
}
