//! Runtime config: a snapshot from the control plane, compiled once by
//! [`remora_route`] (regexes compiled, weights scheduled, clusters
//! resolved, routes indexed by host) with the proxy's live state added:
//! each cluster's endpoints, metric labels and mTLS client config.
//!
//! A snapshot that fails here is NACKed and the previous config keeps
//! serving; nothing on the request path re-checks what was validated here.

mod capture;
mod cluster;

use std::collections::HashMap;
use std::sync::Arc;

use remora_certs::MeshTls;
use remora_proto::pb;
use remora_route::{CompiledSnapshot, RouteTable};

use crate::http::path::PathNormalization;
use crate::telemetry::Interner;
use crate::upstream::EndpointRegistry;

pub(crate) use capture::CaptureIndex;
pub use cluster::Cluster;
pub(crate) use remora_route::protocol::{
    PortProtocol, ServicePorts, UpstreamPolicy, app_version, upstream_version,
};
pub use remora_route::{ConfigError, InboundPolicy, MtlsMode, OutboundPolicy};

/// A route of the proxy: its destinations are live clusters.
pub type Route = remora_route::Route<Arc<Cluster>>;
/// A virtual host of the proxy.
pub type VirtualHost = remora_route::VirtualHost<Arc<Cluster>>;

/// The config the proxy routes by. Immutable once built; replaced whole.
#[derive(Debug)]
pub struct RuntimeConfig {
    version: String,
    hosts: RouteTable<Arc<Cluster>>,
    /// Every cluster, by name, for the admin API.
    clusters: Vec<Arc<Cluster>>,
    /// The declared ports of every service with a cluster, by FQDN: a
    /// sidecar finds its own app's here.
    service_ports: HashMap<String, ServicePorts>,
    inbound: InboundPolicy,
    paths: PathNormalization,
    capture: CaptureIndex,
    snapshot: pb::Snapshot,
}

impl RuntimeConfig {
    /// The config before the first snapshot: routes nothing.
    pub fn empty() -> Self {
        Self {
            version: String::new(),
            hosts: RouteTable::default(),
            clusters: Vec::new(),
            service_ports: HashMap::new(),
            inbound: InboundPolicy::default(),
            paths: PathNormalization::default(),
            capture: CaptureIndex::default(),
            snapshot: pb::Snapshot::default(),
        }
    }

    /// Validates `snapshot` into runtime types, reusing live endpoint state
    /// from `endpoints`. With `mesh_tls` (the proxy has an identity), each
    /// cluster with mTLS endpoints gets its client config here, once per
    /// snapshot; without it, requests to mTLS endpoints fail with 502.
    /// Each cluster's metric labels are interned here through `labels`, so
    /// that requests only clone them.
    pub fn build(
        snapshot: pb::Snapshot,
        endpoints: &EndpointRegistry,
        mesh_tls: Option<&MeshTls>,
        labels: Interner,
    ) -> Result<Self, ConfigError> {
        Self::build_after(snapshot, endpoints, mesh_tls, labels, None)
    }

    /// As [`Self::build`], replacing `previous`: a route that splits
    /// traffic as it did there walks on with its weighted sequence, so a
    /// push that changed something else (a registration anywhere in the
    /// mesh) keeps a 90/10 split exact.
    pub fn build_after(
        snapshot: pb::Snapshot,
        endpoints: &EndpointRegistry,
        mesh_tls: Option<&MeshTls>,
        labels: Interner,
        previous: Option<&RuntimeConfig>,
    ) -> Result<Self, ConfigError> {
        let compiled =
            CompiledSnapshot::compile_after(&snapshot, previous.map(|p| &p.hosts), |spec| {
                Cluster::build(spec, endpoints, mesh_tls, labels).map(Arc::new)
            })?;
        let capture = CaptureIndex::build(compiled.outbound_policy, &compiled.clusters);
        let mut snapshot = snapshot;
        snapshot.nonce.clear();
        let mut service_ports = HashMap::new();
        for c in &compiled.clusters {
            service_ports
                .entry(c.service().to_owned())
                .or_insert_with(|| c.service_ports().clone());
        }
        Ok(Self {
            version: compiled.version,
            hosts: compiled.routes,
            clusters: compiled.clusters,
            service_ports,
            inbound: compiled.inbound,
            paths: compiled.paths,
            capture,
            snapshot,
        })
    }

    /// How both directions normalise request paths (`mesh.path_normalization`
    /// and `mesh.escaped_slashes`; BASE when the snapshot sets neither).
    pub(crate) fn path_normalization(&self) -> PathNormalization {
        self.paths
    }

    /// How the inbound listener authenticates and authorizes peers.
    pub fn inbound(&self) -> &InboundPolicy {
        &self.inbound
    }

    /// What captured connections need: the outbound traffic policy and
    /// the services by IP.
    pub fn capture(&self) -> &CaptureIndex {
        &self.capture
    }

    /// The snapshot version this config was built from (empty before the first).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The snapshot as received, for the admin API.
    pub fn snapshot(&self) -> &pb::Snapshot {
        &self.snapshot
    }

    /// Every cluster, sorted by name.
    pub fn clusters(&self) -> &[Arc<Cluster>] {
        &self.clusters
    }

    /// The protocol of app port `port` at a sidecar of `service` (an
    /// FQDN), `is_app` for its `--app` port: see
    /// [`ServicePorts::for_app_port`]. Undeclared for a service without
    /// declared ports.
    pub(crate) fn app_protocol(&self, service: &str, port: u16, is_app: bool) -> PortProtocol {
        self.service_ports
            .get(service)
            .map_or(PortProtocol::Undeclared, |p| p.for_app_port(port, is_app))
    }

    /// The virtual host for a lower-case host name without port.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        self.hosts.virtual_host(host)
    }
}

#[cfg(test)]
mod tests;
