//! A child process whose stdout is a stream of JSON events (one object per
//! line, as `remora`, `remora-proxy` and `remora-demo-app` print them).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How many stderr lines a [`Process`] keeps for failure messages.
const STDERR_TAIL: usize = 200;

/// One line of a process's stdout, parsed, with the time it was read.
#[derive(Debug, Clone)]
pub struct Event {
    /// When the harness read the line (shortly after the process wrote it).
    pub at: Instant,
    /// The JSON object as printed.
    pub value: Value,
}

impl Event {
    /// The `event` field.
    pub fn name(&self) -> &str {
        self.value["event"].as_str().unwrap_or("")
    }

    /// A string field, or `""` if absent.
    pub fn str(&self, key: &str) -> &str {
        self.value[key].as_str().unwrap_or("")
    }
}

/// What the reader tasks share with the [`Process`].
#[derive(Debug, Default)]
struct Output {
    events: Vec<Event>,
    stderr: VecDeque<String>,
    stdout_closed: bool,
    stderr_closed: bool,
}

/// A spawned child process, killed when dropped.
///
/// Two tasks read its output: stdout lines become [`Event`]s (lines that
/// are not JSON objects go to the stderr tail, marked `[stdout]`), and the
/// last [`STDERR_TAIL`] lines of stderr are kept for failure messages.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    output: Arc<Mutex<Output>>,
    changed: watch::Sender<u64>,
    /// Per event name: the index after the last event returned by `wait_event`.
    cursors: HashMap<String, usize>,
}

impl Process {
    /// Spawns `program args...`; `name` labels it in failure messages.
    /// Panics if it cannot be spawned.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn {}: {e}", program.display()));
        let output = Arc::new(Mutex::new(Output::default()));
        let changed = watch::Sender::new(0u64);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        tokio::spawn(read_lines(
            stdout,
            Arc::clone(&output),
            changed.clone(),
            Stream::Stdout,
        ));
        tokio::spawn(read_lines(
            stderr,
            Arc::clone(&output),
            changed.clone(),
            Stream::Stderr,
        ));
        Self {
            name: name.to_owned(),
            child,
            output,
            changed,
            cursors: HashMap::new(),
        }
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The number of events so far: pass it to [`Process::wait_for`] or
    /// [`Process::events_since`] to look only at later events.
    pub fn mark(&self) -> usize {
        self.lock().events.len()
    }

    /// The events from index `since` on.
    pub fn events_since(&self, since: usize) -> Vec<Event> {
        self.lock().events.get(since..).unwrap_or_default().to_vec()
    }

    /// The last lines of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let out = self.lock();
        out.stderr.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The next `name` event not yet returned by this method (each event
    /// name has its own cursor), waiting up to `timeout`. Panics with the
    /// process's stderr tail on timeout or if the process exits first.
    pub async fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        self.wait_event_at(name, timeout).await.value
    }

    /// As [`Process::wait_event`], with the time the event was read.
    pub async fn wait_event_at(&mut self, name: &str, timeout: Duration) -> Event {
        let since = self.cursors.get(name).copied().unwrap_or(0);
        let (index, event) = self
            .find(since, timeout, &format!("`{name}` event"), |e| {
                e.name() == name
            })
            .await;
        self.cursors.insert(name.to_owned(), index + 1);
        event
    }

    /// The first event from index `since` on for which `pred` holds,
    /// waiting up to `timeout`; `what` describes it in the panic message.
    /// Does not move [`Process::wait_event`]'s cursors.
    pub async fn wait_for(
        &mut self,
        since: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Event {
        self.find(since, timeout, what, pred).await.1
    }

    async fn find(
        &mut self,
        since: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> (usize, Event) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            let closed = {
                let out = self.lock();
                let found = out
                    .events
                    .iter()
                    .enumerate()
                    .skip(since)
                    .find(|(_, e)| pred(e));
                if let Some((i, e)) = found {
                    return (i, e.clone());
                }
                out.stdout_closed
            };
            if closed {
                let status = self.wait_exit(Duration::from_secs(2)).await;
                self.drain_stderr(Duration::from_secs(1)).await;
                panic!(
                    "{}: exited ({status:?}) before printing {what}\nevents: {}\nstderr tail:\n{}",
                    self.name,
                    self.events_summary(),
                    self.stderr_tail()
                );
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!(
                    "{}: no {what} within {timeout:?}\nevents: {}\nstderr tail:\n{}",
                    self.name,
                    self.events_summary(),
                    self.stderr_tail()
                );
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout` for it
    /// to exit; returns its status, or `None` if it is still running.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(pid) = self.child.id() {
            // `kill -TERM`: the workspace forbids the `unsafe` a direct
            // libc call would need.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        self.wait_exit(timeout).await
    }

    /// Waits up to `timeout` for the process to exit. Once it has, its
    /// last stderr lines are read (for up to a second) before this returns,
    /// so that [`Process::stderr_tail`] has its last words.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        if status.is_some() {
            self.drain_stderr(Duration::from_secs(1)).await;
        }
        status
    }

    async fn drain_stderr(&self, timeout: Duration) {
        let mut changed = self.changed.subscribe();
        let _ = tokio::time::timeout(timeout, async {
            while !self.lock().stderr_closed {
                if changed.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }

    fn events_summary(&self) -> String {
        let out = self.lock();
        let list: Vec<String> = out.events.iter().map(|e| e.value.to_string()).collect();
        format!("[{}]", list.join(", "))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Output> {
        // A reader task that panicked cannot leave `Output` inconsistent.
        self.output.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    output: Arc<Mutex<Output>>,
    changed: watch::Sender<u64>,
    stream: Stream,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let at = Instant::now();
        {
            let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
            match (stream, serde_json::from_str::<Value>(&line)) {
                (Stream::Stdout, Ok(value)) if value.is_object() => {
                    out.events.push(Event { at, value });
                }
                (Stream::Stdout, _) => push_tail(&mut out.stderr, format!("[stdout] {line}")),
                (Stream::Stderr, _) => push_tail(&mut out.stderr, line),
            }
        }
        changed.send_modify(|n| *n += 1);
    }
    {
        let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
        match stream {
            Stream::Stdout => out.stdout_closed = true,
            Stream::Stderr => out.stderr_closed = true,
        }
    }
    changed.send_modify(|n| *n += 1);
}

fn push_tail(tail: &mut VecDeque<String>, line: String) {
    if tail.len() == STDERR_TAIL {
        tail.pop_front();
    }
    tail.push_back(line);
}
