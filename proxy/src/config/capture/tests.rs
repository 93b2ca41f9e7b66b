use remora_proto::pb;

use super::*;
use crate::telemetry::Interner;
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
    let config = super::super::RuntimeConfig::build(
        snapshot,
        &EndpointRegistry::default(),
        None,
        Interner::global(),
    )
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
    let err = super::super::RuntimeConfig::build(
        bad,
        &EndpointRegistry::default(),
        None,
        Interner::global(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mesh.outbound_traffic_policy: unknown policy 9"
    );
    let mut bad = snapshot();
    bad.clusters[0].tcp_ports = vec![70_000];
    let err = super::super::RuntimeConfig::build(
        bad,
        &EndpointRegistry::default(),
        None,
        Interner::global(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tcp_ports: 70000"), "{err}");
}
