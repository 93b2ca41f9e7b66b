//! Process-wide counters of what the resilience features did, shown by
//! the admin API's `/stats` as `name value` lines.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter.
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Retries sent (tries after the first).
pub static RETRY_ATTEMPTS: Counter = Counter::new();
/// Retries the retry budget refused; the client got the failure.
pub static RETRY_BUDGET_EXHAUSTED: Counter = Counter::new();
/// Retries `connectionPool.http.maxRetries` refused.
pub static RETRY_OVERFLOW: Counter = Counter::new();
/// Requests a circuit-breaker limit refused (503, `x-remora-overloaded`).
pub static UPSTREAM_OVERFLOW: Counter = Counter::new();
/// Requests answered 504 because the route `timeout` fired.
pub static UPSTREAM_TIMEOUT: Counter = Counter::new();
/// Tries cut off by `perTryTimeout`.
pub static UPSTREAM_PER_TRY_TIMEOUT: Counter = Counter::new();
/// Hosts ejected by outlier detection.
pub static OUTLIER_EJECTIONS: Counter = Counter::new();
/// Requests delayed by fault injection.
pub static FAULT_DELAYS: Counter = Counter::new();
/// Requests aborted by fault injection.
pub static FAULT_ABORTS: Counter = Counter::new();

/// Access log lines dropped because the writer was behind.
pub static ACCESS_LOG_DROPPED: Counter = Counter::new();

/// Every counter with its name, in a stable order.
pub fn all() -> [(&'static str, &'static Counter); 10] {
    [
        ("retry.attempts", &RETRY_ATTEMPTS),
        ("retry.budget_exhausted", &RETRY_BUDGET_EXHAUSTED),
        ("retry.overflow", &RETRY_OVERFLOW),
        ("upstream.overflow", &UPSTREAM_OVERFLOW),
        ("upstream.timeout", &UPSTREAM_TIMEOUT),
        ("upstream.per_try_timeout", &UPSTREAM_PER_TRY_TIMEOUT),
        ("outlier.ejections", &OUTLIER_EJECTIONS),
        ("fault.delays", &FAULT_DELAYS),
        ("fault.aborts", &FAULT_ABORTS),
        ("access_log.dropped", &ACCESS_LOG_DROPPED),
    ]
}

/// The counters as `name value` lines.
pub fn render() -> String {
    all()
        .iter()
        .map(|(name, c)| format!("{name} {}\n", c.get()))
        .collect()
}
