//! The control plane's shared state: the current config and the workloads
//! connected right now. Both are published through `watch` channels, which
//! the [`crate::publish::Publisher`] follows to rebuild the snapshots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use remora_proto::pb;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use crate::config::model::Resource;
use crate::translate::Nodes;

/// The inputs of translation, shared by every discovery stream.
#[derive(Debug)]
pub struct Mesh {
    config: watch::Sender<Arc<Vec<Resource>>>,
    nodes: watch::Sender<Arc<Nodes>>,
    next_id: AtomicU64,
    warm_until: Instant,
}

impl Default for Mesh {
    fn default() -> Self {
        Self::new()
    }
}

impl Mesh {
    /// An empty mesh: no resources, no workloads, no warm-up.
    pub fn new() -> Self {
        Self::with_warmup(Duration::ZERO)
    }

    /// An empty mesh whose registry is incomplete for `warmup` from now.
    ///
    /// The registry lives in the connected proxies: after a restart it is
    /// empty and fills as they reconnect, each after its own backoff. A
    /// proxy that already has a config must not be pushed a snapshot built
    /// from half a registry (it would drop the endpoints of sidecars that
    /// have not reconnected yet and fail requests), so snapshots for such
    /// proxies are held until the warm-up is over. Proxies without a config
    /// get theirs at once: they serve nothing until they have one.
    pub fn with_warmup(warmup: Duration) -> Self {
        Mesh {
            config: watch::Sender::new(Arc::new(Vec::new())),
            nodes: watch::Sender::new(Arc::new(Nodes::new())),
            next_id: AtomicU64::new(1),
            warm_until: Instant::now() + warmup,
        }
    }

    /// When the registry is complete enough to push to proxies that
    /// already have a config.
    pub fn warm_until(&self) -> Instant {
        self.warm_until
    }

    /// Replaces the config (the resources of every accepted file).
    pub fn set_config(&self, resources: Vec<Resource>) {
        self.config.send_replace(Arc::new(resources));
    }

    /// Watches the config.
    pub fn config(&self) -> watch::Receiver<Arc<Vec<Resource>>> {
        self.config.subscribe()
    }

    /// Watches the connected workloads.
    pub fn nodes(&self) -> watch::Receiver<Arc<Nodes>> {
        self.nodes.subscribe()
    }

    /// Registers a workload; it stays registered until the guard drops
    /// (when its discovery stream ends).
    pub fn register(self: &Arc<Self>, mut node: pb::Node) -> Registration {
        if let Some(health) = &mut node.app_health {
            health.reason = bounded(&health.reason, MAX_HEALTH_REASON_BYTES);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.nodes.send_modify(|nodes| {
            Arc::make_mut(nodes).insert(id, node);
        });
        Registration {
            mesh: Arc::clone(self),
            id,
        }
    }
}

/// Keeps a workload registered; dropping it deregisters the workload.
#[derive(Debug)]
pub struct Registration {
    mesh: Arc<Mesh>,
    id: u64,
}

/// The most of a proxy's app-health reason the registry keeps.
pub const MAX_HEALTH_REASON_BYTES: usize = 256;

impl Registration {
    /// The workload's key in the registry ([`Mesh::nodes`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records what the proxy reported about its app's health: a proxy
    /// whose app is not ready stays registered, but translation leaves its
    /// endpoint out of every snapshot. Returns whether the readiness
    /// changed (every stream then recomputes its snapshot).
    pub fn set_app_health(&self, health: &pb::AppHealth) -> bool {
        let reported = pb::AppHealth {
            ready: health.ready,
            reason: bounded(&health.reason, MAX_HEALTH_REASON_BYTES),
        };
        self.mesh.nodes.send_if_modified(|nodes| {
            let Some(node) = Arc::make_mut(nodes).get_mut(&self.id) else {
                return false;
            };
            let was_ready = node.app_health.as_ref().is_none_or(|h| h.ready);
            node.app_health = Some(reported);
            was_ready != health.ready
        })
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn bounded(text: &str, max: usize) -> String {
    remora_proto::cut(text, max).to_owned()
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = self.id;
        self.mesh.nodes.send_modify(|nodes| {
            Arc::make_mut(nodes).remove(&id);
        });
    }
}
