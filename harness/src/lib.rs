//! The child-process harness of the end-to-end tests (`remora-e2e`), the
//! examples (`remora-canary`) and the benchmark (`remora-bench`).
//!
//! Remora's binaries and the demo app print one JSON object per line on
//! stdout — `{"event":"listening",...}`, `{"event":"ready"}` — and log to
//! stderr. A [`Process`] spawns such a program, keeps its stdout as a list of
//! [`Event`]s that callers wait for, and keeps the last lines of its stderr
//! (or sends them to a file, or echoes them) so that a process which did not
//! do what was awaited can be explained. It is stopped politely (SIGTERM,
//! then SIGKILL after a grace period) or killed, and killed when dropped.
//!
//! Waits come in two forms: `try_*` methods return an [`Error`] that says
//! which process, what was awaited, the events so far and the stderr tail;
//! the plain methods (`wait_event`, ...) panic with that text, for tests.

mod error;
mod event;
mod process;

pub use error::{Error, Report};
pub use event::Event;
pub use process::{Process, Stderr, stop_all};
