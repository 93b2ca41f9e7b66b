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
mod tests {
    use super::*;

    #[test]
    fn requests_are_due_at_multiples_of_the_interval() {
        let s = OpenLoopSchedule::new(1_000, 4, Duration::from_secs(1)).expect("valid");
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(1));
        assert_eq!(s.due(999), Duration::from_millis(999));
        assert_eq!(s.total(), 1_000);
    }

    #[test]
    fn workers_share_the_run_round_robin_without_gaps_or_overlap() {
        let s = OpenLoopSchedule::new(10_000, 3, Duration::from_millis(10)).expect("valid");
        let mut seen = Vec::new();
        for w in 0..3 {
            let mut n = 0;
            while let Some(at) = s.due_for(w, n) {
                seen.push(at);
                n += 1;
                assert!(n <= s.total(), "a worker's loop ends");
            }
        }
        seen.sort();
        let want: Vec<Duration> = (0..s.total()).map(|k| s.due(k)).collect();
        assert_eq!(seen, want);
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn a_late_request_counts_its_wait_from_the_intended_time() {
        // Due at 5 ms, sent late at 9 ms, answered at 9.2 ms: 4.2 ms.
        let due = Duration::from_millis(5);
        let done = Duration::from_micros(9_200);
        assert_eq!(
            OpenLoopSchedule::latency(due, done),
            Duration::from_micros(4_200)
        );
        assert_eq!(OpenLoopSchedule::latency(done, due), Duration::ZERO);
    }

    #[test]
    fn zero_rate_or_no_workers_is_refused() {
        assert!(OpenLoopSchedule::new(0, 1, Duration::from_secs(1)).is_none());
        assert!(OpenLoopSchedule::new(1, 0, Duration::from_secs(1)).is_none());
    }
}
