//! CPU time and memory of the processes under test, from `/proc`.
//!
//! CPU time is each thread's run time from `/proc/<pid>/task/*/schedstat`
//! (nanoseconds), falling back to `utime + stime` of `/proc/<pid>/stat`
//! (all threads, in clock ticks of `getconf CLK_TCK`, usually 10 ms) where
//! the kernel keeps no schedstats: ticks are too coarse for a 1,000 rps
//! run of a few seconds (10 ms over 2,000 requests is 5 µs). Memory is `VmRSS` and `VmHWM`
//! (peak resident set) of `/proc/<pid>/status`, in KiB.
//!
//! A target may be several processes (nginx's master and worker): each
//! figure is summed over a process and its children.

use std::fs;

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 if that
/// cannot be asked.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The fields of `/proc/<pid>/stat` after the command name (which may
/// hold spaces and parentheses, so it is skipped up to the last `)`):
/// field 3 (state) is index 0.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// `utime + stime` in ticks from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    parse_user_system_ticks(stat).map(|(u, s)| u + s)
}

/// `(utime, stime)` in ticks from the text of `/proc/<pid>/stat`: time in
/// user space and in the kernel, all threads.
pub fn parse_user_system_ticks(stat: &str) -> Option<(u64, u64)> {
    let f = stat_fields(stat)?;
    // utime and stime are fields 14 and 15, i.e. indexes 11 and 12 here.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// The parent pid from the text of `/proc/<pid>/stat` (field 4).
fn parse_ppid(stat: &str) -> Option<u32> {
    stat_fields(stat)?.get(1)?.parse().ok()
}

/// A `kB` line (`VmHWM:   1234 kB`) of `/proc/<pid>/status`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The machine's CPU time in ticks from the text of `/proc/stat`: (steal,
/// total). Steal is time the hypervisor gave this VM's CPUs to someone
/// else while they had work; total is the sum of user, nice, system,
/// idle, iowait, irq, softirq and steal (guest time is within user).
pub fn parse_steal(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (f.len() == 8).then(|| (f[7], f.iter().sum()))
}

/// [`parse_steal`] of this machine now; `None` where `/proc/stat` is
/// missing or has no steal column.
pub fn steal() -> Option<(u64, u64)> {
    parse_steal(&fs::read_to_string("/proc/stat").ok()?)
}

/// The share of CPU time stolen between two [`steal`] readings, percent.
pub fn steal_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1).filter(|&t| t > 0)?;
    let stolen = after.0.checked_sub(before.0)?;
    Some(stolen as f64 * 100.0 / total as f64)
}

/// `pid` and its children (one level: nginx's workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        if parse_ppid(&stat) == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// CPU time used so far by `pids`, in nanoseconds: the sum of every
/// thread's `/proc/<pid>/task/<tid>/schedstat` run time (nanosecond
/// precision) where the kernel has schedstats, else `utime + stime` of
/// `/proc/<pid>/stat` at `clock_ticks` per second.
pub fn cpu_ns(pids: &[u32], clock_ticks: u64) -> u64 {
    pids.iter()
        .map(|&p| {
            schedstat_ns(p).unwrap_or_else(|| cpu_ticks(&[p]) * 1_000_000_000 / clock_ticks.max(1))
        })
        .sum()
}

/// The run time of every thread of `pid` from schedstat, if readable.
fn schedstat_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    let mut any = false;
    for t in tasks.flatten() {
        let text = fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    any.then_some(total)
}

/// CPU ticks used so far by `pids` (those still running).
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| parse_cpu_ticks(&s))
        .sum()
}

/// User and kernel CPU ticks used so far by `pids` (those still running).
/// Ticks are coarse (10 ms): use them for the share of kernel time over a
/// run, and [`cpu_ns`] for the total.
pub fn user_system_ticks(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| parse_user_system_ticks(&s))
        .fold((0, 0), |(u, s), (u2, s2)| (u + u2, s + s2))
}

/// The kernel's share of the CPU time between two [`user_system_ticks`]
/// readings; `None` when no tick passed.
pub fn kernel_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let user = after.0.saturating_sub(before.0);
    let system = after.1.saturating_sub(before.1);
    (user + system > 0).then(|| system as f64 / (user + system) as f64)
}

/// `VmRSS` (current) and `VmHWM` (peak) summed over `pids`, in KiB.
pub fn memory_kib(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
        .map(|s| {
            (
                parse_status_kib(&s, "VmRSS").unwrap_or(0),
                parse_status_kib(&s, "VmHWM").unwrap_or(0),
            )
        })
        .fold((0, 0), |(r, h), (r2, h2)| (r + r2, h + h2))
}

#[cfg(test)]
mod tests;
