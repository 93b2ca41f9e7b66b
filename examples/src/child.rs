//! Child processes that announce themselves with JSON events on stdout.
//!
//! Remora's binaries (and the demo app) print one JSON object per line on
//! stdout — `{"event":"listening",...}`, `{"event":"ready",...}` — and log to
//! stderr. [`Child`] spawns such a process, turns its stdout into a stream of
//! events, and keeps the last lines of its stderr so that a process which
//! fails to become ready can be explained.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How many stderr lines a [`Child`] remembers.
const STDERR_LINES: usize = 40;

/// A running child process and its event stream.
///
/// Dropping it kills the process (`kill_on_drop`); [`Child::stop`] ends it
/// politely first.
#[derive(Debug)]
pub struct Child {
    name: String,
    process: tokio::process::Child,
    events: mpsc::UnboundedReceiver<Value>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_task: Option<JoinHandle<()>>,
}

/// Finds `name` (plus the platform's executable suffix) in `dir`, or says how
/// to build it.
pub fn find_binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "cannot find `{name}` in {}; build it with `cargo build --release --workspace --bins` \
             (or point --bin-dir at the directory that holds it)",
            dir.display()
        )
    }
}

impl Child {
    /// Spawns `cmd` as the process called `name` in messages.
    ///
    /// Stdin is closed, stdout is parsed as JSON events (other lines are
    /// ignored), and stderr is kept in a small ring buffer — also echoed to
    /// this process's stderr, prefixed with `name`, when `echo_stderr` is set.
    /// Children get `RUST_LOG=warn` unless the caller's environment sets
    /// `RUST_LOG`.
    pub fn spawn(name: &str, mut cmd: Command, echo_stderr: bool) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut process = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.as_std()))?;

        let stdout = process.stdout.take().context("child stdout is piped")?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event @ Value::Object(_)) = serde_json::from_str::<Value>(&line) {
                    // The receiver may be gone during shutdown; keep draining.
                    let _ = tx.send(event);
                }
            }
        });

        let stderr_pipe = process.stderr.take().context("child stderr is piped")?;
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_LINES)));
        let ring = Arc::clone(&stderr);
        let prefix = name.to_owned();
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo_stderr {
                    eprintln!("[{prefix}] {line}");
                }
                let mut ring = ring.lock().unwrap_or_else(|p| p.into_inner());
                if ring.len() == STDERR_LINES {
                    ring.pop_front();
                }
                ring.push_back(line);
            }
        });

        Ok(Self {
            name: name.to_owned(),
            process,
            events,
            stderr,
            stderr_task: Some(stderr_task),
        })
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits up to `timeout` for the next event called `event`, skipping
    /// other events, and returns it whole.
    ///
    /// Fails — naming the process and quoting its last stderr lines — when
    /// the time runs out or the process exits first.
    pub async fn wait_event(&mut self, event: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(v)) if v.get("event").and_then(Value::as_str) == Some(event) => {
                    return Ok(v);
                }
                Ok(Some(_other)) => continue,
                Ok(None) => {
                    // Stdout closed: the process is exiting or gone.
                    let status =
                        match tokio::time::timeout(Duration::from_secs(2), self.process.wait())
                            .await
                        {
                            Ok(Ok(s)) => format!("exited with {s}"),
                            Ok(Err(e)) => format!("closed its stdout (wait failed: {e})"),
                            Err(_) => "closed its stdout".to_owned(),
                        };
                    return Err(self
                        .failure(&format!(
                            "{} {status} before reporting `{event}`",
                            self.name
                        ))
                        .await);
                }
                Err(_) => {
                    return Err(self
                        .failure(&format!(
                            "{} did not report `{event}` within {timeout:?}",
                            self.name
                        ))
                        .await);
                }
            }
        }
    }

    /// Like [`wait_event`](Self::wait_event), then reads the string field
    /// `field` of the event (an address, usually).
    pub async fn wait_field(
        &mut self,
        event: &str,
        field: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let v = self.wait_event(event, timeout).await?;
        v.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{}'s `{event}` event has no `{field}`: {v}", self.name))
    }

    /// The last lines the process wrote to stderr, oldest first.
    pub fn stderr_tail(&self) -> Vec<String> {
        let ring = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }

    /// An error saying `what`, followed by the stderr tail. When the process
    /// has exited, first lets its stderr reader catch up (briefly).
    pub async fn failure(&mut self, what: &str) -> anyhow::Error {
        if matches!(self.process.try_wait(), Ok(Some(_)))
            && let Some(task) = self.stderr_task.take()
        {
            let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
        }
        let tail = self.stderr_tail();
        if tail.is_empty() {
            anyhow!("{what} (it wrote nothing to stderr)")
        } else {
            anyhow!(
                "{what}; its last stderr lines:\n    {}",
                tail.join("\n    ")
            )
        }
    }

    /// Asks the process to exit (SIGTERM; on other platforms, a kill).
    pub fn terminate(&mut self) {
        if matches!(self.process.try_wait(), Ok(Some(_))) {
            return;
        }
        #[cfg(unix)]
        {
            let pid = self
                .process
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid
                && rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
            {
                return;
            }
        }
        let _ = self.process.start_kill();
    }

    /// Waits for the process to exit until `deadline`, then kills it.
    /// Returns how it ended.
    pub async fn wait_or_kill(&mut self, deadline: Instant) -> std::io::Result<ExitStatus> {
        match tokio::time::timeout_at(deadline, self.process.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.process.start_kill()?;
                self.process.wait().await
            }
        }
    }

    /// Terminates the process, giving it `grace` before killing it.
    pub async fn stop(mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        self.terminate();
        self.wait_or_kill(Instant::now() + grace).await
    }
}

/// Stops every child: SIGTERM to all at once, then up to `grace` (shared)
/// for them to exit before the stragglers are killed. Returns the children
/// that had to be killed or failed to stop, by name.
pub async fn stop_all(children: &mut Vec<Child>, grace: Duration) -> Vec<String> {
    for c in children.iter_mut() {
        c.terminate();
    }
    let deadline = Instant::now() + grace;
    let mut forced = Vec::new();
    for mut c in children.drain(..).rev() {
        let in_time = tokio::time::timeout_at(deadline, c.process.wait()).await;
        if !matches!(in_time, Ok(Ok(_))) {
            forced.push(c.name.clone());
            let _ = c.wait_or_kill(Instant::now()).await;
        }
    }
    forced
}
