//! PEM in and out: certificates and keys as operators and the wire carry them.

use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

/// PEM label of a certificate.
pub(crate) const CERTIFICATE: &str = "CERTIFICATE";
/// PEM label of a PKCS#8 private key.
pub(crate) const PRIVATE_KEY: &str = "PRIVATE KEY";
/// PEM label of a PKCS#10 certificate signing request.
pub(crate) const CERTIFICATE_REQUEST: &str = "CERTIFICATE REQUEST";

/// Why PEM input (a file, or text from the wire) could not be used. `origin` names the input:
/// a file path or a description such as "operator CA certificate".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The text is not well-formed PEM.
    #[error("{origin}: not valid PEM: {reason}")]
    Malformed {
        /// What was being read.
        origin: String,
        /// What the PEM decoder said.
        reason: String,
    },
    /// No PEM block with the expected label.
    #[error("{origin}: no \"{label}\" PEM block found")]
    Missing {
        /// What was being read.
        origin: String,
        /// The label looked for, e.g. `CERTIFICATE`.
        label: &'static str,
    },
    /// A PEM block with another label than expected.
    #[error("{origin}: PEM block {index} is \"{found}\", expected \"{expected}\"")]
    UnexpectedLabel {
        /// What was being read.
        origin: String,
        /// 0-based index of the block.
        index: usize,
        /// The label found.
        found: String,
        /// The label expected.
        expected: &'static str,
    },
    /// A certificate block that is not a parsable X.509 certificate.
    #[error("{origin}: certificate {index} is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// What was being read.
        origin: String,
        /// 0-based index of the certificate.
        index: usize,
        /// What the X.509 parser said.
        reason: String,
    },
}

/// Decodes every PEM block of `input`, requiring all of them to carry `label`.
pub(crate) fn decode_blocks(
    input: &str,
    origin: &str,
    label: &'static str,
) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = ::pem::parse_many(input).map_err(|e| PemError::Malformed {
        origin: origin.to_owned(),
        reason: e.to_string(),
    })?;
    blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            if block.tag() == label {
                Ok(block.into_contents())
            } else {
                Err(PemError::UnexpectedLabel {
                    origin: origin.to_owned(),
                    index,
                    found: block.tag().to_owned(),
                    expected: label,
                })
            }
        })
        .collect()
}

/// Decodes exactly one PEM block with `label`.
pub(crate) fn decode_one(
    input: &str,
    origin: &str,
    label: &'static str,
) -> Result<Vec<u8>, PemError> {
    decode_blocks(input, origin, label)?
        .into_iter()
        .next()
        .ok_or_else(|| PemError::Missing {
            origin: origin.to_owned(),
            label,
        })
}

/// Decodes all certificates in `input` (possibly none) and checks that each parses as X.509.
pub(crate) fn decode_certs(
    input: &str,
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = decode_blocks(input, origin, CERTIFICATE)?;
    for (index, der) in certs.iter().enumerate() {
        parse_x509(der).map_err(|reason| PemError::BadCertificate {
            origin: origin.to_owned(),
            index,
            reason,
        })?;
    }
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

/// Encodes one DER blob as PEM with `\n` line endings.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der), config)
}

/// Encodes certificates as concatenated PEM blocks.
pub(crate) fn encode_certs<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|cert| encode(CERTIFICATE, cert))
        .collect()
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Formats a time as RFC 3339 (UTC) for error messages.
pub(crate) fn format_time(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{time:?}"))
}

/// Converts an X.509 time to a [`SystemTime`].
pub(crate) fn system_time(time: ASN1Time) -> SystemTime {
    let secs = time.timestamp();
    match u64::try_from(secs) {
        Ok(after) => SystemTime::UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}
