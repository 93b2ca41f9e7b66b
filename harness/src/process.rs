//! A spawned child whose stdout is a stream of JSON events.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::error::{Error, Report};
use crate::event::Event;

/// How many stderr lines a [`Process`] keeps (or quotes from its log file)
/// for failure messages.
const STDERR_TAIL: usize = 200;

/// How much of the end of a log file ([`Stderr::File`]) is read for its tail.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// Where a [`Process`]'s stderr goes.
#[derive(Debug, Clone, Default)]
pub enum Stderr {
    /// Read by the harness; the last lines are kept for failure messages
    /// and [`Process::stderr_tail`].
    #[default]
    Keep,
    /// As [`Stderr::Keep`], and each line is also echoed to this process's
    /// stderr, prefixed with the child's name in brackets.
    Echo,
    /// Written by the child straight into this file (created or truncated),
    /// which [`Process::stderr_tail`] then quotes the end of.
    File(PathBuf),
}

/// What the reader tasks share with the [`Process`].
#[derive(Debug, Default)]
struct Output {
    events: Vec<Event>,
    /// The stderr tail (when stderr is read here) and stdout lines that
    /// were not JSON objects, marked `[stdout]`.
    tail: VecDeque<String>,
    stdout_closed: bool,
    stderr_closed: bool,
}

/// A spawned child process, killed when dropped.
///
/// Two tasks read its output: stdout lines that are JSON objects become
/// [`Event`]s, kept for the process's lifetime (other lines go to the
/// stderr tail, marked `[stdout]`); the last [`STDERR_TAIL`] lines of stderr
/// are kept for failure messages unless stderr goes to a file.
///
/// Each event name has its own cursor: [`Process::wait_event`] returns the
/// next `name` event not yet returned, however many other events came
/// between, so waiting for `listening` and then `ready` works in either
/// order of printing.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    output: Arc<Mutex<Output>>,
    changed: watch::Sender<u64>,
    /// Per event name: the index after the last event returned by `wait_event`.
    cursors: HashMap<String, usize>,
    /// The file stderr goes to ([`Stderr::File`]).
    log: Option<PathBuf>,
}

impl Process {
    /// Spawns `program args...` with its stderr kept ([`Stderr::Keep`]);
    /// `name` labels it in messages. Panics if it cannot be spawned.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args);
        Self::try_spawn(name, command, Stderr::Keep).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Spawns `command` as the process called `name` in messages, stderr
    /// going where `stderr` says. Stdin is closed and stdout is read here;
    /// everything else (arguments, environment, working directory) is the
    /// caller's.
    pub fn try_spawn(name: &str, mut command: Command, stderr: Stderr) -> Result<Self, Error> {
        let log = match &stderr {
            Stderr::File(path) => Some(path.clone()),
            Stderr::Keep | Stderr::Echo => None,
        };
        let stderr_to = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).map_err(|error| Error::Log {
                name: name.to_owned(),
                path: path.clone(),
                error,
            })?),
            None => Stdio::piped(),
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_to)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|error| Error::Spawn {
            name: name.to_owned(),
            program: command
                .as_std()
                .get_program()
                .to_string_lossy()
                .into_owned(),
            error,
        })?;
        let output = Arc::new(Mutex::new(Output {
            stderr_closed: log.is_some(),
            ..Output::default()
        }));
        let changed = watch::Sender::new(0u64);
        let echo = matches!(stderr, Stderr::Echo).then(|| name.to_owned());
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(read_lines(
                stdout,
                Arc::clone(&output),
                changed.clone(),
                Stream::Stdout,
                echo.clone(),
            ));
        }
        if let Some(pipe) = child.stderr.take() {
            tokio::spawn(read_lines(
                pipe,
                Arc::clone(&output),
                changed.clone(),
                Stream::Stderr,
                echo,
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            output,
            changed,
            cursors: HashMap::new(),
            log,
        })
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id, until the process has been reaped.
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

    /// The last lines of stderr (from its file, with [`Stderr::File`]),
    /// newline-separated, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let mut lines = self.log.as_deref().map(log_tail).unwrap_or_default();
        lines.extend(self.lock().tail.iter().cloned());
        let skip = lines.len().saturating_sub(STDERR_TAIL);
        lines[skip..].join("\n")
    }

    /// The next `name` event not yet returned by this method or
    /// [`Process::wait_event_at`] (each event name has its own cursor),
    /// waiting up to `timeout`. Panics with the process's events and stderr
    /// tail on timeout or if the process exits first.
    pub async fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        self.wait_event_at(name, timeout).await.value
    }

    /// As [`Process::wait_event`], with the time the event was read.
    pub async fn wait_event_at(&mut self, name: &str, timeout: Duration) -> Event {
        self.try_wait_event_at(name, timeout)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Process::wait_event`], returning the failure instead of panicking.
    pub async fn try_wait_event(&mut self, name: &str, timeout: Duration) -> Result<Value, Error> {
        Ok(self.try_wait_event_at(name, timeout).await?.value)
    }

    /// As [`Process::wait_event_at`], returning the failure instead of panicking.
    pub async fn try_wait_event_at(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<Event, Error> {
        let since = self.cursors.get(name).copied().unwrap_or(0);
        let (index, event) = self
            .find(since, timeout, &format!("`{name}` event"), |e| {
                e.name() == name
            })
            .await?;
        self.cursors.insert(name.to_owned(), index + 1);
        Ok(event)
    }

    /// As [`Process::try_wait_event`], then the string field `field` of the
    /// event (an address, usually).
    pub async fn try_wait_field(
        &mut self,
        event: &str,
        field: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let value = self.try_wait_event(event, timeout).await?;
        match value[field].as_str() {
            Some(text) => Ok(text.to_owned()),
            None => Err(Error::MissingField {
                name: self.name.clone(),
                event: event.to_owned(),
                field: field.to_owned(),
                value,
            }),
        }
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
        match self.find(since, timeout, what, pred).await {
            Ok((_, event)) => event,
            Err(e) => panic!("{e}"),
        }
    }

    async fn find(
        &mut self,
        since: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<(usize, Event), Error> {
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
                    return Ok((i, e.clone()));
                }
                out.stdout_closed
            };
            if closed {
                let status = match self.wait_exit(Duration::from_secs(2)).await {
                    Some(status) => status.to_string(),
                    None => "stdout closed, still running".to_owned(),
                };
                return Err(Error::Exited {
                    name: self.name.clone(),
                    what: what.to_owned(),
                    status,
                    report: self.report(),
                });
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Err(Error::Timeout {
                    name: self.name.clone(),
                    what: what.to_owned(),
                    timeout,
                    report: self.report(),
                });
            }
        }
    }

    /// An error saying `what` (something the caller saw go wrong), with
    /// the process's events and stderr tail. When the process has exited,
    /// its last stderr lines are read first (for up to a second).
    pub async fn failure(&mut self, what: &str) -> Error {
        if self.has_exited() {
            self.drain_stderr(Duration::from_secs(1)).await;
        }
        Error::Failed {
            name: self.name.clone(),
            what: what.to_owned(),
            report: self.report(),
        }
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM, unless the process has already been reaped. Returns
    /// at once; see [`Process::terminate`] and [`Process::stop`] to wait.
    pub fn sigterm(&self) {
        let pid = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // It may have exited meanwhile: nothing to do then.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout` for it
    /// to exit; returns its status, or `None` if it is still running.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.sigterm();
        self.wait_exit(timeout).await
    }

    /// Stops the process: SIGTERM, up to `grace` to exit, then SIGKILL.
    /// Returns how it ended.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        match self.terminate(grace).await {
            Some(status) => Ok(status),
            None => {
                self.child.start_kill()?;
                self.child.wait().await
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
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

    fn report(&self) -> Report {
        let events = self.lock().events.iter().map(|e| e.value.clone()).collect();
        Report {
            events,
            stderr_tail: self.stderr_tail(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Output> {
        // A reader task that panicked cannot leave `Output` inconsistent.
        self.output.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Stops every process: SIGTERM to all at once, then up to `grace` (shared)
/// for them to exit, last started first, before the stragglers are killed.
/// Empties `processes`; returns the names of those that had to be killed.
pub async fn stop_all(processes: &mut Vec<Process>, grace: Duration) -> Vec<String> {
    for p in processes.iter() {
        p.sigterm();
    }
    let deadline = tokio::time::Instant::now() + grace;
    let mut forced = Vec::new();
    for mut p in processes.drain(..).rev() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if p.wait_exit(left).await.is_none() {
            forced.push(p.name.clone());
            p.kill().await;
        }
    }
    forced
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads `pipe` line by line into `output` until it closes; with `echo`,
/// also writes every line that is not an event to this process's stderr,
/// prefixed with the process's name in brackets.
async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    output: Arc<Mutex<Output>>,
    changed: watch::Sender<u64>,
    stream: Stream,
    echo: Option<String>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let at = Instant::now();
        let event = match serde_json::from_str::<Value>(&line) {
            Ok(value) if stream == Stream::Stdout && value.is_object() => Some(value),
            _ => None,
        };
        if let (None, Some(name)) = (&event, &echo) {
            eprintln!("[{name}] {line}");
        }
        {
            let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
            match (event, stream) {
                (Some(value), _) => out.events.push(Event { at, value }),
                (None, Stream::Stdout) => push_tail(&mut out.tail, format!("[stdout] {line}")),
                (None, Stream::Stderr) => push_tail(&mut out.tail, line),
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

/// The last lines of the log file at `path` (its last [`LOG_TAIL_BYTES`]
/// at most), or one line saying why it cannot be read.
fn log_tail(path: &Path) -> Vec<String> {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(STDERR_TAIL);
            lines[skip..].iter().map(|l| (*l).to_owned()).collect()
        }
        Err(e) => vec![format!("(cannot read {}: {e})", path.display())],
    }
}

#[cfg(test)]
mod tests;
