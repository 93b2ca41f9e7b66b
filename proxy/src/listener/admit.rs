//! How many connections a listener holds, and what happens when it is
//! full (Envoy's listener `max_connections`,
//! [`crate::limits::ConnectionLimits`]).
//!
//! A flood must degrade service, not refuse the peers that matter, nor
//! starve the process of file descriptors. So each listener holds at most
//! `max` connections, and:
//!
//! - when it is full, a new connection takes the place of the oldest one
//!   still *detecting* (accepted, protocol not known yet): a silent or
//!   stalling client loses its slot to the next one, while a real client
//!   leaves detection within milliseconds and keeps its own; when every
//!   slot is a connection past detection, the new one is closed at once;
//! - on the inbound listener, connections without a proven identity
//!   (plaintext, TLS without a client certificate) hold at most
//!   `max - reserve`: the reserve is for mTLS peers, so that idle
//!   plaintext connections cannot lock them out.
//!
//! Each listener's connections are counted as
//! `remora_downstream_cx_total`, `_active`, `_overflow_total` (refused,
//! evicted or over the plaintext share) and `_timeout_total` per timeout,
//! with a `listener` label.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::activity::{Activity, ConnectionLimit, Phase};
use super::watchdog::{self, Watched};
use crate::telemetry::stats::listener_stats;

impl ConnectionLimit {
    /// The limit of listener `name` (one of `inbound`, `outbound`,
    /// `admin`, `stats`, `health`) per [`crate::limits::connections`];
    /// `mtls_reserve`: keep the reserve for mTLS peers (the inbound
    /// listener with an identity).
    pub(crate) fn new(name: &'static str, mtls_reserve: bool) -> Arc<Self> {
        Self::with_limits(name, crate::limits::connections(), mtls_reserve)
    }

    /// As [`Self::new`], with `limits` rather than the process's.
    pub(crate) fn with_limits(
        name: &'static str,
        limits: &crate::limits::ConnectionLimits,
        mtls_reserve: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            stats: listener_stats(name),
            max: limits.max,
            plaintext_max: limits.plaintext_max(mtls_reserve),
            open: AtomicUsize::new(0),
            plaintext: AtomicUsize::new(0),
            detecting: Mutex::new(VecDeque::new()),
        })
    }

    /// Admits a new connection, evicting the oldest one still detecting
    /// when the listener is full; `None` (counted as overflow) when every
    /// slot is past detection.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        self.stats.total.fetch_add(1, Ordering::Relaxed);
        let mut queue = self.detecting.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.max {
            self.stats.overflow.fetch_add(1, Ordering::Relaxed);
            if !evict_oldest(&mut queue) {
                tracing::debug!(listener = self.name, max = self.max, "listener full");
                return None;
            }
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(Arc::clone(self)));
        if queue.len() >= 2 * self.max + 16 {
            queue.retain(|a| a.upgrade().is_some_and(|a| a.phase() == Phase::Detecting));
        }
        queue.push_back(Arc::downgrade(&activity));
        Some(Slot { activity })
    }
}

/// Tells the oldest connection still detecting to close; false if none.
fn evict_oldest(queue: &mut VecDeque<Weak<Activity>>) -> bool {
    while let Some(weak) = queue.pop_front() {
        if let Some(activity) = weak.upgrade()
            && activity.phase() == Phase::Detecting
        {
            activity.evicted.store(true, Ordering::Relaxed);
            activity.evict.notify_one();
            return true;
        }
    }
    false
}

/// An admitted connection's place in its listener, until it closes.
#[derive(Debug)]
pub(crate) struct Slot {
    activity: Arc<Activity>,
}

impl Slot {
    /// The connection's activity, for its requests' [`Activity::stream`].
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// `io`, counted for the watchdog.
    pub(crate) fn watch<T>(&self, io: T) -> Watched<T> {
        Watched::new(io, Arc::clone(&self.activity))
    }

    /// Runs `conn` (everything the connection does, detection included)
    /// beside its watchdog, which ends it when it overstays a timeout or is
    /// evicted; then frees the slot.
    pub(crate) async fn guard<F: Future<Output = ()>>(self, conn: F) {
        let timeouts = crate::limits::timeouts();
        let stats = self.activity.limit.stats;
        tokio::select! {
            () = conn => {}
            ended = watchdog::watch(&self.activity, timeouts) => {
                tracing::debug!(listener = self.activity.limit.name, ?ended, "connection closed");
                if let Some(i) = ended.index() {
                    stats.timeouts[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Activity {
    /// Detection is over: the connection speaks `phase`. `authenticated`:
    /// an mTLS peer with an identity. False (counted as overflow) when the
    /// connection must close: it has no identity and the listener's share
    /// for such connections is full.
    pub(crate) fn established(&self, phase: Phase, authenticated: bool) -> bool {
        let limit = &self.limit;
        if !authenticated {
            let held = limit.plaintext.fetch_add(1, Ordering::Relaxed);
            self.plaintext.store(true, Ordering::Relaxed);
            if held >= limit.plaintext_max {
                limit.stats.overflow.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    listener = limit.name,
                    max = limit.plaintext_max,
                    "connection without identity refused: the share of the listener \
                     for connections without identity is full"
                );
                return false;
            }
        }
        self.set_phase(phase);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let limit = &self.activity.limit;
        limit.open.fetch_sub(1, Ordering::Relaxed);
        limit.stats.active.fetch_sub(1, Ordering::Relaxed);
        if self.activity.plaintext.swap(false, Ordering::Relaxed) {
            limit.plaintext.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
