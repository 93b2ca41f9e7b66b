//! The token key's file in the data directory: made on first use, read after.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use super::{KEY_LEN, TokenKey};

/// The token key in the data directory: 32 random bytes, mode 0600.
pub const TOKEN_KEY_FILE: &str = "token-key";

/// Why the token key could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenKeyError {
    /// The key file (or the data directory) could not be read.
    #[error("cannot read the token key {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The key file (or the data directory) could not be written.
    #[error("cannot write the token key {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The key file does not hold exactly [`KEY_LEN`] bytes.
    #[error(
        "the token key {} holds {len} bytes, not {KEY_LEN}; restore it, or remove it to make a new \
         key (which invalidates every token issued so far)",
        path.display()
    )]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// How many bytes it holds.
        len: usize,
    },
    /// The system random number generator failed.
    #[error("cannot make a token key: the system random number generator failed")]
    Random,
}

impl TokenKey {
    /// Reads [`TOKEN_KEY_FILE`] from `dir`, or makes it: 32 bytes from the system RNG, written
    /// with mode 0600 from the start, creating `dir` (mode 0700) if needed.
    ///
    /// # Concurrency
    /// Two processes starting together (`remora serve` and `remora token create`) end up with
    /// the same key: the new key is written to a private temporary file and then hard-linked
    /// into place, which fails if another process got there first; the loser reads the
    /// winner's key. A reader never sees a partly written key.
    pub fn load_or_create(dir: &Path) -> Result<Self, TokenKeyError> {
        let path = dir.join(TOKEN_KEY_FILE);
        match read(&path) {
            Ok(key) => Ok(key),
            Err(TokenKeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                create(dir, &path)
            }
            Err(e) => Err(e),
        }
    }
}

fn read(path: &Path) -> Result<TokenKey, TokenKeyError> {
    let bytes = fs::read(path).map_err(|source| TokenKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let key: [u8; KEY_LEN] =
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| TokenKeyError::WrongLength {
                path: path.to_owned(),
                len: bytes.len(),
            })?;
    Ok(TokenKey::from_bytes(&key))
}

fn create(dir: &Path, path: &Path) -> Result<TokenKey, TokenKeyError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TokenKeyError::Write { path, source }
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(write_error(dir))?;

    let rng = SystemRandom::new();
    let mut key = [0u8; KEY_LEN];
    rng.fill(&mut key).map_err(|_| TokenKeyError::Random)?;
    // A name of its own per attempt, so that concurrent creators never share the temporary file.
    let mut nonce = [0u8; 8];
    rng.fill(&mut nonce).map_err(|_| TokenKeyError::Random)?;
    let tmp = dir.join(format!(
        ".{TOKEN_KEY_FILE}.{}.{:016x}.tmp",
        std::process::id(),
        u64::from_ne_bytes(nonce)
    ));
    let written = write_new(&tmp, &key).map_err(write_error(&tmp));
    let published = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(TokenKeyError::Write {
            path: path.to_owned(),
            source,
        }),
    });
    let _ = fs::remove_file(&tmp); // best effort: the key now lives under its real name
    if published? {
        let mut key = TokenKey::from_bytes(&key);
        key.created = true;
        Ok(key)
    } else {
        read(path) // another process made it first
    }
}

/// Writes a file that must not exist yet, with mode 0600 from the start.
fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests;
