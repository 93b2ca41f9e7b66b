//! The ejection decision: whether a host whose errors reached a threshold
//! leaves load balancing, given its cluster's other hosts
//! (`maxEjectionPercent`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Outcome, OutlierSettings, Verdict};
use crate::events;
use crate::telemetry::stats;

/// A host as outlier detection counts and ejects it: what the decision
/// needs of one. [`Endpoint`](crate::upstream::Endpoint) implements it by
/// way of its [`OutlierDetector`](super::OutlierDetector); the trait lets
/// the decision live here while `upstream/` (which names this module) holds
/// the hosts.
pub(crate) trait Host {
    /// The host's address, for logs and events.
    fn address(&self) -> &str;

    /// Counts an attempt's outcome; [`Verdict::Eject`] asks [`record`] to
    /// decide.
    fn record_outcome(&self, outcome: Outcome, now: Instant, s: &OutlierSettings) -> Verdict;

    /// Whether the host is ejected at `now`; a host whose ejection time
    /// has passed returns here.
    fn is_ejected(&self, now: Instant, s: &OutlierSettings) -> bool;

    /// Ejects the host; returns how long for.
    fn eject(&self, now: Instant, s: &OutlierSettings, jitter: Duration) -> Duration;

    /// Keeps the host in despite its errors (`maxEjectionPercent`).
    fn spare(&self);
}

/// Serialises ejection decisions; see [`record`].
static EJECTION: Mutex<()> = Mutex::new(());

/// Records what an attempt on `host`, one of `cluster`'s `hosts`, came to
/// under the settings `s`, and ejects the host (for its ejection time plus
/// `jitter()`, drawn only then) if that reached a threshold and the
/// cluster's `maxEjectionPercent` leaves room. Returns how long the host
/// was ejected for, if this ejected it.
pub(crate) fn record<H: Host>(
    cluster: &str,
    hosts: &[Arc<H>],
    host: &Arc<H>,
    outcome: Outcome,
    now: Instant,
    s: &OutlierSettings,
    jitter: impl FnOnce() -> Duration,
) -> Option<Duration> {
    if host.record_outcome(outcome, now, s) != Verdict::Eject {
        return None;
    }
    // Counting the ejected hosts and ejecting one is a single step:
    // two workers ejecting two hosts at once would otherwise each see
    // room for one more and together overshoot `maxEjectionPercent`.
    // One lock for all clusters, as subsets and successive configs
    // share endpoints; it is taken only when a host reaches its
    // threshold, never on a request's way.
    let _decision = EJECTION.lock().unwrap_or_else(|e| e.into_inner());
    if host.is_ejected(now, s) {
        return None; // a concurrent verdict on the same host came first
    }
    let others_ejected = hosts
        .iter()
        .filter(|h| !Arc::ptr_eq(h, host) && h.is_ejected(now, s))
        .count();
    if others_ejected >= s.max_ejected(hosts.len()) {
        host.spare();
        tracing::info!(
            cluster = %cluster,
            endpoint = host.address(),
            "outlier kept: maxEjectionPercent reached"
        );
        return None;
    }
    let time = host.eject(now, s, jitter());
    stats::OUTLIER_EJECTIONS.inc();
    let ms = time.as_millis().to_string();
    events::emit(
        "ejected",
        &[
            ("cluster", cluster),
            ("endpoint", host.address()),
            ("ms", &ms),
        ],
    );
    Some(time)
}
