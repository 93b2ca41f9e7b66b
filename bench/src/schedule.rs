//! The open-loop schedule: when each request is meant to be sent.
//!
//! At a fixed rate `r`, request `k` (counted from 0 over the whole run) is
//! due at `start + k / r`, whatever happened to the requests before it. Its
//! latency is measured from that intended time, not from when the generator
//! got round to sending it: a stall in the server then shows as latency of
//! every request that should have gone out during the stall, instead of
//! silently delaying them (the "coordinated omission" that closed-loop
//! tools suffer from, as Gil Tene describes it and wrk2 corrects it).
//!
//! The requests are dealt round robin to `workers` senders: worker `i`
//! sends requests `i`, `i + workers`, `i + 2 × workers`, ...

use std::time::Duration;

/// The intended send times of a fixed-rate run, relative to its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenLoopSchedule {
    /// Nanoseconds between two consecutive requests of the whole run.
    interval_ns: u64,
    /// How many senders share the run.
    workers: u64,
    /// Requests due at or after this offset are not sent.
    duration: Duration,
}

impl OpenLoopSchedule {
    /// A schedule of `rate` requests per second for `duration`, dealt to
    /// `workers` senders. `None` when the rate or the worker count is 0, or
    /// the rate is above one request per nanosecond.
    pub fn new(rate: u64, workers: usize, duration: Duration) -> Option<Self> {
        if rate == 0 || workers == 0 || rate > 1_000_000_000 {
            return None;
        }
        Some(Self {
            interval_ns: 1_000_000_000 / rate,
            workers: workers as u64,
            duration,
        })
    }

    /// The offset from the start at which request `k` of the run is due.
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_nanos(k.saturating_mul(self.interval_ns))
    }

    /// The `n`-th request (from 0) of worker `worker`, as a run-wide index.
    pub fn request_of(&self, worker: usize, n: u64) -> u64 {
        n.saturating_mul(self.workers).saturating_add(worker as u64)
    }

    /// When worker `worker` sends its `n`-th request, or `None` once that
    /// is past the end of the run.
    pub fn due_for(&self, worker: usize, n: u64) -> Option<Duration> {
        let at = self.due(self.request_of(worker, n));
        (at < self.duration).then_some(at)
    }

    /// How many requests the whole run is meant to send.
    pub fn total(&self) -> u64 {
        let ns = u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX);
        ns.div_ceil(self.interval_ns)
    }

    /// The latency of a request due at `due` whose response completed at
    /// `done` (both offsets from the start): zero if it somehow completed
    /// before it was due.
    pub fn latency(due: Duration, done: Duration) -> Duration {
        done.saturating_sub(due)
    }
}

#[cfg(test)]
mod tests;
