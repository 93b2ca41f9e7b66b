//! Process-wide counters of what the resilience features did. They are
//! plain atomics, so the request path's `stats::X.inc()` costs one atomic
//! add; [`StaticCounters`] exports them into the metrics registry
//! ([`crate::telemetry::metrics`]) as `remora_<name>_total`, which both
//! `/stats/prometheus` and the admin API's `/stats` render.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// One counter.
#[derive(Debug)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds one.
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Retries sent (tries after the first).
pub(crate) static RETRY_ATTEMPTS: Counter = Counter::new();
/// Retries the retry budget refused; the client got the failure.
pub(crate) static RETRY_BUDGET_EXHAUSTED: Counter = Counter::new();
/// Retries `connectionPool.http.maxRetries` refused.
pub(crate) static RETRY_OVERFLOW: Counter = Counter::new();
/// Requests a circuit-breaker limit refused (503, `x-remora-overloaded`).
pub(crate) static UPSTREAM_OVERFLOW: Counter = Counter::new();
/// Requests answered 504 because the route `timeout` fired.
pub(crate) static UPSTREAM_TIMEOUT: Counter = Counter::new();
/// Tries cut off by `perTryTimeout`.
pub(crate) static UPSTREAM_PER_TRY_TIMEOUT: Counter = Counter::new();
/// Hosts ejected by outlier detection.
pub(crate) static OUTLIER_EJECTIONS: Counter = Counter::new();
/// Requests delayed by fault injection.
pub(crate) static FAULT_DELAYS: Counter = Counter::new();
/// Requests aborted by fault injection.
pub(crate) static FAULT_ABORTS: Counter = Counter::new();

/// Access log lines dropped because the writer was behind.
pub(crate) static ACCESS_LOG_DROPPED: Counter = Counter::new();

/// Every counter with its metric name (before the `remora_` prefix and the
/// `_total` suffix) and help, in a stable order.
pub(crate) fn all() -> [(&'static str, &'static str, &'static Counter); 10] {
    [
        (
            "retry_attempts",
            "Retries sent (tries after the first)",
            &RETRY_ATTEMPTS,
        ),
        (
            "retry_budget_exhausted",
            "Retries the retry budget refused",
            &RETRY_BUDGET_EXHAUSTED,
        ),
        (
            "retry_overflow",
            "Retries connectionPool.http.maxRetries refused",
            &RETRY_OVERFLOW,
        ),
        (
            "upstream_overflow",
            "Requests a circuit-breaker limit refused (pool overflow, 503 UO)",
            &UPSTREAM_OVERFLOW,
        ),
        (
            "upstream_timeout",
            "Requests answered 504 because the route timeout fired",
            &UPSTREAM_TIMEOUT,
        ),
        (
            "upstream_per_try_timeout",
            "Tries cut off by perTryTimeout",
            &UPSTREAM_PER_TRY_TIMEOUT,
        ),
        (
            "outlier_ejections",
            "Hosts ejected by outlier detection",
            &OUTLIER_EJECTIONS,
        ),
        (
            "fault_delays",
            "Requests delayed by fault injection",
            &FAULT_DELAYS,
        ),
        (
            "fault_aborts",
            "Requests aborted by fault injection",
            &FAULT_ABORTS,
        ),
        (
            "access_log_dropped",
            "Access log lines dropped because the writer was behind",
            &ACCESS_LOG_DROPPED,
        ),
    ]
}

/// Exports the counters above into a registry at scrape time.
#[derive(Debug)]
pub(crate) struct StaticCounters;

impl Collector for StaticCounters {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, help, counter) in all() {
            let c = ConstCounter::new(counter.get());
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// Every metric of the registry as `name{labels} value` lines: the admin
/// API's `/stats`, with the same figures as `/stats/prometheus`.
pub(crate) fn render() -> String {
    crate::telemetry::metrics::global().encode_samples()
}
