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
mod tests {
    use remora_proto::pb;

    use super::*;
    use crate::upstream::EndpointRegistry;

    fn snapshot() -> pb::Snapshot {
        let endpoint = |address: &str| pb::Endpoint {
            address: address.to_owned(),
            ..Default::default()
        };
        pb::Snapshot {
            clusters: vec![
                pb::Cluster {
                    name: "|redis.shop.svc.cluster.local".into(),
                    service: "redis.shop.svc.cluster.local".into(),
                    endpoints: vec![endpoint("10.0.0.5:15006")],
                    tcp_ports: vec![6379],
                    ..Default::default()
                },
                pb::Cluster {
                    name: "v1|redis.shop.svc.cluster.local".into(),
                    service: "redis.shop.svc.cluster.local".into(),
                    subset: "v1".into(),
                    endpoints: vec![endpoint("10.0.0.5:15006")],
                    ..Default::default()
                },
                pb::Cluster {
                    name: "|db.example.com".into(),
                    service: "db.example.com".into(),
                    endpoints: vec![endpoint("db.example.com:5432")],
                    tcp_ports: vec![5432],
                    ..Default::default()
                },
            ],
            mesh: Some(pb::MeshSettings {
                outbound_traffic_policy: pb::OutboundTrafficPolicy::RegistryOnly as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn services_are_found_by_their_endpoint_ips_and_tcp_ports_skip_detection() {
        let snapshot = snapshot();
        let config =
            super::super::RuntimeConfig::build(snapshot, &EndpointRegistry::default(), None)
                .unwrap();
        let index = config.capture();
        assert_eq!(index.policy(), OutboundPolicy::RegistryOnly);
        let known = index.at("10.0.0.5".parse().unwrap()).expect("known");
        assert_eq!(known.cluster.name(), "|redis.shop.svc.cluster.local");
        assert_eq!(known.endpoint.address(), "10.0.0.5:15006");
        assert!(index.at("10.0.0.6".parse().unwrap()).is_none());
        assert!(index.is_declared_tcp("10.0.0.5:6379".parse().unwrap()));
        assert!(!index.is_declared_tcp("10.0.0.5:9080".parse().unwrap()));
        // An IP nobody knows: any service's TCP port counts.
        assert!(index.is_declared_tcp("192.0.2.1:5432".parse().unwrap()));
        assert!(!index.is_declared_tcp("192.0.2.1:80".parse().unwrap()));
    }

    #[test]
    fn an_unknown_policy_or_a_bad_port_is_refused_naming_the_field() {
        let mut bad = snapshot();
        bad.mesh = Some(pb::MeshSettings {
            outbound_traffic_policy: 9,
            ..Default::default()
        });
        let err = super::super::RuntimeConfig::build(bad, &EndpointRegistry::default(), None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mesh.outbound_traffic_policy: unknown policy 9"
        );
        let mut bad = snapshot();
        bad.clusters[0].tcp_ports = vec![70_000];
        let err = super::super::RuntimeConfig::build(bad, &EndpointRegistry::default(), None)
            .unwrap_err();
        assert!(err.to_string().contains("tcp_ports: 70000"), "{err}");
    }
}
