//! What each connected proxy was sent and what it answered: the data of
//! `GET /debug/proxies` and `remora proxy-status`.
//!
//! The discovery service holds a [`TrackedProxy`] per stream and tells it
//! each push, ACK and NACK; [`ProxyTracker::list`] reads them all. The same
//! calls keep the push metrics, so the two never disagree.
//!
//! # Concurrency
//!
//! One mutex guards the table. Stream tasks hold it for a map update, the
//! HTTP handler for one copy of the table; never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use remora_proto::pb;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Whether a proxy runs what the control plane last sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncStatus {
    /// It ACKed the latest snapshot sent.
    Synced,
    /// The latest snapshot is sent and not answered yet (or, during the
    /// warm-up after a restart, nothing was sent yet).
    Stale,
    /// It rejected the latest snapshot and keeps running an older one.
    Nacked,
    /// The control plane did not send its latest snapshot, which exceeds
    /// what a proxy accepts; it keeps running an older one (or none).
    Refused,
}

impl SyncStatus {
    /// The name printed and served: `SYNCED`, `STALE`, `NACKED`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "SYNCED",
            SyncStatus::Stale => "STALE",
            SyncStatus::Nacked => "NACKED",
            SyncStatus::Refused => "REFUSED",
        }
    }
}

/// One connected proxy, as `GET /debug/proxies` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// The proxy's `node.id`.
    pub id: String,
    /// The service it stands beside.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// Its workload labels.
    pub labels: BTreeMap<String, String>,
    /// Where peers reach it; empty for a client-only proxy.
    pub inbound_address: String,
    /// The version of the latest snapshot sent (`None` before the first).
    pub version_sent: Option<String>,
    /// The version the proxy says it runs (`None` before it applied one).
    pub version_acked: Option<String>,
    /// See [`SyncStatus`].
    pub status: SyncStatus,
    /// The reason of the last answer, if it was a NACK.
    pub last_nack_error: Option<String>,
    /// Why the latest snapshot was not sent, while it is not (`REFUSED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_error: Option<String>,
    /// Whole seconds since the latest snapshot was sent (`None` before the
    /// first).
    pub seconds_since_last_push: Option<u64>,
}

/// The answer to the latest snapshot sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Pending,
    Acked,
    Nacked,
}

#[derive(Debug)]
struct ProxyState {
    node: pb::Node,
    version_sent: Option<String>,
    sent_at: Option<Instant>,
    version_acked: Option<String>,
    answer: Answer,
    last_nack_error: Option<String>,
    push_error: Option<String>,
}

impl ProxyState {
    fn status(&self) -> SyncStatus {
        if self.push_error.is_some() {
            return SyncStatus::Refused;
        }
        match (self.version_sent.is_some(), self.answer) {
            (true, Answer::Acked) => SyncStatus::Synced,
            (true, Answer::Nacked) => SyncStatus::Nacked,
            _ => SyncStatus::Stale,
        }
    }

    fn view(&self, now: Instant) -> ProxyStatus {
        ProxyStatus {
            id: self.node.id.clone(),
            service: self.node.service.clone(),
            namespace: self.node.namespace.clone(),
            labels: self.node.labels.clone().into_iter().collect(),
            inbound_address: self.node.inbound_address.clone(),
            version_sent: self.version_sent.clone(),
            version_acked: self.version_acked.clone(),
            status: self.status(),
            last_nack_error: self.last_nack_error.clone(),
            push_error: self.push_error.clone(),
            seconds_since_last_push: self
                .sent_at
                .map(|t| now.saturating_duration_since(t).as_secs()),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    next_key: u64,
    proxies: BTreeMap<u64, ProxyState>,
}

/// The status of every connected proxy. Cloning is cheap; clones share the
/// table.
#[derive(Debug, Clone)]
pub struct ProxyTracker {
    table: Arc<Mutex<Table>>,
    metrics: Metrics,
}

impl ProxyTracker {
    /// The metrics this table's events update.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// An empty table whose events also update `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        ProxyTracker {
            table: Arc::default(),
            metrics,
        }
    }

    /// Starts tracking a proxy that connected saying it runs `version_info`
    /// (empty: no config yet). It is tracked until the guard drops.
    pub fn track(&self, node: &pb::Node, version_info: &str) -> TrackedProxy {
        let mut table = self.lock();
        let key = table.next_key;
        table.next_key += 1;
        table.proxies.insert(
            key,
            ProxyState {
                node: node.clone(),
                version_sent: None,
                sent_at: None,
                version_acked: (!version_info.is_empty()).then(|| version_info.to_owned()),
                answer: Answer::Pending,
                last_nack_error: None,
                push_error: None,
            },
        );
        drop(table);
        self.metrics.proxy_connected();
        TrackedProxy {
            tracker: self.clone(),
            key,
        }
    }

    /// Every connected proxy, ordered by id, with ages measured at `now`.
    pub fn list(&self, now: Instant) -> Vec<ProxyStatus> {
        let mut out: Vec<ProxyStatus> = self.lock().proxies.values().map(|p| p.view(now)).collect();
        out.sort_by(|a, b| (&a.id, &a.namespace).cmp(&(&b.id, &b.namespace)));
        out
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a consistent map (every
        // update is a single insert or field write), so keep going.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, key: u64, f: impl FnOnce(&mut ProxyState)) {
        if let Some(state) = self.lock().proxies.get_mut(&key) {
            f(state);
        }
    }
}

/// One tracked discovery stream; dropping it forgets the proxy.
#[derive(Debug)]
pub struct TrackedProxy {
    tracker: ProxyTracker,
    key: u64,
}

impl TrackedProxy {
    /// The snapshot `version` was sent at `at`; its answer is pending.
    pub fn sent(&self, version: &str, at: Instant) {
        self.tracker.update(self.key, |p| {
            p.version_sent = Some(version.to_owned());
            p.sent_at = Some(at);
            p.answer = Answer::Pending;
            p.push_error = None;
        });
    }

    /// The latest snapshot was not sent, for `error` (too large); the proxy
    /// keeps what it runs.
    pub fn refused(&self, error: &str) {
        self.tracker.update(self.key, |p| {
            p.push_error = Some(error.to_owned());
        });
        self.tracker.metrics.snapshot_refused();
    }

    /// The refused snapshot is no longer the latest: the config is back to
    /// what the proxy runs.
    pub fn refusal_withdrawn(&self) {
        self.tracker.update(self.key, |p| p.push_error = None);
    }

    /// The proxy ACKed the latest snapshot at `at`: it runs `version`.
    pub fn acked(&self, version: &str, at: Instant) {
        let mut latency = None;
        self.tracker.update(self.key, |p| {
            latency = p.sent_at.map(|t| at.saturating_duration_since(t));
            p.version_acked = Some(version.to_owned());
            p.answer = Answer::Acked;
            p.last_nack_error = None;
        });
        self.tracker.metrics.push_acked(latency.unwrap_or_default());
    }

    /// The proxy NACKed the latest snapshot with `error`; it keeps running
    /// `kept` (empty: it has no config).
    pub fn nacked(&self, kept: &str, error: &str) {
        self.tracker.update(self.key, |p| {
            p.version_acked = (!kept.is_empty()).then(|| kept.to_owned());
            p.answer = Answer::Nacked;
            p.last_nack_error = Some(error.to_owned());
        });
        self.tracker.metrics.push_nacked();
    }
}

impl Drop for TrackedProxy {
    fn drop(&mut self) {
        self.tracker.lock().proxies.remove(&self.key);
        self.tracker.metrics.proxy_disconnected();
    }
}

#[cfg(test)]
mod tests;
