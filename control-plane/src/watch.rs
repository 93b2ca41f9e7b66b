//! Watches the config directory by polling it (every 250 ms by default).
//!
//! Polling instead of inotify: it works the same on every filesystem,
//! including the bind mounts and ConfigMap volumes (symlink swaps) a
//! sidecar deployment uses, and a few small files cost nothing to re-read.
//! A file is re-parsed only when its bytes change.
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::config::model::Resource;
use crate::config::{self, Diagnostic, Severity};
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
        }
    }

    /// Checks PeerAuthentications against `root_namespace` (`--root-namespace`)
    /// rather than Istio's `istio-system`.
    pub fn with_root_namespace(mut self, root_namespace: impl Into<String>) -> Self {
        self.root_namespace = root_namespace.into();
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
        self.files.retain(|p, _| paths.contains(p));
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

    /// Reads one file; returns whether its accepted resources changed.
    fn read(&mut self, path: &Path) -> bool {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
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
            return false;
        }
        state.accepted = outcome.resources;
        state.accepted_hash = hash;
        true
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

/// Polls `dir` forever, publishing every consistent change to `mesh`.
pub async fn run(mut dir: ConfigDir, mesh: Arc<Mesh>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Reading files blocks; keep it off the async workers.
        let (back, update) = tokio::task::spawn_blocking(move || {
            let update = dir.poll();
            (dir, update)
        })
        .await
        .expect("config poll panicked");
        dir = back;
        if let Some(resources) = update {
            mesh.set_config(resources);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: WEIGHT
    - destination: {host: reviews, subset: v2}
      weight: 10
";

    fn write(dir: &Path, name: &str, text: &str) {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, dir.join(name)).unwrap();
    }

    fn weights(resources: &[Resource]) -> Vec<u32> {
        match &resources[0].spec {
            crate::config::model::Spec::VirtualService(vs) => {
                vs.http[0].route.iter().map(|d| d.weight).collect()
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_bad_version_of_a_file_keeps_its_last_good_version() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dir = ConfigDir::new(tmp.path());
        assert_eq!(
            dir.poll(),
            Some(Vec::new()),
            "an empty dir is a valid config"
        );
        assert_eq!(dir.poll(), None, "nothing changed");

        write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
        assert_eq!(weights(&dir.poll().unwrap()), [90, 10]);

        // Broken: rejected, nothing published, and reported only once.
        write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "\"ninety\""));
        assert_eq!(dir.poll(), None);
        assert_eq!(dir.poll(), None);
        let kept: Vec<Resource> = dir
            .files
            .values()
            .flat_map(|f| f.accepted.clone())
            .collect();
        assert_eq!(weights(&kept), [90, 10]);

        write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "50"));
        assert_eq!(weights(&dir.poll().unwrap()), [50, 10]);

        // Hidden and non-YAML files are not config.
        write(tmp.path(), "notes.txt", "not yaml: [");
        assert_eq!(dir.poll(), None);

        std::fs::remove_file(tmp.path().join("vs.yaml")).unwrap();
        assert_eq!(dir.poll(), Some(Vec::new()));
    }

    #[test]
    fn an_inconsistent_set_is_not_published() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dir = ConfigDir::new(tmp.path());
        write(tmp.path(), "a.yaml", &VS.replace("WEIGHT", "90"));
        assert!(dir.poll().is_some());
        // The same VirtualService defined again in another file.
        write(tmp.path(), "b.yaml", &VS.replace("WEIGHT", "50"));
        assert_eq!(dir.poll(), None);
        std::fs::remove_file(tmp.path().join("b.yaml")).unwrap();
        assert_eq!(weights(&dir.poll().unwrap()), [90, 10]);
    }

    fn series(metrics: &Metrics, name: &str) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rejected_files_are_counted_and_the_version_follows_the_accepted_content() {
        let tmp = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let mut dir = ConfigDir::with_metrics(tmp.path(), metrics.clone());
        write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
        assert!(dir.poll().is_some());
        let v90 = dir.version();
        assert_eq!(
            series(&metrics, "remora_config_info"),
            [format!("remora_config_info{{version=\"{v90}\"}} 1")]
        );

        write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "\"ninety\""));
        assert_eq!(dir.poll(), None);
        assert_eq!(dir.poll(), None, "the same content is reported once");
        assert_eq!(dir.rejected_files(), 1);
        assert_eq!(dir.version(), v90, "the last good version is in force");
        assert_eq!(
            series(&metrics, "remora_config_files_rejected"),
            ["remora_config_files_rejected 1"]
        );
        assert_eq!(
            series(&metrics, "remora_config_errors_total"),
            ["remora_config_errors_total 1"]
        );

        write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "50"));
        assert!(dir.poll().is_some());
        assert_eq!(dir.rejected_files(), 0);
        assert_ne!(dir.version(), v90);
        write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
        assert!(dir.poll().is_some());
        assert_eq!(dir.version(), v90, "the version is a function of content");

        // The second definition of the same VirtualService is blamed.
        write(tmp.path(), "b.yaml", &VS.replace("WEIGHT", "50"));
        assert_eq!(dir.poll(), None);
        assert_eq!(dir.rejected_files(), 1);
        assert_eq!(
            series(&metrics, "remora_config_errors_total"),
            ["remora_config_errors_total 2"]
        );
        std::fs::remove_file(tmp.path().join("b.yaml")).unwrap();
        assert!(dir.poll().is_some());
        assert_eq!(dir.rejected_files(), 0);
        assert_eq!(
            series(&metrics, "remora_config_files_rejected"),
            ["remora_config_files_rejected 0"]
        );
        assert_eq!(
            series(&metrics, "remora_config_info"),
            [format!("remora_config_info{{version=\"{v90}\"}} 1")]
        );
    }

    #[test]
    fn a_missing_directory_keeps_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("mesh");
        std::fs::create_dir(&sub).unwrap();
        let mut dir = ConfigDir::new(&sub);
        write(&sub, "vs.yaml", &VS.replace("WEIGHT", "90"));
        assert!(dir.poll().is_some());
        std::fs::remove_dir_all(&sub).unwrap();
        assert_eq!(dir.poll(), None);
    }
}
