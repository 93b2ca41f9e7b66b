use std::collections::{HashMap, HashSet};

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

// Per resource (`accepts_resource_increments`).

fn shell(c: &pb::Cluster) -> pb::Cluster {
    pb::Cluster {
        endpoints: Vec::new(),
        ..c.clone()
    }
}

fn list(c: &pb::Cluster) -> pb::ClusterEndpoints {
    pb::ClusterEndpoints {
        cluster: c.name.clone(),
        endpoints: c.endpoints.clone(),
    }
}

/// The per-resource update from `base` to `want` (both complete, in name
/// order), as the control plane builds it: what is new or changed, the
/// names of what is gone.
fn diff(base: &pb::Snapshot, want: &pb::Snapshot) -> pb::Snapshot {
    let hosts: HashMap<&str, &pb::VirtualHost> = base
        .virtual_hosts
        .iter()
        .map(|h| (h.name.as_str(), h))
        .collect();
    let clusters: HashMap<&str, &pb::Cluster> =
        base.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let wanted_hosts: HashSet<&str> = want.virtual_hosts.iter().map(|h| h.name.as_str()).collect();
    let wanted_clusters: HashSet<&str> = want.clusters.iter().map(|c| c.name.as_str()).collect();
    pb::Snapshot {
        version: want.version.clone(),
        nonce: "n".into(),
        base_version: base.version.clone(),
        virtual_hosts: want
            .virtual_hosts
            .iter()
            .filter(|h| hosts.get(h.name.as_str()) != Some(h))
            .cloned()
            .collect(),
        removed_virtual_hosts: base
            .virtual_hosts
            .iter()
            .filter(|h| !wanted_hosts.contains(h.name.as_str()))
            .map(|h| h.name.clone())
            .collect(),
        clusters: want
            .clusters
            .iter()
            .filter(|c| clusters.get(c.name.as_str()).map(|b| shell(b)) != Some(shell(c)))
            .map(shell)
            .collect(),
        removed_clusters: base
            .clusters
            .iter()
            .filter(|c| !wanted_clusters.contains(c.name.as_str()))
            .map(|c| c.name.clone())
            .collect(),
        endpoints: want
            .clusters
            .iter()
            .filter(|c| clusters.get(c.name.as_str()).map(|b| &b.endpoints) != Some(&c.endpoints))
            .map(list)
            .collect(),
        inbound_included: want.inbound != base.inbound,
        inbound: want
            .inbound
            .clone()
            .filter(|_| want.inbound != base.inbound),
        mesh_included: want.mesh != base.mesh,
        mesh: want.mesh.filter(|_| want.mesh != base.mesh),
        ..Default::default()
    }
}

fn three() -> pb::Snapshot {
    complete(
        vec![host("a", &["|a"]), host("b", &["|b"]), host("c", &["|c"])],
        vec![
            cluster("|a", &["10.0.0.1:80"]),
            cluster("|b", &["10.0.0.2:80"]),
            cluster("|c", &["10.0.0.3:80"]),
        ],
    )
}

#[test]
fn a_changed_virtual_host_alone_replaces_its_namesake_and_keeps_the_rest() {
    let base = three();
    let mut want = base.clone();
    want.virtual_hosts[1].routes[0].timeout = Some(seconds(5));
    want.version = version_of(&want);
    let update = diff(&base, &want);
    assert_eq!(update.virtual_hosts, [want.virtual_hosts[1].clone()]);
    assert!(update.clusters.is_empty() && update.endpoints.is_empty());
    assert!(!update.inbound_included && update.inbound.is_none());
    let got = apply(&base, update).expect("applies");
    assert_eq!(
        got,
        pb::Snapshot {
            nonce: "n".into(),
            ..want
        }
    );
}

fn seconds(seconds: i64) -> crate::Duration {
    crate::Duration { seconds, nanos: 0 }
}

#[test]
fn new_resources_merge_in_name_order_and_removed_ones_go() {
    let base = three();
    // `b` goes, `ab` and `d` come (with their clusters and endpoints).
    let want = complete(
        vec![
            host("a", &["|a"]),
            host("ab", &["|ab"]),
            host("c", &["|c"]),
            host("d", &["|d", "|a"]),
        ],
        vec![
            cluster("|a", &["10.0.0.1:80"]),
            cluster("|ab", &["10.0.0.7:80"]),
            cluster("|c", &["10.0.0.3:80"]),
            cluster("|d", &[]),
        ],
    );
    let mut update = diff(&base, &want);
    assert_eq!(update.removed_virtual_hosts, ["b"]);
    assert_eq!(update.removed_clusters, ["|b"]);
    // Sent in any order, merged in name order.
    update.virtual_hosts.reverse();
    update.clusters.reverse();
    let got = apply(&base, update).expect("applies");
    assert_eq!(got.virtual_hosts, want.virtual_hosts);
    assert_eq!(got.clusters, want.clusters);
    assert_eq!(got.version, want.version);
}

#[test]
fn a_changed_cluster_keeps_its_endpoints_unless_its_list_is_sent() {
    let base = three();
    let mut want = base.clone();
    want.clusters[0].load_balancer = pb::LoadBalancer::Random as i32;
    want.clusters[2].load_balancer = pb::LoadBalancer::Random as i32;
    want.clusters[2].endpoints = vec![endpoint("10.0.0.9:80")];
    want.version = version_of(&want);
    let update = diff(&base, &want);
    assert_eq!(update.clusters.len(), 2);
    assert_eq!(update.endpoints, [list(&want.clusters[2])]);
    let got = apply(&base, update).expect("applies");
    assert_eq!(got.clusters, want.clusters);
}

#[test]
fn inbound_and_mesh_change_only_when_included() {
    let mut base = three();
    base.mesh = Some(pb::MeshSettings {
        trace_sampling_percent: Some(5.0),
        ..Default::default()
    });
    base.version = version_of(&base);
    // Inbound changes; the mesh settings go (absent and included).
    let mut want = base.clone();
    want.inbound = Some(pb::InboundPolicy {
        mtls: pb::MtlsMode::Strict as i32,
        ..Default::default()
    });
    want.mesh = None;
    want.version = version_of(&want);
    let update = diff(&base, &want);
    assert!(update.inbound_included && update.mesh_included && update.mesh.is_none());
    assert!(update.virtual_hosts.is_empty() && update.clusters.is_empty());
    let got = apply(&base, update).expect("applies");
    assert_eq!((&got.inbound, &got.mesh), (&want.inbound, &None));

    // Not included: the base's stay, whatever the fields hold.
    let same = pb::Snapshot {
        version: base.version.clone(),
        base_version: base.version.clone(),
        inbound: want.inbound,
        ..Default::default()
    };
    let got = apply(&base, same).expect("applies");
    assert_eq!((&got.inbound, &got.mesh), (&base.inbound, &base.mesh));
}

/// An older control plane lists clusters in its own order and never sends
/// per-resource changes: its endpoint-only updates keep applying.
#[test]
fn untouched_lists_keep_the_base_s_order() {
    let mut base = three();
    base.clusters.reverse();
    base.version = version_of(&base);
    let mut want = base.clone();
    want.clusters[0].endpoints.clear();
    want.version = version_of(&want);
    let update = diff(&base, &want);
    assert!(update.clusters.is_empty());
    assert_eq!(
        apply(&base, update).expect("applies").clusters,
        want.clusters
    );
}

/// Random pairs of configs: the update from one to the other, applied,
/// gives the other, whatever changed.
#[test]
fn any_change_applied_gives_the_snapshot_it_was_made_for() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let random = |next: &mut dyn FnMut() -> u64| {
        let mut hosts = Vec::new();
        let mut clusters = Vec::new();
        for i in 0..12u64 {
            if next().is_multiple_of(3) {
                continue;
            }
            let name = format!("svc-{i:02}");
            let c = format!("|{name}");
            hosts.push(host(&name, &[c.as_str()]));
            if next().is_multiple_of(2) {
                hosts.last_mut().expect("pushed").routes[0].timeout = Some(seconds(1));
            }
            let address = format!("10.0.0.{}:80", next() % 3);
            let mut cl = cluster(&c, &[address.as_str()]);
            cl.load_balancer = (next() % 3) as i32;
            clusters.push(cl);
        }
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let mut s = complete(hosts, clusters);
        if next().is_multiple_of(2) {
            s.inbound = None;
        }
        s.version = version_of(&s);
        s
    };
    for _ in 0..200 {
        let base = random(&mut next);
        let want = random(&mut next);
        let got = apply(&base, diff(&base, &want)).expect("applies");
        assert_eq!(got.version, want.version);
        assert_eq!(got.virtual_hosts, want.virtual_hosts);
        assert_eq!(got.clusters, want.clusters);
    }
}

#[test]
fn hostile_updates_are_refused_by_name() {
    let base = three();
    let update = |f: &dyn Fn(&mut pb::Snapshot)| {
        let mut u = pb::Snapshot {
            version: base.version.clone(),
            base_version: base.version.clone(),
            ..Default::default()
        };
        f(&mut u);
        apply(&base, u).expect_err("refused")
    };
    let kind = ResourceKind::VirtualHost;
    assert_eq!(
        update(&|u| u.virtual_hosts = vec![host("x", &["|a"]), host("x", &["|b"])]),
        IncrementalError::Duplicate {
            kind,
            name: "x".into()
        }
    );
    assert_eq!(
        update(&|u| u.removed_virtual_hosts = vec!["a".into(), "a".into()]),
        IncrementalError::Duplicate {
            kind,
            name: "a".into()
        }
    );
    assert_eq!(
        update(&|u| u.removed_virtual_hosts = vec!["nope".into()]),
        IncrementalError::NotInBase {
            kind,
            name: "nope".into()
        }
    );
    assert_eq!(
        update(&|u| {
            u.virtual_hosts = vec![host("b", &["|a"])];
            u.removed_virtual_hosts = vec!["b".into()];
        }),
        IncrementalError::SentAndRemoved {
            kind,
            name: "b".into()
        }
    );
    assert_eq!(
        update(&|u| u.removed_clusters = vec!["|zz".into()]),
        IncrementalError::NotInBase {
            kind: ResourceKind::Cluster,
            name: "|zz".into()
        }
    );
    assert_eq!(
        update(&|u| u.clusters = vec![cluster("|a", &["10.6.6.6:80"])]),
        IncrementalError::EndpointsInCluster("|a".into())
    );
    assert_eq!(
        update(&|u| u.endpoints = vec![list(&base.clusters[0]), list(&base.clusters[0])]),
        IncrementalError::Duplicate {
            kind: ResourceKind::EndpointList,
            name: "|a".into()
        }
    );
    // A removed cluster's endpoints cannot be sent.
    assert_eq!(
        update(&|u| {
            u.removed_clusters = vec!["|a".into()];
            u.endpoints = vec![list(&base.clusters[0])];
        }),
        IncrementalError::UnknownCluster("|a".into())
    );
    assert_eq!(
        update(&|u| {
            u.routes_included = true;
            u.removed_clusters = vec!["|a".into()];
        }),
        IncrementalError::MixedForms
    );
    // A route left without its cluster: the merge applies, the version
    // cannot match (the control plane never versions such a config).
    assert!(matches!(
        update(&|u| u.removed_clusters = vec!["|a".into()]),
        IncrementalError::VersionMismatch { .. }
    ));
}

#[test]
fn a_huge_name_is_quoted_cut_in_the_error() {
    let base = three();
    let name = "é".repeat(100_000);
    let err = apply(
        &base,
        pb::Snapshot {
            base_version: base.version.clone(),
            removed_virtual_hosts: vec![name],
            ..Default::default()
        },
    )
    .expect_err("refused");
    assert!(err.to_string().len() < 400, "{}", err.to_string().len());
}

/// Many names, all new: merged with maps, not a scan per name.
#[test]
fn a_large_update_merges_every_name_once() {
    let base = three();
    let hosts: Vec<pb::VirtualHost> = (0..50_000)
        .rev()
        .map(|i| host(&format!("h{i:05}"), &["|a"]))
        .collect();
    let mut want = base.clone();
    want.virtual_hosts.extend(hosts.iter().cloned());
    want.virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    want.version = version_of(&want);
    let got = apply(
        &base,
        pb::Snapshot {
            version: want.version.clone(),
            base_version: base.version.clone(),
            virtual_hosts: hosts,
            ..Default::default()
        },
    )
    .expect("applies");
    assert_eq!(got.virtual_hosts.len(), 50_003);
    assert_eq!(got.version, want.version);
}
