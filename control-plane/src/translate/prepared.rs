//! A snapshot made ready to push: translated off the async workers,
//! versioned, and measured against what a proxy accepts.
//!
//! Translation is CPU work that grows with the config (tens of
//! milliseconds at 10k resources). Run on an async worker it would delay
//! every task sharing that worker, the HTTP/2 keep-alives of the discovery
//! connections among them, and a slow enough round of translations gets
//! streams dropped, whose reconnections trigger more rounds. So it runs on
//! the blocking pool, at most one translation per core at a time (a burst
//! of changes does not start hundreds of half-built snapshots at once).
//!
//! A snapshot larger than [`remora_proto::MAX_SNAPSHOT_BYTES`] encoded is
//! never sent: the proxy would fail to decode it, drop the stream,
//! reconnect and fail again, without saying why. Instead the control plane
//! says why ([`TooLarge`]: logged, counted in
//! `remora_snapshots_refused_total`, and shown as `REFUSED` in
//! `remora proxy-status`), and the proxy keeps serving the config it has.

use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use prost::Message;
use remora_proto::pb;
use tokio::sync::Semaphore;

use super::{MeshSettings, Nodes, fnv1a, snapshot_for};
use crate::config::model::Resource;

/// Room left under the limit for the `version` and `nonce` the stream adds
/// after translation (a 16-digit version, a decimal nonce, and their tags).
pub(super) const STAMP_ROOM: usize = 64;

/// One proxy's snapshot with its version, not sent yet.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The snapshot, `version` and `nonce` still empty.
    pub snapshot: pb::Snapshot,
    /// Its version (see [`super::version_of`]).
    pub version: String,
    /// Its encoded size, without version and nonce.
    pub encoded_len: usize,
}

impl Prepared {
    /// Versions `snapshot`, encoding it once.
    pub fn new(snapshot: pb::Snapshot) -> Self {
        let bytes = snapshot.encode_to_vec();
        Prepared {
            version: format!("{:016x}", fnv1a(&bytes)),
            encoded_len: bytes.len(),
            snapshot,
        }
    }

    /// Why this snapshot must not be sent to `node`, if it exceeds `limit`
    /// bytes once stamped with its version and nonce.
    pub fn refusal(&self, node: &pb::Node, limit: usize) -> Option<TooLarge> {
        let bytes = self.encoded_len + STAMP_ROOM;
        (bytes > limit).then(|| TooLarge {
            node: node.id.clone(),
            version: self.version.clone(),
            bytes,
            limit,
            clusters: self.snapshot.clusters.len(),
            endpoints: self
                .snapshot
                .clusters
                .iter()
                .map(|c| c.endpoints.len())
                .sum(),
            virtual_hosts: self.snapshot.virtual_hosts.len(),
        })
    }
}

/// A snapshot too large for the proxies to receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the snapshot for {node} (version {version}) is {bytes} bytes encoded, over the {limit} bytes \
     a proxy accepts ({clusters} clusters, {endpoints} endpoints, {virtual_hosts} virtual hosts); \
     not sent, the proxy keeps the config it has"
)]
#[non_exhaustive]
pub struct TooLarge {
    /// The proxy's `node.id`.
    pub node: String,
    /// The version of the refused snapshot.
    pub version: String,
    /// Its size, version and nonce included (an upper bound).
    pub bytes: usize,
    /// The limit.
    pub limit: usize,
    /// Its clusters.
    pub clusters: usize,
    /// Its endpoints, over every cluster.
    pub endpoints: usize,
    /// Its virtual hosts.
    pub virtual_hosts: usize,
}

/// Translation stopped before it gave a snapshot: the runtime is shutting
/// down, or translation panicked (a bug; the panic is logged).
#[derive(Debug, thiserror::Error)]
#[error("translation did not finish: {0}")]
pub struct Interrupted(String);

/// At most one translation per core runs at a time.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, NonZeroUsize::get);
        Semaphore::new(cores)
    })
}

/// Translates `node`'s snapshot on the blocking pool and versions it.
pub async fn prepare(
    node: &pb::Node,
    resources: Arc<Vec<Resource>>,
    nodes: Arc<Nodes>,
    settings: Arc<MeshSettings>,
) -> Result<Prepared, Interrupted> {
    // The semaphore is never closed.
    let _permit = permits()
        .acquire()
        .await
        .map_err(|e| Interrupted(e.to_string()))?;
    let node = node.clone();
    tokio::task::spawn_blocking(move || {
        Prepared::new(snapshot_for(&node, &resources, &nodes, &settings))
    })
    .await
    .map_err(|e| Interrupted(e.to_string()))
}

#[cfg(test)]
mod tests;
