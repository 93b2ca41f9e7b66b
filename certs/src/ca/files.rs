//! The CA's files in the data directory: created on first start, reused after.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::load::{self, Input};
use super::{Ca, CaError};
use crate::spiffe_id::TrustDomain;

/// The CA certificate in the data directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The CA private key (PKCS#8) in the data directory, mode 0600.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Optional: the chain above `ca-cert.pem` up to and including the root, when an operator puts
/// an intermediate in the data directory. Absent for a root CA.
pub const CA_CHAIN_FILE: &str = "cert-chain.pem";

impl Ca {
    /// Loads the CA from `dir`, or on first start generates a root and writes it there.
    ///
    /// Reads [`CA_CERT_FILE`], [`CA_KEY_FILE`] and, if present, [`CA_CHAIN_FILE`] when the first
    /// two exist (so an operator can also drop their own intermediate in); when neither exists,
    /// generates a root with [`Ca::generate`], writes the key with mode 0600 and the certificate
    /// with 0644, creating `dir` (mode 0700) if needed. Exactly one of the two existing is an
    /// error: nothing is overwritten. Errors name the file at fault.
    pub fn load_or_create(dir: &Path, trust_domain: TrustDomain) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => load(dir, trust_domain, &cert_path, &key_path),
            (false, false) => create(dir, trust_domain, &cert_path, &key_path),
            (true, false) => Err(CaError::IncompleteFiles {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(CaError::IncompleteFiles {
                present: key_path,
                missing: cert_path,
            }),
        }
    }
}

fn load(
    dir: &Path,
    trust_domain: TrustDomain,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Ca, CaError> {
    let chain_path = dir.join(CA_CHAIN_FILE);
    let cert = read(cert_path)?;
    let key = read(key_path)?;
    let chain = if exists(&chain_path)? {
        read(&chain_path)?
    } else {
        String::new()
    };
    load::from_pem(
        trust_domain,
        Input::new(cert_path.display().to_string(), &cert),
        Input::new(key_path.display().to_string(), &key),
        Input::new(chain_path.display().to_string(), &chain),
    )
}

fn create(
    dir: &Path,
    trust_domain: TrustDomain,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Ca, CaError> {
    create_dir(dir)?;
    let ca = Ca::generate(trust_domain)?;
    // Key first: a crash in between leaves a key without a certificate, which the next start
    // reports instead of silently generating a second CA.
    write_new(key_path, ca.key_pem().as_bytes(), 0o600)?;
    if let Err(error) = write_new(cert_path, ca.cert_pem().as_bytes(), 0o644) {
        let _ = fs::remove_file(key_path); // best effort: leave no orphan key behind
        return Err(error);
    }
    Ok(ca)
}

fn exists(path: &Path) -> Result<bool, CaError> {
    path.try_exists().map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| CaError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Writes a file that must not exist yet, with `mode` from the start (never briefly readable).
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let error = |source| CaError::Write {
        path: PathBuf::from(path),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}
