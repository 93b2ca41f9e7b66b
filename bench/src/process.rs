//! The processes under test: spawned pinned to the servers' core, their
//! stdout read as JSON events (`{"event":"listening",...}`), their stderr
//! written to a log file in the run's temporary directory, and stopped
//! (SIGTERM, then SIGKILL) when the run ends.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a process gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where processes run: `taskset -c <cpu>` when pinning is possible.
#[derive(Debug, Clone)]
pub struct Pinning {
    /// The core for servers and proxies; `None` runs them unpinned.
    pub server_cpu: Option<usize>,
}

/// A running process under test.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    pid: u32,
    events: mpsc::UnboundedReceiver<Value>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `program args` (pinned per `pin`), stderr into
    /// `<log_dir>/<name>.log`.
    pub fn spawn<I, S>(
        name: &str,
        program: &Path,
        args: I,
        pin: &Pinning,
        log_dir: &Path,
    ) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = match pin.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args);
        let log = log_dir.join(format!("{}.log", name.replace([' ', '/'], "-")));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            events,
            log,
        })
    }

    /// The process id (`taskset` execs the program, keeping its pid).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last lines of the process's stderr log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n    ")
    }

    /// Waits up to `timeout` for the event `name` and returns it.
    pub async fn wait_event(&mut self, name: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(v)) if v.get("event").and_then(Value::as_str) == Some(name) => {
                    return Ok(v);
                }
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(anyhow!(
                        "{} exited before reporting `{name}`; its log:\n    {}",
                        self.name,
                        self.log_tail()
                    ));
                }
                Err(_) => {
                    return Err(anyhow!(
                        "{} did not report `{name}` within {timeout:?}; its log:\n    {}",
                        self.name,
                        self.log_tail()
                    ));
                }
            }
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM (through `kill(1)`: the workspace forbids `unsafe`), up to
    /// two seconds to exit, then SIGKILL.
    pub async fn stop(mut self) {
        if self.exited() {
            return;
        }
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}
