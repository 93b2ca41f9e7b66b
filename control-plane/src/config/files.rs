//! Which files a list of command-line paths stands for, and reading one
//! within the size limit of a config file.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::Diagnostic;

/// The largest config file `remora serve` and `remora validate` read:
/// 4 MiB. A larger one is rejected without being read or parsed, naming the
/// file, its size and the limit; its last good version stays in force.
///
/// Parsing holds a file's YAML tree in memory at several times its size,
/// and a config this large gives snapshots over what a proxy accepts
/// (`remora_proto::MAX_SNAPSHOT_BYTES`) anyway; a mesh that needs more
/// splits its config into several files. Kubernetes keeps each object
/// under 1.5 MiB (etcd's request limit) for the same reasons.
pub const MAX_CONFIG_FILE_BYTES: u64 = 4 << 20;

/// What reading a config file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    /// The whole file.
    Bytes(Vec<u8>),
    /// The file holds `size` bytes, over the limit: it was not read.
    TooLarge {
        /// Its size (at least the limit plus one).
        size: u64,
    },
}

/// Reads `path` whole if it holds at most `limit` bytes. The size is
/// checked before reading, and again while reading (a file that grows in
/// between is cut off at `limit + 1` bytes and reported too large).
pub fn read_config_file(path: &Path, limit: u64) -> std::io::Result<FileRead> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Ok(FileRead::TooLarge { size });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > limit {
        return Ok(FileRead::TooLarge { size: read });
    }
    Ok(FileRead::Bytes(bytes))
}

/// The error for a file of `size` bytes over `limit`.
pub fn too_large(path: &Path, size: u64, limit: u64) -> Diagnostic {
    Diagnostic::file_error(
        path,
        format!(
            "the file is {size} bytes, over the limit of {limit} bytes ({:.0} MiB) for one config \
             file; it was not read (split the config into several files)",
            limit as f64 / f64::from(1 << 20)
        ),
    )
}

/// Expands `paths` into the YAML files to read, in order.
///
/// A directory stands for its `*.yaml` and `*.yml` files (not recursive,
/// sorted by name, hidden files skipped); a file is taken as is, whatever
/// its name. A path given twice is read once. A missing path or an
/// unreadable directory is an error.
pub fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut out = Unique::default();
    for path in paths {
        let metadata = std::fs::metadata(path)
            .map_err(|e| Diagnostic::file_error(path, format!("cannot read: {e}")))?;
        if !metadata.is_dir() {
            out.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| Diagnostic::file_error(path, format!("cannot list directory: {e}")))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| Diagnostic::file_error(path, format!("cannot list directory: {e}")))?;
            let file = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_yaml = file.extension().is_some_and(|ext| {
                ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml")
            });
            if is_yaml && !name.starts_with('.') && file.is_file() {
                found.push(file);
            }
        }
        found.sort();
        for file in found {
            out.push(file);
        }
    }
    Ok(out.paths)
}

/// Paths in the order first pushed, each once (a set beside the list: a
/// directory of many files is expanded in linear time).
#[derive(Debug, Default)]
struct Unique {
    paths: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
}

impl Unique {
    fn push(&mut self, path: PathBuf) {
        if self.seen.insert(path.clone()) {
            self.paths.push(path);
        }
    }
}

#[cfg(test)]
mod tests;
