//! Process-wide counters of what the resilience features did, and of TLS
//! handshakes that failed. They are plain atomics, so the request path's
//! `stats::X.inc()` costs one atomic add; [`StaticCounters`] exports the
//! first into the metrics registry ([`super::metrics`]) as
//! `remora_<name>_total`, the metrics' scrape-time collector reads
//! [`handshake_failures`], and both `/stats/prometheus` and the admin API's
//! `/stats` render them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Direction;

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

/// TLS handshakes failed on the data path, per direction: the data path
/// calls only [`tls_handshake_failed`], the metrics read
/// [`handshake_failures`].
static INBOUND: AtomicU64 = AtomicU64::new(0);
static OUTBOUND: AtomicU64 = AtomicU64::new(0);

fn counter(direction: Direction) -> &'static AtomicU64 {
    match direction {
        Direction::Inbound => &INBOUND,
        Direction::Outbound => &OUTBOUND,
    }
}

/// Counts one failed TLS handshake. Outbound: a peer proxy refused, or
/// failed our checks (chain, SPIFFE ID, ALPN). Inbound: a client failed the
/// handshake, or sent plaintext to a STRICT listener.
pub(crate) fn tls_handshake_failed(direction: Direction) {
    counter(direction).fetch_add(1, Ordering::Relaxed);
}

/// Handshakes failed in `direction` since the process started.
pub(crate) fn handshake_failures(direction: Direction) -> u64 {
    counter(direction).load(Ordering::Relaxed)
}

// The listeners' connections (`remora_downstream_cx_*`): the listeners'
// admission (crate::listener::admit) counts, the metrics export.

/// The listeners whose connections are counted, by `listener` label.
const LISTENERS: [&str; 5] = ["inbound", "outbound", "admin", "stats", "health"];

/// One listener's counters.
#[derive(Debug)]
pub(crate) struct ListenerStats {
    /// Connections accepted.
    pub(crate) total: AtomicU64,
    /// Connections open.
    pub(crate) active: AtomicUsize,
    /// Connections refused, evicted or over the plaintext share.
    pub(crate) overflow: AtomicU64,
    /// Connections closed by each timeout, in the order of
    /// [`DOWNSTREAM_TIMEOUTS`].
    pub(crate) timeouts: [AtomicU64; 5],
}

impl ListenerStats {
    const fn new() -> Self {
        Self {
            total: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            overflow: AtomicU64::new(0),
            timeouts: [const { AtomicU64::new(0) }; 5],
        }
    }
}

static STATS: [ListenerStats; 5] = [const { ListenerStats::new() }; 5];

/// The counters of the listener called `name` (one of [`LISTENERS`]).
pub(crate) fn listener_stats(name: &str) -> &'static ListenerStats {
    let i = LISTENERS.iter().position(|l| *l == name).unwrap_or(0);
    &STATS[i]
}

/// The `timeout` label of `remora_downstream_cx_timeout_total`, in the order
/// of `listener::watchdog::Ended::index`.
pub(crate) const DOWNSTREAM_TIMEOUTS: [&str; 5] = [
    "listener_filters",
    "request_headers",
    "stream_idle",
    "idle",
    "tcp_idle",
];

/// Reads one counter of a listener.
type ReadCounter = fn(&ListenerStats) -> u64;

/// Exports the listeners' counters (registered in [`super::metrics`]).
#[derive(Debug)]
pub(crate) struct DownstreamCounters;

impl Collector for DownstreamCounters {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counters: [(&str, &str, ReadCounter); 2] = [
            ("downstream_cx", "Connections accepted, by listener", |s| {
                s.total.load(Ordering::Relaxed)
            }),
            (
                "downstream_cx_overflow",
                "Connections closed because the listener was full: refused, evicted while \
                 detecting, or over the share for connections without identity",
                |s| s.overflow.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (listener, s) in LISTENERS.iter().zip(&STATS) {
                ConstCounter::new(read(s))
                    .encode(family.encode_family(&[("listener", *listener)])?)?;
            }
        }
        let mut active = encoder.encode_descriptor(
            "downstream_cx_active",
            "Connections open, by listener",
            None,
            MetricType::Gauge,
        )?;
        for (listener, s) in LISTENERS.iter().zip(&STATS) {
            ConstGauge::new(s.active.load(Ordering::Relaxed) as i64)
                .encode(active.encode_family(&[("listener", *listener)])?)?;
        }
        let mut timeouts = encoder.encode_descriptor(
            "downstream_cx_timeout",
            "Connections closed by a timeout, by listener and timeout",
            None,
            MetricType::Counter,
        )?;
        for (listener, s) in LISTENERS.iter().zip(&STATS) {
            for (timeout, n) in DOWNSTREAM_TIMEOUTS.iter().zip(&s.timeouts) {
                ConstCounter::new(n.load(Ordering::Relaxed)).encode(
                    timeouts.encode_family(&[("listener", *listener), ("timeout", *timeout)])?,
                )?;
            }
        }
        Ok(())
    }
}
