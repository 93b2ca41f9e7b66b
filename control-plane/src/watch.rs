//! Watches the config directory by polling it (every 250 ms by default).
//!
//! Polling instead of inotify: it works the same on every filesystem,
//! including the bind mounts and ConfigMap volumes (symlink swaps) a
//! sidecar deployment uses, and a few small files cost nothing to re-read.
//! A file is re-parsed only when its bytes change.
//!
//! A file over [`config::MAX_CONFIG_FILE_BYTES`] is rejected without being
//! read (its size is checked first), so a huge file cannot take the
//! control plane's memory.
//!
//! Each file is accepted or rejected as a whole: a file with an error keeps
//! its last accepted version in force (or nothing, if it never had one),
//! and the error is reported once per distinct content. After any change the
//! accepted set is checked across files (duplicate names, two rules for one
//! host); if that fails, the previously published config stays in force.
//!
//! Rejections are counted in `remora_config_errors_total` (once per
//! rejected content) and `remora_config_files_rejected` (files whose
//! current content is rejected, or that the cross-file check blames);
//! every published config has a version, a hash of the accepted contents,
//! in the `loaded` event and in `remora_config_info`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde_json::json;

use crate::config::model::Resource;
use crate::config::{self, Diagnostic, FileRead, Severity};
use crate::events::emit;
use crate::mesh::Mesh;
use crate::metrics::Metrics;
use crate::translate::fnv1a;

/// How often the directory is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct FileState {
    /// Hash of the bytes last read, accepted or not.
    seen: u64,
    /// The resources of the last accepted version.
    accepted: Vec<Resource>,
    /// Hash of the bytes that gave `accepted` (0 before any was accepted).
    accepted_hash: u64,
    /// Whether the bytes last read were rejected.
    rejected: bool,
}

/// The config directory and what was last read from it.
#[derive(Debug)]
pub struct ConfigDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    last_dir_error: Option<String>,
    generation: u64,
    /// Whether the directory was read once (the first read always
    /// publishes, even an empty config).
    polled: bool,
    /// Files the cross-file check blamed on its last run.
    inconsistent: BTreeSet<PathBuf>,
    metrics: Metrics,
    /// The mesh root namespace, for the cross-file check.
    root_namespace: String,
    /// Files larger than this are rejected unread.
    max_file_bytes: u64,
}

impl ConfigDir {
    /// A directory not read yet, counting rejections in metrics of its own.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_metrics(dir, Metrics::new())
    }

    /// A directory not read yet, counting rejections and the config
    /// version in `metrics`.
    pub fn with_metrics(dir: impl Into<PathBuf>, metrics: Metrics) -> Self {
        ConfigDir {
            dir: dir.into(),
            files: BTreeMap::new(),
            last_dir_error: None,
            generation: 0,
            polled: false,
            inconsistent: BTreeSet::new(),
            metrics,
            root_namespace: config::DEFAULT_ROOT_NAMESPACE.to_owned(),
            max_file_bytes: config::MAX_CONFIG_FILE_BYTES,
        }
    }

    /// Checks PeerAuthentications against `root_namespace` (`--root-namespace`)
    /// rather than Istio's `istio-system`.
    pub fn with_root_namespace(mut self, root_namespace: impl Into<String>) -> Self {
        self.root_namespace = root_namespace.into();
        self
    }

    /// Rejects files larger than `bytes` unread, instead of
    /// [`config::MAX_CONFIG_FILE_BYTES`] (tests use a small limit).
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// How many files are rejected right now: their current content has
    /// an error, or the cross-file check blames them (the directory itself
    /// counts as one while it cannot be read).
    pub fn rejected_files(&self) -> usize {
        let parse = self
            .files
            .iter()
            .filter(|(path, f)| f.rejected && !self.inconsistent.contains(path.as_path()));
        parse.count() + self.inconsistent.len() + usize::from(self.last_dir_error.is_some())
    }

    /// The version of the accepted contents: FNV-1a over each file's name
    /// (relative to the directory) and the hash of its accepted bytes, in
    /// hex. The same files give the same version across restarts.
    pub fn version(&self) -> String {
        let mut text = String::new();
        for (path, f) in &self.files {
            if f.accepted_hash != 0 {
                let name = path.strip_prefix(&self.dir).unwrap_or(path);
                text.push_str(&format!("{}\0{:016x}\n", name.display(), f.accepted_hash));
            }
        }
        format!("{:016x}", fnv1a(text.as_bytes()))
    }

    /// Reads the directory. Returns the resources to publish when the
    /// accepted set changed and is consistent.
    pub fn poll(&mut self) -> Option<Vec<Resource>> {
        let update = self.read_dir();
        self.metrics.set_files_rejected(self.rejected_files());
        if update.is_some() {
            self.metrics.set_config_version(&self.version());
        }
        update
    }

    fn read_dir(&mut self) -> Option<Vec<Resource>> {
        let paths = match config::yaml_files(std::slice::from_ref(&self.dir)) {
            Ok(paths) => {
                self.last_dir_error = None;
                paths
            }
            Err(diagnostic) => {
                // Keep serving what we have; say so once.
                let text = diagnostic.to_string();
                if self.last_dir_error.as_ref() != Some(&text) {
                    eprintln!("{text} (keeping the last good config)");
                    emit("rejected", json!({ "file": self.dir, "errors": [text] }));
                    self.metrics.config_rejected();
                    self.last_dir_error = Some(text);
                }
                return None;
            }
        };

        let mut changed = false;
        let before = self.files.len();
        let listed: HashSet<&PathBuf> = paths.iter().collect();
        self.files.retain(|p, _| listed.contains(p));
        if self.files.len() != before {
            changed = true;
        }
        for path in &paths {
            changed |= self.read(path);
        }
        if !changed && self.polled {
            return None;
        }
        self.polled = true;

        let resources: Vec<Resource> = self
            .files
            .values()
            .flat_map(|f| f.accepted.iter().cloned())
            .collect();
        let diagnostics = config::check_references(&resources, &self.root_namespace);
        report_warnings(&diagnostics);
        let errors: Vec<&Diagnostic> = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        self.inconsistent = errors.iter().map(|d| d.file.clone()).collect();
        if !errors.is_empty() {
            for d in &errors {
                eprintln!("{d}");
            }
            let mut by_file: BTreeMap<&Path, Vec<String>> = BTreeMap::new();
            for d in &errors {
                by_file.entry(&d.file).or_default().push(d.to_string());
            }
            for (file, errors) in by_file {
                emit("rejected", json!({ "file": file, "errors": errors }));
                self.metrics.config_rejected();
            }
            eprintln!("the config set is inconsistent; keeping the last good config");
            return None;
        }
        self.generation += 1;
        emit(
            "loaded",
            json!({
                "generation": self.generation,
                "files": self.files.len(),
                "resources": resources.len(),
                "version": self.version(),
            }),
        );
        Some(resources)
    }

    /// Reads one file; returns whether its accepted resources changed, or
    /// it was rejected and is now accepted again.
    fn read(&mut self, path: &Path) -> bool {
        let limit = self.max_file_bytes;
        let text = match config::read_config_file(path, limit) {
            Ok(FileRead::Bytes(bytes)) => bytes,
            Ok(FileRead::TooLarge { size }) => {
                self.reject_unread(path, config::too_large(path, size, limit));
                return false;
            }
            // Gone between listing and reading: the next poll sees it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", path.display());
                return false;
            }
        };
        let hash = fnv1a(&text);
        if self.files.get(path).is_some_and(|f| f.seen == hash) {
            return false;
        }
        let text = String::from_utf8_lossy(&text);
        let outcome = config::parse_str(path, &text);
        let state = self.files.entry(path.to_owned()).or_insert(FileState {
            seen: hash,
            accepted: Vec::new(),
            accepted_hash: 0,
            rejected: false,
        });
        state.seen = hash;
        let was_rejected = state.rejected;
        state.rejected = outcome.has_errors();
        if outcome.has_errors() {
            let errors: Vec<String> = outcome
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(ToString::to_string)
                .collect();
            for d in &outcome.diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "{}: rejected; {}",
                path.display(),
                if state.accepted.is_empty() {
                    "nothing from it is in force"
                } else {
                    "its last good version stays in force"
                }
            );
            emit("rejected", json!({ "file": path, "errors": errors }));
            self.metrics.config_rejected();
            return false;
        }
        report_warnings(&outcome.diagnostics);
        if state.accepted == outcome.resources {
            // A rejected file restored to its last good content: nothing
            // new is in force, but the set is loaded again (a `loaded`
            // event), so that a watcher sees the file recovered.
            return was_rejected;
        }
        state.accepted = outcome.resources;
        state.accepted_hash = hash;
        true
    }
}

impl ConfigDir {
    /// Rejects `path` without having read it (`error` says why), once per
    /// distinct error; its last accepted version stays in force.
    fn reject_unread(&mut self, path: &Path, error: Diagnostic) {
        let text = error.to_string();
        let marker = fnv1a(text.as_bytes());
        let state = self.files.entry(path.to_owned()).or_insert(FileState {
            seen: 0,
            accepted: Vec::new(),
            accepted_hash: 0,
            rejected: false,
        });
        if state.rejected && state.seen == marker {
            return; // said already
        }
        state.seen = marker;
        state.rejected = true;
        eprintln!(
            "{text}\n{}: rejected; {}",
            path.display(),
            if state.accepted.is_empty() {
                "nothing from it is in force"
            } else {
                "its last good version stays in force"
            }
        );
        emit("rejected", json!({ "file": path, "errors": [text] }));
        self.metrics.config_rejected();
    }
}

fn report_warnings(diagnostics: &[Diagnostic]) {
    for d in diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
    {
        eprintln!("{d}");
    }
}

/// The thread that polls the config directory; dropping it stops the
/// thread (after the poll in progress, if any).
///
/// A thread of its own rather than a task that hands each poll to the
/// blocking pool: reading and parsing are blocking work anyway, they never
/// wait for an async worker, and there is no join handle to fail when the
/// runtime shuts down mid-poll (`remora serve` once panicked on SIGTERM
/// with `JoinError::Cancelled` there).
#[derive(Debug)]
pub struct Watcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Polls `dir` every [`POLL_INTERVAL`] on a new thread, publishing every
    /// consistent change to `mesh`.
    pub fn spawn(dir: ConfigDir, mesh: Arc<Mesh>) -> std::io::Result<Watcher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("config-watcher".into())
            .spawn(move || run(dir, &mesh, &stopped))?;
        Ok(Watcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the config watcher panicked");
        }
    }
}

/// Polls until `stopped` disconnects, sleeping [`POLL_INTERVAL`] between
/// the end of one poll and the start of the next.
fn run(mut dir: ConfigDir, mesh: &Mesh, stopped: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL_INTERVAL) {
        if let Some(resources) = dir.poll() {
            mesh.set_config(resources);
        }
    }
}

#[cfg(test)]
mod tests;
