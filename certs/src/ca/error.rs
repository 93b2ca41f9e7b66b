//! What can go wrong when loading a CA or signing with it.

use std::path::PathBuf;

use crate::encoding::PemError;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// How many of a CSR's SANs an error message quotes.
pub const MAX_QUOTED_SANS: usize = 4;
/// How many bytes of one SAN an error message quotes.
pub const MAX_QUOTED_LEN: usize = 256;

/// `value` cut to [`MAX_QUOTED_LEN`] bytes (on a character boundary), marked with `…` if cut.
pub(crate) fn quoted(value: &str) -> String {
    if value.len() <= MAX_QUOTED_LEN {
        return value.to_owned();
    }
    let mut end = MAX_QUOTED_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// `, ... and N more` when only `shown` of `total` values are quoted.
fn more(total: usize, shown: usize) -> String {
    match total.saturating_sub(shown) {
        0 => String::new(),
        rest => format!(", ... and {rest} more"),
    }
}

/// Why the CA could not be loaded or created, or refused to sign.
///
/// Messages name the file (or the input, e.g. "CA certificate") and the rule broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A CA file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CA file or the data directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Only one of the certificate and the key is in the data directory: refusing to overwrite
    /// or guess. Restore the missing file, or remove the other one to start a new CA.
    #[error(
        "{} exists but {} does not; restore it, or remove {} to create a new CA",
        present.display(),
        missing.display(),
        present.display()
    )]
    IncompleteFiles {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// Malformed PEM, or a certificate that does not parse.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The CA certificate input holds more than one certificate.
    #[error(
        "{origin}: expected exactly one certificate, found {found}; put the certificates above it in the chain"
    )]
    NotOneCertificate {
        /// The input.
        origin: String,
        /// How many certificates it holds.
        found: usize,
    },
    /// The CA key is not a usable PKCS#8 private key.
    #[error("{origin}: {reason}")]
    BadKey {
        /// The input.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch {
        /// The key input.
        key: String,
        /// The certificate input.
        cert: String,
    },
    /// A certificate that must be a CA is not one.
    #[error(
        "{origin}: certificate {index} is not a CA certificate (basicConstraints CA:TRUE is missing)"
    )]
    NotCa {
        /// The input.
        origin: String,
        /// 0-based index of the certificate in the input.
        index: usize,
    },
    /// The CA certificate may not sign certificates.
    #[error("{origin}: the certificate's keyUsage does not include keyCertSign")]
    NoKeyCertSign {
        /// The input.
        origin: String,
    },
    /// A certificate of the CA chain is outside its validity period now.
    #[error("{origin}: certificate {index} is valid from {not_before} to {not_after}, not now")]
    NotValidNow {
        /// The input.
        origin: String,
        /// 0-based index of the certificate in the input.
        index: usize,
        /// Start of validity (RFC 3339).
        not_before: String,
        /// End of validity (RFC 3339).
        not_after: String,
    },
    /// A certificate of the chain is not signed by the next one.
    #[error("{origin}: {child} is not signed by {parent}")]
    BrokenChain {
        /// The input.
        origin: String,
        /// Which certificate (e.g. "the CA certificate", "chain certificate 0").
        child: String,
        /// Which certificate should have signed it.
        parent: String,
    },
    /// The chain does not end in a self-signed root.
    #[error(
        "{origin}: the chain must end with the self-signed root certificate; {last} is not self-signed"
    )]
    NoRoot {
        /// The input.
        origin: String,
        /// Which certificate is last.
        last: String,
    },
    /// The CSR is not a parsable PKCS#10 request.
    #[error("the CSR cannot be parsed: {reason}")]
    BadCsr {
        /// What is wrong with it.
        reason: String,
    },
    /// The CSR's self-signature does not verify: whoever sent it does not hold the key.
    #[error("the CSR's signature does not verify with the public key it carries")]
    CsrSignature,
    /// The CSR asks for other URI SANs than the identity the caller was authenticated as.
    ///
    /// The message quotes at most [`MAX_QUOTED_SANS`] SANs of at most [`MAX_QUOTED_LEN`] bytes
    /// each and counts the rest: a CSR is the caller's input, and one with 20,000 SANs must
    /// not become a log line of a megabyte.
    #[error(
        "the CSR requests URI SANs [{}{}] but only {allowed} may be issued to this caller",
        requested.join(", "),
        more(*requested_total, requested.len())
    )]
    IdentityMismatch {
        /// The first URI SANs in the CSR (at most [`MAX_QUOTED_SANS`], each cut to
        /// [`MAX_QUOTED_LEN`] bytes).
        requested: Vec<String>,
        /// How many URI SANs the CSR has in all.
        requested_total: usize,
        /// The only identity that may be issued.
        allowed: SpiffeId,
    },
    /// The CSR asks for a SAN that is not a URI (DNS name, IP address, e-mail, ...).
    #[error("the CSR requests the {kind} SAN {value:?}; only the SPIFFE ID may be requested")]
    UnsupportedSan {
        /// The kind of SAN, e.g. "DNS".
        kind: &'static str,
        /// Its value, cut to [`MAX_QUOTED_LEN`] bytes.
        value: String,
    },
    /// The identity to issue is in another trust domain than the CA's.
    #[error("{id} is outside this CA's trust domain {trust_domain}")]
    ForeignTrustDomain {
        /// The identity asked for.
        id: SpiffeId,
        /// The CA's trust domain.
        trust_domain: TrustDomain,
    },
    /// The identity to issue names a trust domain rather than a workload.
    #[error("{id} has no path: it names a trust domain, and is never issued to a workload")]
    NotAWorkload {
        /// The identity asked for.
        id: SpiffeId,
    },
    /// A zero certificate lifetime.
    #[error("the certificate lifetime must be longer than zero")]
    ZeroLifetime,
    /// rcgen or the random number generator failed.
    #[error("cannot make the certificate: {reason}")]
    Generate {
        /// What failed.
        reason: String,
    },
}
