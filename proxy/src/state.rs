//! The config the proxy serves and what goes with it: the state that
//! discovery writes and the listeners, `/healthz`, the admin port and the
//! metrics read. It lives apart from the discovery client so that its
//! readers need not depend on the client (issue 19: no import cycles).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use remora_proto::pb;
use tokio::sync::watch;

use crate::app_health::AppHealth;
use crate::config::{ConfigError, RuntimeConfig};
use crate::identity::Identity;
use crate::telemetry::Interner;
use crate::telemetry::metrics::{ConfigFigures, LiveConfig};
use crate::telemetry::trace::{SamplingControl, SamplingRatio};
use crate::upstream::EndpointRegistry;

/// The config the proxy serves, and whether it has one yet.
#[derive(Debug)]
pub struct ConfigState {
    /// Swapped whole when a snapshot is applied.
    pub current: Arc<ArcSwap<RuntimeConfig>>,
    /// Live endpoint state shared across configs.
    pub endpoints: EndpointRegistry,
    /// Turns true when the first snapshot is applied, and stays true.
    pub ready: watch::Sender<bool>,
    /// The proxy's mTLS state when it has an identity; each snapshot's
    /// clusters build their mTLS client configs from it.
    pub mesh_tls: Option<remora_certs::MeshTls>,
    /// Where each snapshot's clusters intern their metric labels.
    pub labels: Interner,
    /// The workload identity, set once at startup when the proxy has a token (mTLS on);
    /// unset, the proxy runs without one and readiness needs only a config.
    pub identity: OnceLock<Arc<Identity>>,
    /// The trace sampling ratio; each applied snapshot sets it from
    /// `mesh.trace_sampling_percent` unless the operator pinned it.
    pub trace_sampling: SamplingControl,
    /// The app's health, set once at startup when the proxy probes its app;
    /// discovery reports each change, `/healthz/ready` says it.
    pub app: OnceLock<Arc<AppHealth>>,
}

impl ConfigState {
    /// No config yet; `mesh_tls` when the proxy has an identity.
    pub fn new(mesh_tls: Option<remora_certs::MeshTls>) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(RuntimeConfig::empty())),
            endpoints: EndpointRegistry::default(),
            ready: watch::Sender::new(false),
            mesh_tls,
            labels: Interner::global(),
            identity: OnceLock::new(),
            trace_sampling: SamplingControl::default(),
            app: OnceLock::new(),
        }
    }

    /// The same state, its trace sampling shared with the tracer.
    pub fn with_trace_sampling(mut self, sampling: SamplingControl) -> Self {
        self.trace_sampling = sampling;
        self
    }

    /// Why the proxy is not ready, or `None` when it is (see [`Self::is_ready`]).
    pub(crate) fn not_ready_reason(&self) -> Option<&'static str> {
        if !*self.ready.borrow() {
            return Some("no config from the control plane yet");
        }
        match self.identity.get() {
            Some(identity) if !identity.has_valid_certificate() => {
                Some("the workload certificate has expired and could not be renewed yet")
            }
            _ => None,
        }
    }

    /// Why the app is not ready, once it has been ready (before that the
    /// proxy's readiness does not wait for it: see [`crate::app_health`]).
    pub(crate) fn app_not_ready_reason(&self) -> Option<String> {
        let status = self.app.get()?.status();
        (status.ever_ready && !status.ready).then(|| format!("app not ready: {}", status.reason))
    }

    /// Validates and swaps in `snapshot`, then follows its mesh settings
    /// (the trace sampling ratio); on error the current config and ratio
    /// stay.
    ///
    /// An incremental snapshot (`base_version` set) is applied to the
    /// snapshot in force first ([`remora_proto::incremental::apply`]), and
    /// the whole is then validated and built as a complete one would be.
    pub fn apply(&self, snapshot: pb::Snapshot) -> Result<(), ConfigError> {
        let snapshot = if snapshot.base_version.is_empty() {
            snapshot
        } else {
            remora_proto::incremental::apply(self.current.load().snapshot(), snapshot)?
        };
        let sampling = mesh_sampling(snapshot.mesh.as_ref())?;
        let config = RuntimeConfig::build_after(
            snapshot,
            &self.endpoints,
            self.mesh_tls.as_ref(),
            self.labels,
            Some(&self.current.load()),
        )?;
        self.current.store(Arc::new(config));
        self.trace_sampling.apply_mesh(sampling);
        Ok(())
    }
}

/// The scrape-time gauges: ejected hosts, open connections to endpoints and
/// the version, all from the config applied at the scrape.
impl LiveConfig for ConfigState {
    fn figures(&self, now: Instant) -> ConfigFigures {
        let config = self.current.load_full();
        let ejected = config
            .clusters()
            .iter()
            .map(|c| {
                let n = c
                    .endpoints()
                    .iter()
                    .filter(|e| e.ejection_left(now).is_some())
                    .count();
                (c.service().to_owned(), c.subset().to_owned(), n)
            })
            .collect();
        // An endpoint is shared by every cluster that lists it: count it once.
        let mut seen = HashSet::new();
        let open_connections = config
            .clusters()
            .iter()
            .flat_map(|c| c.endpoints())
            .filter(|e| seen.insert(Arc::as_ptr(e)))
            .map(|e| e.open_connections())
            .sum();
        ConfigFigures {
            ejected,
            open_connections,
            version: config.version().to_owned(),
        }
    }
}

/// The mesh's trace sampling ratio, if the snapshot sets one.
fn mesh_sampling(mesh: Option<&pb::MeshSettings>) -> Result<Option<SamplingRatio>, ConfigError> {
    mesh.and_then(|m| m.trace_sampling_percent)
        .map(SamplingRatio::from_percent)
        .transpose()
        .map_err(|e| ConfigError::MeshSettings {
            field: "trace_sampling_percent",
            error: e.to_string(),
        })
}

impl Default for ConfigState {
    fn default() -> Self {
        Self::new(None)
    }
}

#[cfg(test)]
mod tests;
