use super::*;

fn endpoint(address: &str) -> pb::Endpoint {
    pb::Endpoint {
        address: address.into(),
        ..Default::default()
    }
}

fn cluster(name: &str, endpoints: &[&str]) -> pb::Cluster {
    pb::Cluster {
        name: name.into(),
        endpoints: endpoints.iter().map(|a| endpoint(a)).collect(),
        ..Default::default()
    }
}

fn host(name: &str, clusters: &[&str]) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.into(),
        domains: vec![name.into()],
        routes: vec![pb::Route {
            name: "default".into(),
            destinations: clusters
                .iter()
                .map(|c| pb::WeightedCluster {
                    cluster: (*c).into(),
                    weight: 1,
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn complete(hosts: Vec<pb::VirtualHost>, clusters: Vec<pb::Cluster>) -> pb::Snapshot {
    let mut s = pb::Snapshot {
        virtual_hosts: hosts,
        clusters,
        inbound: Some(pb::InboundPolicy::default()),
        ..Default::default()
    };
    s.version = version_of(&s);
    s
}

fn base() -> pb::Snapshot {
    complete(
        vec![host("a", &["|a"]), host("b", &["|b"])],
        vec![
            cluster("|a", &["10.0.0.1:80"]),
            cluster("|b", &["10.0.0.2:80"]),
        ],
    )
}

#[test]
fn endpoints_alone_replace_one_list_and_keep_the_rest() {
    let base = base();
    let mut want = base.clone();
    want.clusters[1].endpoints = vec![endpoint("10.0.0.2:80"), endpoint("10.0.0.3:80")];
    want.version = version_of(&want);
    let update = pb::Snapshot {
        version: want.version.clone(),
        nonce: "2".into(),
        base_version: base.version.clone(),
        endpoints: vec![pb::ClusterEndpoints {
            cluster: "|b".into(),
            endpoints: want.clusters[1].endpoints.clone(),
        }],
        ..Default::default()
    };
    let got = apply(&base, update).expect("applies");
    assert_eq!(got.clusters, want.clusters);
    assert_eq!(got.virtual_hosts, base.virtual_hosts);
    assert_eq!(
        (got.version.as_str(), got.nonce.as_str()),
        (want.version.as_str(), "2")
    );
}

#[test]
fn routes_alone_keep_every_cluster_s_endpoints() {
    let base = base();
    // A route now splits to a new subset cluster, which comes with its endpoints.
    let mut want = complete(
        vec![host("a", &["|a", "v2|a"]), host("b", &["|b"])],
        vec![
            cluster("|a", &["10.0.0.1:80"]),
            cluster("v2|a", &["10.0.0.9:80"]),
            cluster("|b", &["10.0.0.2:80"]),
        ],
    );
    want.clusters[0].load_balancer = pb::LoadBalancer::RoundRobin as i32;
    want.version = version_of(&want);
    let shells = want
        .clusters
        .iter()
        .map(|c| pb::Cluster {
            endpoints: Vec::new(),
            ..c.clone()
        })
        .collect();
    let update = pb::Snapshot {
        version: want.version.clone(),
        base_version: base.version.clone(),
        routes_included: true,
        virtual_hosts: want.virtual_hosts.clone(),
        clusters: shells,
        inbound: want.inbound.clone(),
        endpoints: vec![pb::ClusterEndpoints {
            cluster: "v2|a".into(),
            endpoints: vec![endpoint("10.0.0.9:80")],
        }],
        ..Default::default()
    };
    let got = apply(&base, update).expect("applies");
    assert_eq!(got.clusters, want.clusters);
    assert_eq!(got.virtual_hosts, want.virtual_hosts);
}

#[test]
fn an_update_for_another_base_or_with_a_wrong_result_is_refused() {
    let base = base();
    let wrong_base = pb::Snapshot {
        version: "x".into(),
        base_version: "not-this".into(),
        ..Default::default()
    };
    assert!(matches!(
        apply(&base, wrong_base),
        Err(IncrementalError::WrongBase { .. })
    ));

    let unknown = pb::Snapshot {
        version: base.version.clone(),
        base_version: base.version.clone(),
        endpoints: vec![pb::ClusterEndpoints {
            cluster: "|gone".into(),
            endpoints: Vec::new(),
        }],
        ..Default::default()
    };
    assert_eq!(
        apply(&base, unknown),
        Err(IncrementalError::UnknownCluster("|gone".into()))
    );

    // Endpoints that do not give the version announced.
    let mismatch = pb::Snapshot {
        version: "0000000000000000".into(),
        base_version: base.version.clone(),
        endpoints: vec![pb::ClusterEndpoints {
            cluster: "|a".into(),
            endpoints: Vec::new(),
        }],
        ..Default::default()
    };
    assert!(matches!(
        apply(&base, mismatch),
        Err(IncrementalError::VersionMismatch { .. })
    ));
}

#[test]
fn the_version_ignores_version_and_nonce() {
    let mut s = base();
    let v = version_of(&s);
    s.nonce = "9".into();
    s.version = "whatever".into();
    assert_eq!(version_of(&s), v);
}
