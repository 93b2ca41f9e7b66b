//! Running `nft`: the rules go to `nft -f -` on its stdin, so the whole
//! script is one netlink transaction (all of it applies, or none).
//!
//! We call the program rather than link libnftables (GPL) or speak
//! nf_tables netlink ourselves: see docs/decisions.md.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where `nft` is looked for when neither `--nft` nor `REMORA_NFT` names it
/// and it is not on `PATH`.
pub(crate) const FALLBACK_NFT: &str = "/usr/sbin/nft";

/// Why the rules could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    /// No `nft` program was found.
    #[error(
        "nft not found on PATH nor at {FALLBACK_NFT}: install nftables or pass --nft (REMORA_NFT)"
    )]
    NotFound,
    /// `nft` could not be started.
    #[error("cannot run {}: {source}", path.display())]
    Spawn {
        /// The program.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel refused: no NET_ADMIN in this network namespace.
    #[error(
        "changing this network namespace's rules needs the NET_ADMIN capability (run as root or grant NET_ADMIN); nft said: {detail}"
    )]
    NotPermitted {
        /// nft's message.
        detail: String,
    },
    /// `nft` failed for another reason.
    #[error("nft failed ({status}): {detail}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stderr, on one line.
        detail: String,
    },
}

/// The `nft` to run: `explicit` if given, else the first `nft` on `PATH`,
/// else [`FALLBACK_NFT`] if it exists.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, NftError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nft"))
            .find(|p| p.is_file())
    });
    match on_path {
        Some(p) => Ok(p),
        None if Path::new(FALLBACK_NFT).is_file() => Ok(FALLBACK_NFT.into()),
        None => Err(NftError::NotFound),
    }
}

/// Applies `script` with `nft -f -` in one transaction.
pub fn apply(nft: &Path, script: &str) -> Result<(), NftError> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NftError::Spawn {
            path: nft.to_path_buf(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows as nft's own failure below.
        let _ = stdin.write_all(script.as_bytes());
    }
    let output = child.wait_with_output().map_err(|source| NftError::Spawn {
        path: nft.to_path_buf(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let detail = one_line(&String::from_utf8_lossy(&output.stderr));
    if detail.contains("Operation not permitted") {
        Err(NftError::NotPermitted { detail })
    } else {
        Err(NftError::Failed {
            status: output.status,
            detail,
        })
    }
}

/// nft's multi-line diagnostics (the message, the offending line, a caret
/// line) on one line: the non-blank lines that are not only carets.
fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == '~'))
        .collect();
    if lines.is_empty() {
        "(no message)".to_owned()
    } else {
        lines.join(" | ")
    }
}

#[cfg(test)]
mod tests;
