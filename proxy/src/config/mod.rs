//! Runtime config: a snapshot from the control plane, validated once into
//! the types the request path uses (regexes compiled, weights scheduled,
//! clusters resolved, routes indexed by host).
//!
//! A snapshot that fails here is NACKed and the previous config keeps
//! serving; nothing on the request path re-checks what was validated here.

mod capture;
mod cluster;
mod inbound;
mod protocol;

use std::collections::HashMap;
use std::sync::Arc;

use remora_certs::MeshTls;
use remora_proto::pb;

use crate::http::path::{EscapedSlashes, PathNormalization};
use crate::route::{Route, VirtualHost};
use crate::upstream::EndpointRegistry;

pub use capture::{CaptureIndex, KnownDestination, OutboundPolicy};
pub use cluster::Cluster;
pub use inbound::{InboundPolicy, MtlsMode};
pub use protocol::{PortProtocol, ServicePorts, UpstreamPolicy, app_version, upstream_version};

/// Why a snapshot cannot be applied. The text is what the NACK carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A regex did not compile.
    #[error("{field}: invalid regex: {error}")]
    Regex {
        /// Where the regex is.
        field: String,
        /// The regex engine's message.
        error: String,
    },
    /// A `StringMatch` with none of exact, prefix, regex.
    #[error("{field}: string match has none of exact, prefix, regex")]
    EmptyStringMatch {
        /// Where the match is.
        field: String,
    },
    /// A virtual host declares a port outside 1–65535.
    #[error("virtual host {host}: port {port} is not in 1-65535")]
    BadPort {
        /// The virtual host.
        host: String,
        /// The port sent.
        port: u32,
    },
    /// A route names a cluster the snapshot does not define.
    #[error("{route}: destination names unknown cluster `{cluster}`")]
    UnknownCluster {
        /// The route.
        route: String,
        /// The missing cluster.
        cluster: String,
    },
    /// A route whose destinations are missing or all weigh zero.
    #[error("{route}: needs at least one destination with a weight above zero")]
    NoWeight {
        /// The route.
        route: String,
    },
    /// An endpoint address that is not `host:port`.
    #[error("cluster {cluster}: endpoint address `{address}` is not host:port")]
    BadAddress {
        /// The cluster.
        cluster: String,
        /// The address as sent.
        address: String,
    },
    /// The same cluster name twice.
    #[error("cluster `{name}` is defined twice")]
    DuplicateCluster {
        /// The cluster name.
        name: String,
    },
    /// The same domain in two virtual hosts.
    #[error("domain `{domain}` belongs to both {first} and {second}")]
    DuplicateDomain {
        /// The domain.
        domain: String,
        /// The first virtual host.
        first: String,
        /// The second virtual host.
        second: String,
    },
    /// A cluster's `outlierDetection` or `connectionPool` is out of range.
    #[error("cluster {cluster}: {error}")]
    Policy {
        /// The cluster.
        cluster: String,
        /// What is wrong, naming the field.
        error: String,
    },
    /// A route's `timeout`, `retries` or `fault` is invalid.
    #[error("{route}: {error}")]
    RoutePolicy {
        /// The virtual host and route.
        route: String,
        /// What is wrong, naming the field.
        error: String,
    },
    /// An mTLS endpoint without a valid SPIFFE ID to check it against.
    #[error("cluster {cluster}: endpoint {address}: {error}")]
    EndpointIdentity {
        /// The cluster.
        cluster: String,
        /// The endpoint's address.
        address: String,
        /// What is wrong with its `spiffe_id`.
        error: String,
    },
    /// The cluster's mTLS client config could not be built.
    #[error("cluster {cluster}: cannot build the mTLS client config: {error}")]
    Tls {
        /// The cluster.
        cluster: String,
        /// What remora-certs said.
        error: String,
    },
    /// The inbound policy (PeerAuthentication mode or an
    /// AuthorizationPolicy) is invalid.
    #[error("{error}")]
    Inbound {
        /// What is wrong, naming the field.
        error: String,
    },
    /// An enum value this proxy does not know (a newer control plane).
    #[error("cluster {cluster}: unknown load balancer {value}")]
    UnknownLoadBalancer {
        /// The cluster.
        cluster: String,
        /// The raw value.
        value: i32,
    },
    /// `Snapshot.mesh` holds a value out of range.
    #[error("mesh.{field}: {error}")]
    MeshSettings {
        /// The field of `MeshSettings`.
        field: &'static str,
        /// What is wrong with it.
        error: String,
    },
}

/// The config the proxy routes by. Immutable once built; replaced whole.
#[derive(Debug)]
pub struct RuntimeConfig {
    version: String,
    hosts: HashMap<String, Arc<VirtualHost>>,
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
            hosts: HashMap::new(),
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
    pub fn build(
        snapshot: pb::Snapshot,
        endpoints: &EndpointRegistry,
        mesh_tls: Option<&MeshTls>,
    ) -> Result<Self, ConfigError> {
        let inbound = InboundPolicy::build(snapshot.inbound.as_ref())?;
        let paths = path_normalization(snapshot.mesh.as_ref())?;
        let mut clusters = HashMap::with_capacity(snapshot.clusters.len());
        for c in &snapshot.clusters {
            let cluster = Arc::new(Cluster::build(c, endpoints, mesh_tls)?);
            if clusters.insert(c.name.clone(), cluster).is_some() {
                return Err(ConfigError::DuplicateCluster {
                    name: c.name.clone(),
                });
            }
        }
        let capture = CaptureIndex::build(&snapshot, &clusters)?;
        let mut hosts: HashMap<String, Arc<VirtualHost>> = HashMap::new();
        for vh in &snapshot.virtual_hosts {
            let routes = vh
                .routes
                .iter()
                .map(|r| Route::build(r, &vh.name, &clusters))
                .collect::<Result<Vec<_>, _>>()?;
            let ports = vh
                .ports
                .iter()
                .map(|&port| match u16::try_from(port) {
                    Ok(p) if p > 0 => Ok(p),
                    _ => Err(ConfigError::BadPort {
                        host: vh.name.clone(),
                        port,
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let host = Arc::new(VirtualHost::new(vh.name.clone(), routes).with_ports(ports));
            for domain in &vh.domains {
                if let Some(first) = hosts.insert(domain.to_ascii_lowercase(), Arc::clone(&host)) {
                    return Err(ConfigError::DuplicateDomain {
                        domain: domain.clone(),
                        first: first.name().to_owned(),
                        second: vh.name.clone(),
                    });
                }
            }
        }
        let mut snapshot = snapshot;
        snapshot.nonce.clear();
        let mut clusters: Vec<Arc<Cluster>> = clusters.into_values().collect();
        clusters.sort_by(|a, b| a.name().cmp(b.name()));
        let mut service_ports = HashMap::new();
        for c in &clusters {
            service_ports
                .entry(c.service().to_owned())
                .or_insert_with(|| c.service_ports().clone());
        }
        Ok(Self {
            version: snapshot.version.clone(),
            hosts,
            clusters,
            service_ports,
            inbound,
            paths,
            capture,
            snapshot,
        })
    }

    /// How both directions normalise request paths (`mesh.path_normalization`
    /// and `mesh.escaped_slashes`; BASE when the snapshot sets neither).
    pub fn path_normalization(&self) -> PathNormalization {
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
    pub fn app_protocol(&self, service: &str, port: u16, is_app: bool) -> PortProtocol {
        self.service_ports
            .get(service)
            .map_or(PortProtocol::Undeclared, |p| p.for_app_port(port, is_app))
    }

    /// The virtual host for a lower-case host name without port.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        self.hosts.get(host).map(|h| &**h)
    }
}

/// The mesh's path normalisation: Istio's names on the wire, each an
/// unknown value a NACK (a newer control plane).
fn path_normalization(mesh: Option<&pb::MeshSettings>) -> Result<PathNormalization, ConfigError> {
    let Some(mesh) = mesh else {
        return Ok(PathNormalization::default());
    };
    let unknown = |field, value| ConfigError::MeshSettings {
        field,
        error: format!("unknown value {value}"),
    };
    let mut paths = match pb::PathNormalization::try_from(mesh.path_normalization) {
        Ok(pb::PathNormalization::None) => PathNormalization::NONE,
        Ok(pb::PathNormalization::Base) => PathNormalization::BASE,
        Ok(pb::PathNormalization::MergeSlashes) => PathNormalization::MERGE_SLASHES,
        Ok(pb::PathNormalization::DecodeAndMergeSlashes) => {
            PathNormalization::DECODE_AND_MERGE_SLASHES
        }
        Err(_) => return Err(unknown("path_normalization", mesh.path_normalization)),
    };
    paths.escaped_slashes = match pb::EscapedSlashesAction::try_from(mesh.escaped_slashes) {
        Ok(pb::EscapedSlashesAction::Default) => paths.escaped_slashes,
        Ok(pb::EscapedSlashesAction::KeepUnchanged) => EscapedSlashes::Keep,
        Ok(pb::EscapedSlashesAction::RejectRequest) => EscapedSlashes::Reject,
        Ok(pb::EscapedSlashesAction::UnescapeAndForward) => EscapedSlashes::Unescape,
        Err(_) => return Err(unknown("escaped_slashes", mesh.escaped_slashes)),
    };
    Ok(paths)
}

#[cfg(test)]
mod tests;
