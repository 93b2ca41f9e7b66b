//! What went wrong with a child process, with what it had said so far.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// A process could not be started, or did not print what was awaited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program could not be spawned.
    #[error("{name}: cannot start {program}: {error}")]
    Spawn {
        /// The process's label.
        name: String,
        /// The program, as given to the command.
        program: String,
        /// Why (not a `source`: the message already says it).
        error: std::io::Error,
    },
    /// The file for the process's stderr could not be created.
    #[error("{name}: cannot create {} for its stderr: {error}", path.display())]
    Log {
        /// The process's label.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The process closed its stdout (it exited) before printing what was awaited.
    #[error("{name}: exited ({status}) before printing {what}{report}")]
    Exited {
        /// The process's label.
        name: String,
        /// What was awaited (``"`ready` event"``).
        what: String,
        /// How it ended, as far as known.
        status: String,
        /// What it had said.
        report: Report,
    },
    /// The time ran out.
    #[error("{name}: no {what} within {timeout:?}{report}")]
    Timeout {
        /// The process's label.
        name: String,
        /// What was awaited (``"`ready` event"``).
        what: String,
        /// How long it was awaited.
        timeout: Duration,
        /// What it had said.
        report: Report,
    },
    /// An awaited event lacks a string field.
    #[error("{name}: its `{event}` event has no string field `{field}`: {value}")]
    MissingField {
        /// The process's label.
        name: String,
        /// The event's name.
        event: String,
        /// The field.
        field: String,
        /// The whole event.
        value: Value,
    },
    /// A failure the caller saw, explained with the process's output
    /// ([`Process::failure`](crate::Process::failure)).
    #[error("{what}{report}")]
    Failed {
        /// The process's label.
        name: String,
        /// What the caller saw.
        what: String,
        /// What the process had said.
        report: Report,
    },
}

/// What a process had said when something went wrong: its events so far
/// and the tail of its stderr. Displays as lines after the error's first.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every event it printed, oldest first.
    pub events: Vec<Value>,
    /// Its last stderr lines (and stdout lines that were not JSON objects,
    /// marked `[stdout]`), newline-separated.
    pub stderr_tail: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        write!(
            f,
            "\nevents: [{}]\nstderr tail:\n{}",
            events.join(", "),
            self.stderr_tail
        )
    }
}
