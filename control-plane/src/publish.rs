//! One translation per change for every proxy, not one per proxy.
//!
//! Every discovery stream subscribes to its view ([`ViewKey`]: namespace and
//! labels) and waits on it. A single task, the [`Publisher`], watches the
//! config and the registry; after a change it waits for the burst to end
//! ([`Debounce`]), then translates the mesh once, on the blocking pool, into
//! one encoded snapshot per view ([`build_views`]), and hands each view's
//! snapshot to its streams — only to the views whose version changed. So a
//! change costs one translation, however many proxies there are, and the
//! async workers only copy bytes to sockets: the HTTP/2 keep-alives of the
//! streams are never kept waiting by translation.
//!
//! A view nobody subscribes to any more is forgotten at the next round. A
//! proxy that has just connected waits only for the quiet period, not the
//! whole debounce: a proxy without a config serves nothing until it has one,
//! and its first snapshot must be one built with it registered (so that it
//! is not sent twice in a row).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use tokio::sync::{Notify, watch};
use tokio::time::{Duration, Instant, sleep_until};

use crate::mesh::Mesh;
use crate::metrics::Metrics;
use crate::translate::{MeshSettings, ViewKey, ViewSnapshot, build_views};

/// How long the publisher waits after a change before it translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// Translate once no change has come for this long (istiod's
    /// `PILOT_DEBOUNCE_AFTER`, 100 ms).
    pub quiet: Duration,
    /// Translate at the latest this long after the first change of a burst,
    /// even if changes keep coming (istiod's `PILOT_DEBOUNCE_MAX`, 10 s).
    pub max: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// What a stream watches: its view's current snapshot, `None` until the
/// first is built.
pub type ViewReceiver = watch::Receiver<Option<Arc<ViewSnapshot>>>;

/// The views of the connected proxies and the task that builds them.
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mesh: Arc<Mesh>,
    settings: Arc<MeshSettings>,
    metrics: Metrics,
    debounce: Debounce,
    views: Mutex<HashMap<ViewKey, watch::Sender<Option<Arc<ViewSnapshot>>>>>,
    /// A proxy waits for its first snapshot.
    waiting: Arc<Notify>,
    /// Counts translations: a proxy waiting for its first snapshot wakes on
    /// each, even when its view's version did not change.
    rounds: watch::Sender<u64>,
    started: OnceLock<()>,
}

impl Publisher {
    /// A publisher of `mesh`'s snapshots, translated with `settings`,
    /// counting translations in `metrics`. Its task starts with the first
    /// subscription (inside the runtime).
    pub fn new(
        mesh: Arc<Mesh>,
        settings: Arc<MeshSettings>,
        metrics: Metrics,
        debounce: Debounce,
    ) -> Self {
        Publisher {
            inner: Arc::new(Inner {
                mesh,
                settings,
                metrics,
                debounce,
                views: Mutex::new(HashMap::new()),
                waiting: Arc::new(Notify::new()),
                rounds: watch::Sender::new(0),
                started: OnceLock::new(),
            }),
        }
    }

    /// Watches the count of translations done.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.inner.rounds.subscribe()
    }

    /// Watches the snapshot of `view`, for a proxy that has just registered:
    /// the task builds a snapshot that includes it after the quiet period
    /// only, not the whole debounce.
    pub fn subscribe(&self, view: ViewKey) -> ViewReceiver {
        self.inner.started.get_or_init(|| {
            tokio::spawn(run(
                Arc::downgrade(&self.inner),
                self.inner.debounce,
                Arc::clone(&self.inner.waiting),
                self.inner.mesh.config(),
                self.inner.mesh.nodes(),
            ));
        });
        let mut views = self
            .inner
            .views
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sender = views
            .entry(view)
            .or_insert_with(|| watch::Sender::new(None));
        let receiver = sender.subscribe();
        self.inner.waiting.notify_one();
        receiver
    }
}

/// The publisher's task: wait for a change, let the burst pass, translate
/// for every view, publish; until the publisher or the mesh is gone.
async fn run(
    inner: Weak<Inner>,
    debounce: Debounce,
    waiting: Arc<Notify>,
    mut config: watch::Receiver<Arc<Vec<crate::config::model::Resource>>>,
    mut nodes: watch::Receiver<Arc<crate::translate::Nodes>>,
) {
    loop {
        // Something to do: a change, or a view without a snapshot.
        let mut urgent = false;
        tokio::select! {
            changed = config.changed() => if changed.is_err() { return },
            changed = nodes.changed() => if changed.is_err() { return },
            () = waiting.notified() => urgent = true,
        }
        // The burst: translate after a quiet period, or at the latest after
        // `max` (after `quiet` alone when a proxy waits for its first snapshot).
        let first = Instant::now();
        let mut last = first;
        loop {
            let limit = first + if urgent { debounce.quiet } else { debounce.max };
            tokio::select! {
                () = sleep_until((last + debounce.quiet).min(limit)) => break,
                changed = config.changed() => {
                    if changed.is_err() { return }
                    last = Instant::now();
                }
                changed = nodes.changed() => {
                    if changed.is_err() { return }
                    last = Instant::now();
                }
                () = waiting.notified() => {
                    urgent = true;
                    last = Instant::now();
                }
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let resources = Arc::clone(&config.borrow_and_update());
        let registered = Arc::clone(&nodes.borrow_and_update());
        inner.rebuild(resources, registered).await;
    }
}

impl Inner {
    /// Translates once for every subscribed view and publishes the
    /// snapshots whose version (or config) changed.
    async fn rebuild(
        &self,
        resources: Arc<Vec<crate::config::model::Resource>>,
        nodes: Arc<crate::translate::Nodes>,
    ) {
        let keys: Vec<ViewKey> = {
            let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
            views.retain(|_, sender| sender.receiver_count() > 0);
            views.keys().cloned().collect()
        };
        if keys.is_empty() {
            self.metrics.translated(0);
            self.rounds.send_modify(|r| *r += 1);
            return;
        }
        let settings = Arc::clone(&self.settings);
        let built = tokio::task::spawn_blocking(move || {
            let built = build_views(&keys, &resources, &nodes, &settings);
            (keys, built)
        })
        .await;
        let (keys, built) = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::error!(error = %e, "translation did not finish");
                return;
            }
        };
        self.metrics.translated(keys.len());
        let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, snapshot) in keys.into_iter().zip(built) {
            let Some(sender) = views.get(&key) else {
                continue;
            };
            // Always the latest (a proxy that has just connected looks for
            // itself in its registry), but the streams wake only if it differs.
            sender.send_if_modified(|current| {
                let same = current.as_ref().is_some_and(|c| {
                    c.version == snapshot.version && Arc::ptr_eq(&c.resources, &snapshot.resources)
                });
                *current = Some(snapshot);
                !same
            });
        }
        drop(views);
        self.rounds.send_modify(|r| *r += 1);
    }
}
