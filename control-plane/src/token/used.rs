//! The single-use tokens the CA has signed a certificate for, kept in the data directory so
//! that a restart does not forget them.
//!
//! The file ([`USED_TOKENS_FILE`], mode 0600) has one line per used token, `<expiry> <id>`,
//! appended and synced before the certificate is returned: a crash after a certificate was
//! issued cannot make its token usable again. An entry is dropped once its token has expired
//! (the token is refused then anyway); the file is rewritten without them when it holds twice
//! as many lines as live entries. At most [`MAX_USED_TOKENS`] live entries are kept: past that,
//! single-use tokens are refused (fail closed) until some expire.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The used single-use tokens, in the data directory.
pub const USED_TOKENS_FILE: &str = "used-tokens";
/// The most single-use tokens remembered at once.
pub const MAX_USED_TOKENS: usize = 1_000_000;

/// Why a single-use token cannot be used, or the record of used ones cannot be kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsedTokenError {
    /// The token was used before.
    #[error(
        "the single-use bootstrap token {id} was already used to get a certificate; make a new \
         one with `remora token create --single-use` (a proxy that holds a valid certificate \
         renews with it, without the token)"
    )]
    AlreadyUsed {
        /// The token's ID.
        id: String,
    },
    /// [`MAX_USED_TOKENS`] unexpired single-use tokens are remembered already.
    #[error(
        "{MAX_USED_TOKENS} unexpired single-use tokens are remembered already; single-use tokens \
         are refused until some expire (give them shorter --ttl)"
    )]
    Full,
    /// The file could not be read or written.
    #[error("cannot {action} the used-token record {}: {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A line of the file is not `<expiry> <id>`.
    #[error("the used-token record {} line {line} is not `<expiry> <id>`", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
    },
}

/// The record of used single-use tokens. `claim` is serialised by a lock held across the file
/// write: single-use tokens are for bootstrap, rare next to renewals.
#[derive(Debug)]
pub struct UsedTokens {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// ID → expiry (Unix seconds).
    live: HashMap<String, u64>,
    /// Lines in the file.
    lines: usize,
}

impl UsedTokens {
    /// Reads [`USED_TOKENS_FILE`] in `dir` (none yet: nothing used), dropping what expired
    /// before `now_unix`.
    pub fn load(dir: &Path, now_unix: u64) -> Result<Self, UsedTokenError> {
        let path = dir.join(USED_TOKENS_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(UsedTokenError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let mut live = HashMap::new();
        let mut lines = 0;
        for (i, line) in text.lines().enumerate() {
            lines += 1;
            let parsed = line
                .split_once(' ')
                .and_then(|(at, id)| Some((at.parse::<u64>().ok()?, id)));
            let Some((expires, id)) = parsed else {
                return Err(UsedTokenError::Corrupt { path, line: i + 1 });
            };
            if expires > now_unix {
                live.insert(id.to_owned(), expires);
            }
        }
        Ok(Self {
            path,
            state: Mutex::new(State { live, lines }),
        })
    }

    /// Records that the token `id`, valid until `expires_unix`, is used now (`now_unix`);
    /// refuses it if it was used before. The record is on disk when this returns `Ok`.
    pub fn claim(&self, id: &str, expires_unix: u64, now_unix: u64) -> Result<(), UsedTokenError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.live.retain(|_, expires| *expires > now_unix);
        if state.live.contains_key(id) {
            return Err(UsedTokenError::AlreadyUsed { id: id.to_owned() });
        }
        if state.live.len() >= MAX_USED_TOKENS {
            return Err(UsedTokenError::Full);
        }
        let write = |source| UsedTokenError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        };
        if state.lines >= 2 * state.live.len() + 1024 {
            self.rewrite(&state.live).map_err(write)?;
            state.lines = state.live.len();
        }
        append(&self.path, &format!("{expires_unix} {id}\n")).map_err(write)?;
        state.lines += 1;
        state.live.insert(id.to_owned(), expires_unix);
        Ok(())
    }

    /// How many unexpired used tokens are remembered.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the file with the live entries (a temporary file renamed into place).
    fn rewrite(&self, live: &HashMap<String, u64>) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::new();
        for (id, expires) in live {
            text.push_str(&format!("{expires} {id}\n"));
        }
        let mut file = private(&tmp, true)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)
    }
}

fn append(path: &Path, line: &str) -> io::Result<()> {
    let mut file = private(path, false)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Opens `path` for writing with mode 0600 (truncated, or appended to).
fn private(path: &Path, truncate: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true);
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests;
