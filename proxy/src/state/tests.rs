use super::*;

fn snapshot(version: &str, percent: Option<f64>) -> pb::Snapshot {
    pb::Snapshot {
        version: version.to_owned(),
        mesh: percent.map(|p| pb::MeshSettings {
            trace_sampling_percent: Some(p),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn applied_snapshot_sets_the_trace_ratio_unless_the_flag_pinned_it() {
    let sampling = SamplingControl::new(None);
    let state = ConfigState::new(None).with_trace_sampling(sampling.clone());
    state.apply(snapshot("v1", Some(100.0))).expect("applied");
    assert_eq!(sampling.ratio(), SamplingRatio::ALWAYS);
    state.apply(snapshot("v2", Some(0.0))).expect("applied");
    assert_eq!(sampling.ratio(), SamplingRatio::NEVER);
    state.apply(snapshot("v3", None)).expect("applied");
    assert_eq!(sampling.ratio(), SamplingRatio::ISTIO_DEFAULT);

    let pinned = SamplingControl::new(Some(SamplingRatio::ALWAYS));
    let state = ConfigState::new(None).with_trace_sampling(pinned.clone());
    state.apply(snapshot("v1", Some(0.0))).expect("applied");
    assert_eq!(pinned.ratio(), SamplingRatio::ALWAYS, "the flag wins");
}

/// A snapshot of one host routed to `|a`, whose endpoint is `address`.
fn routed(address: &str) -> pb::Snapshot {
    let mut s = pb::Snapshot {
        virtual_hosts: vec![pb::VirtualHost {
            name: "a".into(),
            domains: vec!["a".into()],
            routes: vec![pb::Route {
                name: "default".into(),
                destinations: vec![pb::WeightedCluster {
                    cluster: "|a".into(),
                    weight: 100,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        clusters: vec![pb::Cluster {
            name: "|a".into(),
            service: "a".into(),
            endpoints: vec![pb::Endpoint {
                address: address.into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    s.version = remora_proto::incremental::version_of(&s);
    s
}

/// The incremental snapshot from `base` to `next`: `next`'s endpoints only.
fn endpoints_update(base: &pb::Snapshot, next: &pb::Snapshot) -> pb::Snapshot {
    pb::Snapshot {
        version: next.version.clone(),
        base_version: base.version.clone(),
        endpoints: vec![pb::ClusterEndpoints {
            cluster: "|a".into(),
            endpoints: next.clusters[0].endpoints.clone(),
        }],
        ..Default::default()
    }
}

#[test]
fn an_incremental_snapshot_applies_to_the_config_in_force() {
    let state = ConfigState::new(None);
    let base = routed("127.0.0.1:1");
    state.apply(base.clone()).expect("applied");
    let next = routed("127.0.0.1:2");
    state
        .apply(endpoints_update(&base, &next))
        .expect("applied");
    let current = state.current.load();
    assert_eq!(current.version(), next.version);
    assert_eq!(current.snapshot().clusters, next.clusters);
    assert_eq!(current.snapshot().virtual_hosts, base.virtual_hosts);
}

#[test]
fn a_nacked_incremental_snapshot_keeps_the_config_in_force() {
    let state = ConfigState::new(None);
    let base = routed("127.0.0.1:1");
    state.apply(base.clone()).expect("applied");
    // Applies, but the whole does not validate.
    let bad = routed("no port here");
    let err = state
        .apply(endpoints_update(&base, &bad))
        .expect_err("refused");
    assert!(matches!(err, ConfigError::BadAddress { .. }), "{err}");
    // For a config this proxy does not run.
    let other = routed("127.0.0.1:3");
    let err = state
        .apply(endpoints_update(&other, &routed("127.0.0.1:4")))
        .expect_err("refused");
    assert!(matches!(err, ConfigError::Incremental(_)), "{err}");
    let current = state.current.load();
    assert_eq!(current.version(), base.version);
    assert_eq!(current.snapshot().clusters, base.clusters);
}

/// Per resource: a route moved to a new cluster, sent with that cluster
/// and its endpoints, applies; an update whose result would route to a
/// cluster it removes (its version made to match) does not validate, and
/// the config in force stays.
#[test]
fn a_per_resource_snapshot_applies_whole_or_not_at_all() {
    let state = ConfigState::new(None);
    let base = routed("127.0.0.1:1");
    state.apply(base.clone()).expect("applied");
    let mut moved = base.clone();
    moved.virtual_hosts[0].routes[0].destinations[0].cluster = "|b".into();
    moved.clusters.push(pb::Cluster {
        name: "|b".into(),
        service: "b".into(),
        ..Default::default()
    });
    moved.version = remora_proto::incremental::version_of(&moved);
    let update = pb::Snapshot {
        version: moved.version.clone(),
        base_version: base.version,
        virtual_hosts: moved.virtual_hosts.clone(),
        clusters: vec![moved.clusters[1].clone()],
        endpoints: vec![pb::ClusterEndpoints {
            cluster: "|b".into(),
            endpoints: Vec::new(),
        }],
        ..Default::default()
    };
    state.apply(update).expect("applied");
    assert_eq!(state.current.load().snapshot().clusters, moved.clusters);

    let mut broken = moved.clone();
    broken.clusters.pop();
    broken.version = remora_proto::incremental::version_of(&broken);
    let err = state
        .apply(pb::Snapshot {
            version: broken.version.clone(),
            base_version: moved.version.clone(),
            removed_clusters: vec!["|b".into()],
            ..Default::default()
        })
        .expect_err("refused");
    assert!(matches!(err, ConfigError::UnknownCluster { .. }), "{err}");
    let current = state.current.load();
    assert_eq!(current.version(), moved.version);
    assert_eq!(current.snapshot().clusters, moved.clusters);
}

#[test]
fn out_of_range_ratio_is_refused_and_changes_nothing() {
    let sampling = SamplingControl::new(None);
    let state = ConfigState::new(None).with_trace_sampling(sampling.clone());
    state.apply(snapshot("v1", Some(100.0))).expect("applied");
    for bad in [150.0, -1.0, f64::NAN] {
        let err = state.apply(snapshot("v2", Some(bad))).expect_err("refused");
        assert!(
            matches!(
                err,
                ConfigError::MeshSettings {
                    field: "trace_sampling_percent",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("from 0 to 100"), "{err}");
    }
    assert_eq!(sampling.ratio(), SamplingRatio::ALWAYS);
    assert_eq!(state.current.load().version(), "v1");
}

/// `routed("127.0.0.1:1001")` split 90/10 between `v1|a` and `v2|a`.
fn canary(v1_address: &str) -> pb::Snapshot {
    let mut s = routed(v1_address);
    s.virtual_hosts[0].routes[0].destinations = vec![
        pb::WeightedCluster {
            cluster: "v1|a".into(),
            weight: 90,
        },
        pb::WeightedCluster {
            cluster: "v2|a".into(),
            weight: 10,
        },
    ];
    let mut v1 = s.clusters[0].clone();
    v1.name = "v1|a".into();
    v1.subset = "v1".into();
    let mut v2 = v1.clone();
    v2.name = "v2|a".into();
    v2.subset = "v2".into();
    v2.endpoints[0].address = "127.0.0.1:2002".into();
    s.clusters.extend([v1, v2]);
    s.version = remora_proto::incremental::version_of(&s);
    s
}

#[test]
fn a_push_that_leaves_a_split_alone_keeps_it_exact() {
    let request = http::Request::get("http://a/")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    for before in 0..10 {
        let state = ConfigState::new(None);
        state.apply(canary("127.0.0.1:1001")).expect("applied");
        let mut to_v2 = 0;
        let mut pick = || {
            let config = state.current.load();
            let route = config
                .virtual_host("a")
                .expect("a")
                .route(&request)
                .expect("route");
            if route.pick_destination().name() == "v2|a" {
                to_v2 += 1;
            }
        };
        for _ in 0..before {
            pick();
        }
        // Another endpoint of `|a` registers: a new config, the same split.
        state.apply(canary("127.0.0.1:1003")).expect("applied");
        for _ in before..1000 {
            pick();
        }
        assert_eq!(to_v2, 100, "the push came after {before} requests");
    }
}
