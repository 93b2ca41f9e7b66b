//! Loading a CA from PEM: parse, then check everything a signing CA needs before trusting it.

use std::time::SystemTime;

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use super::{Ca, CaError};
use crate::encoding::{self, PRIVATE_KEY};
use crate::spiffe_id::TrustDomain;

/// One PEM input and the name used for it in errors (a file path, or e.g. "CA key").
pub(super) struct Input<'a> {
    origin: String,
    pem: &'a str,
}

impl<'a> Input<'a> {
    pub(super) fn new(origin: impl Into<String>, pem: &'a str) -> Self {
        Self {
            origin: origin.into(),
            pem,
        }
    }
}

pub(super) fn from_pem(
    trust_domain: TrustDomain,
    cert: Input<'_>,
    key: Input<'_>,
    chain: Input<'_>,
) -> Result<Ca, CaError> {
    let cert_der = one_cert(&cert)?;
    let key_pair = key_pair(&key)?;
    let mut chain_ders = encoding::decode_certs(chain.pem, &chain.origin)?;
    // Istio's cert-chain.pem starts with the CA certificate itself; skip it.
    let skipped = usize::from(chain_ders.first() == Some(&cert_der));
    if skipped == 1 {
        chain_ders.remove(0);
    }

    let cert_x509 = parse(&cert_der, &cert.origin, 0)?;
    if key_pair.subject_public_key_info() != cert_x509.public_key().raw {
        return Err(CaError::KeyMismatch {
            key: key.origin,
            cert: cert.origin,
        });
    }
    check_ca(&cert_x509, &cert.origin, 0)?;
    if let Some(usage) = cert_x509.key_usage().ok().flatten()
        && !usage.value.key_cert_sign()
    {
        return Err(CaError::NoKeyCertSign {
            origin: cert.origin,
        });
    }
    let chain_x509 = chain_ders
        .iter()
        .enumerate()
        .map(|(i, der)| parse(der, &chain.origin, i + skipped))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, x509) in chain_x509.iter().enumerate() {
        check_ca(x509, &chain.origin, i + skipped)?;
    }
    check_chain(
        &cert_x509,
        &chain_x509,
        &cert.origin,
        &chain.origin,
        skipped,
    )?;

    let not_after = encoding::system_time(cert_x509.validity().not_after);
    let root = chain_ders.last().unwrap_or(&cert_der).clone();
    let issuer = Issuer::from_ca_cert_der(&cert_der, key_pair).map_err(|e| CaError::BadKey {
        origin: cert.origin.clone(),
        reason: format!("cannot sign with this certificate: {e}"),
    })?;
    chain_ders.pop(); // the root is in the trust bundle, not in the chain sent with leaves
    Ok(Ca {
        trust_domain,
        issuer,
        cert: cert_der,
        intermediates: chain_ders,
        root,
        not_after,
    })
}

fn one_cert(input: &Input<'_>) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = encoding::decode_certs(input.pem, &input.origin)?;
    if certs.len() != 1 {
        return Err(CaError::NotOneCertificate {
            origin: input.origin.clone(),
            found: certs.len(),
        });
    }
    Ok(certs.remove(0))
}

fn key_pair(input: &Input<'_>) -> Result<KeyPair, CaError> {
    let blocks = ::pem::parse_many(input.pem).map_err(|e| CaError::BadKey {
        origin: input.origin.clone(),
        reason: format!("not valid PEM: {e}"),
    })?;
    let [block] = blocks.as_slice() else {
        return Err(CaError::BadKey {
            origin: input.origin.clone(),
            reason: format!(
                "expected one \"{PRIVATE_KEY}\" PEM block, found {}",
                blocks.len()
            ),
        });
    };
    if block.tag() != PRIVATE_KEY {
        return Err(CaError::BadKey {
            origin: input.origin.clone(),
            reason: format!(
                "found a \"{}\" PEM block; the key must be PKCS#8 (\"{PRIVATE_KEY}\"), \
                 e.g. `openssl pkcs8 -topk8 -nocrypt -in key.pem`",
                block.tag()
            ),
        });
    }
    KeyPair::try_from(block.contents()).map_err(|e| CaError::BadKey {
        origin: input.origin.clone(),
        reason: format!("unsupported or invalid private key: {e}"),
    })
}

fn parse<'a>(
    der: &'a CertificateDer<'_>,
    origin: &str,
    index: usize,
) -> Result<X509Certificate<'a>, CaError> {
    encoding::parse_x509(der).map_err(|reason| {
        CaError::Pem(encoding::PemError::BadCertificate {
            origin: origin.to_owned(),
            index,
            reason,
        })
    })
}

/// A certificate in the CA chain must be a CA and valid now.
fn check_ca(x509: &X509Certificate<'_>, origin: &str, index: usize) -> Result<(), CaError> {
    if !x509.is_ca() {
        return Err(CaError::NotCa {
            origin: origin.to_owned(),
            index,
        });
    }
    let validity = x509.validity();
    let not_before = encoding::system_time(validity.not_before);
    let not_after = encoding::system_time(validity.not_after);
    let now = SystemTime::now();
    if now < not_before || now > not_after {
        return Err(CaError::NotValidNow {
            origin: origin.to_owned(),
            index,
            not_before: encoding::format_time(not_before),
            not_after: encoding::format_time(not_after),
        });
    }
    Ok(())
}

/// Each certificate is signed by the next; the last is a self-signed root.
fn check_chain(
    cert: &X509Certificate<'_>,
    chain: &[X509Certificate<'_>],
    cert_origin: &str,
    chain_origin: &str,
    skipped: usize,
) -> Result<(), CaError> {
    let name = |i: usize| match i {
        0 => "the CA certificate".to_owned(),
        _ => format!("chain certificate {}", i - 1 + skipped),
    };
    let all: Vec<&X509Certificate<'_>> = std::iter::once(cert).chain(chain).collect();
    for (i, pair) in all.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return Err(CaError::BrokenChain {
                origin: chain_origin.to_owned(),
                child: name(i),
                parent: name(i + 1),
            });
        }
    }
    let last = all.len() - 1;
    let root = all[last];
    if root.subject().as_raw() != root.issuer().as_raw() || root.verify_signature(None).is_err() {
        return Err(CaError::NoRoot {
            origin: if last == 0 { cert_origin } else { chain_origin }.to_owned(),
            last: name(last),
        });
    }
    Ok(())
}
