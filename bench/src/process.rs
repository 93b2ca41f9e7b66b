//! The processes under test, started with `remora-harness`: pinned to the
//! servers' core, their stdout read as JSON events
//! (`{"event":"listening",...}`), their stderr written to a log file in the
//! run's temporary directory, and stopped (SIGTERM, then SIGKILL after
//! [`STOP_GRACE`]) when the run ends.

use std::path::Path;
use std::time::Duration;

use remora_harness::{Process, Stderr};
use tokio::process::Command;

/// How long a process gets to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where processes run: `taskset -c <cpu>` when pinning is possible.
#[derive(Debug, Clone)]
pub struct Pinning {
    /// The core for servers and proxies; `None` runs them unpinned.
    pub server_cpu: Option<usize>,
}

/// Spawns `program args` (pinned per `pin`; `taskset` execs the program,
/// so the pid is the program's), stderr into `<log_dir>/<name>.log`, logs
/// at `warn` unless `RUST_LOG` says otherwise.
pub fn spawn<I, S>(
    name: &str,
    program: &Path,
    args: I,
    pin: &Pinning,
    log_dir: &Path,
) -> anyhow::Result<Process>
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
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let log = log_dir.join(format!("{}.log", name.replace([' ', '/'], "-")));
    Ok(Process::try_spawn(name, cmd, Stderr::File(log))?)
}
