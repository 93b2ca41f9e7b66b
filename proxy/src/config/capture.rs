//! What the outbound listener needs for captured connections, built once
//! per snapshot: the `outboundTrafficPolicy`, the services by the IP
//! addresses of their endpoints (so that a connection whose Host is not a
//! mesh service, or that is not HTTP at all, is still recognised by its
//! original destination), and the ports declared TCP.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::{Cluster, OutboundPolicy};
use crate::upstream::Endpoint;

/// A service endpoint that a captured connection's original IP names.
#[derive(Debug, Clone)]
pub struct KnownDestination {
    /// The service's default cluster (every endpoint).
    pub cluster: Arc<Cluster>,
    /// The endpoint with that IP.
    pub endpoint: Arc<Endpoint>,
    tcp_ports: Arc<[u16]>,
}

/// The index of captured destinations.
#[derive(Debug, Default)]
pub struct CaptureIndex {
    policy: OutboundPolicy,
    by_ip: HashMap<IpAddr, KnownDestination>,
    /// Every port some service declares TCP, for destinations whose IP
    /// the mesh does not know (a ServiceEntry resolved by DNS).
    tcp_ports: HashSet<u16>,
}

impl CaptureIndex {
    /// Indexes the default clusters (no subset) of a snapshot by their
    /// endpoints' IPs; an IP two services share goes to the first by name.
    /// Endpoints named by DNS are not indexed (their IP is not known
    /// before a connection resolves it).
    pub fn build(policy: OutboundPolicy, clusters: &[Arc<Cluster>]) -> Self {
        let mut by_ip = HashMap::new();
        let mut all_tcp = HashSet::new();
        // `clusters` is sorted by name.
        for cluster in clusters.iter().filter(|c| c.subset().is_empty()) {
            let tcp_ports = cluster.tcp_ports();
            all_tcp.extend(tcp_ports.iter().copied());
            for endpoint in cluster.endpoints() {
                let Ok(addr) = endpoint.address().parse::<SocketAddr>() else {
                    continue;
                };
                by_ip.entry(addr.ip()).or_insert_with(|| KnownDestination {
                    cluster: Arc::clone(cluster),
                    endpoint: Arc::clone(endpoint),
                    tcp_ports: Arc::clone(tcp_ports),
                });
            }
        }
        Self {
            policy,
            by_ip,
            tcp_ports: all_tcp,
        }
    }

    /// The mesh's `outboundTrafficPolicy`.
    pub fn policy(&self) -> OutboundPolicy {
        self.policy
    }

    /// The service endpoint at `ip`, if the mesh knows one.
    pub fn at(&self, ip: IpAddr) -> Option<&KnownDestination> {
        self.by_ip.get(&ip)
    }

    /// Whether connections to `dst` are declared TCP: by the service at
    /// its IP, or, for an IP the mesh does not know, by any service.
    pub(crate) fn is_declared_tcp(&self, dst: SocketAddr) -> bool {
        match self.by_ip.get(&dst.ip()) {
            Some(known) => known.tcp_ports.contains(&dst.port()),
            None => self.tcp_ports.contains(&dst.port()),
        }
    }
}

#[cfg(test)]
mod tests;
