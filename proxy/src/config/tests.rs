use super::*;
use pb::string_match::Kind;

fn cluster(name: &str, addrs: &[&str]) -> pb::Cluster {
    let (subset, service) = name.split_once('|').unwrap();
    pb::Cluster {
        name: name.into(),
        service: service.into(),
        subset: subset.into(),
        endpoints: addrs
            .iter()
            .map(|a| pb::Endpoint {
                address: (*a).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn dest(cluster: &str, weight: u32) -> pb::WeightedCluster {
    pb::WeightedCluster {
        cluster: cluster.into(),
        weight,
    }
}

/// The canary: `end-user: jason` → v2, everything else v1 90 / v2 10.
fn canary() -> pb::Snapshot {
    let jason = pb::RouteMatch {
        headers: vec![pb::KeyMatch {
            name: "end-user".into(),
            value: Some(pb::StringMatch {
                kind: Some(Kind::Exact("jason".into())),
            }),
        }],
        ..Default::default()
    };
    pb::Snapshot {
        version: "v-test".into(),
        nonce: "1".into(),
        virtual_hosts: vec![pb::VirtualHost {
            name: "reviews.default.svc.cluster.local".into(),
            domains: vec!["reviews".into(), "reviews.default.svc.cluster.local".into()],
            routes: vec![
                pb::Route {
                    name: "jason".into(),
                    matches: vec![jason],
                    destinations: vec![dest("v2|reviews", 100)],
                    ..Default::default()
                },
                pb::Route {
                    name: "split".into(),
                    matches: vec![],
                    destinations: vec![dest("v1|reviews", 90), dest("v2|reviews", 10)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        clusters: vec![
            cluster("v1|reviews", &["127.0.0.1:1001"]),
            cluster("v2|reviews", &["127.0.0.1:1002"]),
        ],
        ..Default::default()
    }
}

fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().uri("/");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn canary_routes_jason_first_then_splits_ninety_ten() {
    let config = RuntimeConfig::build(
        canary(),
        &EndpointRegistry::default(),
        None,
        Interner::global(),
    )
    .unwrap();
    assert_eq!(config.version(), "v-test");
    let vh = config.virtual_host("reviews").unwrap();
    for _ in 0..20 {
        let r = vh.route(&parts(&[("end-user", "jason")])).unwrap();
        assert_eq!(r.pick_destination().subset(), "v2");
    }
    let split = vh.route(&parts(&[])).unwrap();
    assert_eq!(split.name(), "split");
    let v2 = (0..1000)
        .filter(|_| split.pick_destination().subset() == "v2")
        .count();
    assert_eq!(v2, 100);
    assert!(config.virtual_host("ratings").is_none());
}

#[test]
fn first_matching_route_wins() {
    let mut s = canary();
    // A catch-all placed first shadows the jason route.
    let catch_all = pb::Route {
        name: "all".into(),
        matches: vec![],
        destinations: vec![dest("v1|reviews", 1)],
        ..Default::default()
    };
    s.virtual_hosts[0].routes.insert(0, catch_all);
    let config =
        RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global()).unwrap();
    let r = config
        .virtual_host("reviews")
        .unwrap()
        .route(&parts(&[("end-user", "jason")]))
        .unwrap();
    assert_eq!(r.name(), "all");
}

#[test]
fn unknown_cluster_all_zero_weights_and_bad_regex_are_rejected() {
    let mut s = canary();
    s.virtual_hosts[0].routes[1].destinations[0].cluster = "v3|reviews".into();
    let err = RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global())
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown cluster `v3|reviews`"),
        "{err}"
    );

    let mut s = canary();
    for d in &mut s.virtual_hosts[0].routes[1].destinations {
        d.weight = 0;
    }
    let err = RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global())
        .unwrap_err();
    assert!(matches!(err, ConfigError::NoWeight { .. }), "{err}");

    let mut s = canary();
    s.virtual_hosts[0].routes[0].matches[0].uri = Some(pb::StringMatch {
        kind: Some(Kind::Regex("[".into())),
    });
    let err = RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global())
        .unwrap_err();
    assert!(err.to_string().contains("invalid regex"), "{err}");
}

#[test]
fn bad_address_and_duplicate_domain_are_rejected() {
    let mut s = canary();
    s.clusters[0].endpoints[0].address = "no-port".into();
    assert!(matches!(
        RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global()),
        Err(ConfigError::BadAddress { .. })
    ));

    let mut s = canary();
    let mut twin = s.virtual_hosts[0].clone();
    twin.name = "other".into();
    s.virtual_hosts.push(twin);
    assert!(matches!(
        RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global()),
        Err(ConfigError::DuplicateDomain { .. })
    ));
}

#[test]
fn endpoint_state_survives_a_new_config() {
    let registry = EndpointRegistry::default();
    let first = RuntimeConfig::build(canary(), &registry, None, Interner::global()).unwrap();
    let e1 = first
        .virtual_host("reviews")
        .unwrap()
        .route(&parts(&[("end-user", "jason")]))
        .unwrap()
        .pick_destination()
        .pick_endpoint()
        .unwrap()
        .clone();
    let _active = e1.start_request();
    let second = RuntimeConfig::build(canary(), &registry, None, Interner::global()).unwrap();
    let e2 = second
        .virtual_host("reviews")
        .unwrap()
        .route(&parts(&[("end-user", "jason")]))
        .unwrap()
        .pick_destination()
        .pick_endpoint()
        .unwrap()
        .clone();
    assert!(Arc::ptr_eq(&e1, &e2));
    assert_eq!(e2.active_requests(), 1);
}

#[test]
fn path_normalization_comes_from_the_mesh_settings_and_defaults_to_base() {
    use crate::http::path::{EscapedSlashes, PathNormalization};
    let build = |mesh: Option<pb::MeshSettings>| {
        let snapshot = pb::Snapshot {
            mesh,
            ..pb::Snapshot::default()
        };
        RuntimeConfig::build(
            snapshot,
            &EndpointRegistry::default(),
            None,
            Interner::global(),
        )
    };
    let paths = |mesh| build(Some(mesh)).unwrap().path_normalization();
    assert_eq!(
        build(None).unwrap().path_normalization(),
        PathNormalization::BASE
    );
    assert_eq!(
        paths(pb::MeshSettings {
            path_normalization: pb::PathNormalization::DecodeAndMergeSlashes as i32,
            ..Default::default()
        }),
        PathNormalization::DECODE_AND_MERGE_SLASHES
    );
    // An explicit action wins over the one the mode implies.
    assert_eq!(
        paths(pb::MeshSettings {
            path_normalization: pb::PathNormalization::DecodeAndMergeSlashes as i32,
            escaped_slashes: pb::EscapedSlashesAction::RejectRequest as i32,
            ..Default::default()
        }),
        PathNormalization {
            escaped_slashes: EscapedSlashes::Reject,
            ..PathNormalization::MERGE_SLASHES
        }
    );
    let err = build(Some(pb::MeshSettings {
        path_normalization: 9,
        ..Default::default()
    }))
    .unwrap_err();
    assert_eq!(err.to_string(), "mesh.path_normalization: unknown value 9");
}

#[test]
fn pool_durations_become_the_pool_settings_and_unset_ones_keep_the_defaults() {
    let ms = |ms| Some(std::time::Duration::from_millis(ms).into());
    let mut s = canary();
    s.clusters[0].connection_pool = Some(pb::ConnectionPool {
        connect_timeout: ms(250),
        tcp_idle_timeout: ms(3_600_000),
        http_idle_timeout: ms(90_000),
        ..Default::default()
    });
    s.clusters[1].connection_pool = Some(pb::ConnectionPool {
        max_connections: 3,
        ..Default::default()
    });
    let config =
        RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global()).unwrap();
    let pool = |name: &str| {
        let c = config.clusters().iter().find(|c| c.name() == name);
        c.expect("cluster").pool().clone()
    };
    let v1 = pool("v1|reviews");
    assert_eq!(v1.connect_timeout, std::time::Duration::from_millis(250));
    assert_eq!(v1.idle_timeout, std::time::Duration::from_secs(90));
    let v2 = pool("v2|reviews");
    assert_eq!(
        (v2.connect_timeout, v2.idle_timeout),
        (
            crate::upstream::PoolSettings::default().connect_timeout,
            crate::upstream::PoolSettings::default().idle_timeout
        )
    );
}

#[test]
fn bad_durations_are_refused_naming_the_field_not_panicked_on() {
    let bad = |seconds, nanos| Some(remora_proto::Duration { seconds, nanos });
    let refused = |s: pb::Snapshot| {
        RuntimeConfig::build(s, &EndpointRegistry::default(), None, Interner::global())
            .unwrap_err()
            .to_string()
    };
    let mut s = canary();
    s.virtual_hosts[0].routes[1].timeout = bad(-1, 0);
    assert_eq!(
        refused(s),
        "reviews.default.svc.cluster.local: route `split`: timeout: -1s is negative"
    );
    let mut s = canary();
    s.clusters[0].connection_pool = Some(pb::ConnectionPool {
        connect_timeout: bad(0, -5),
        ..Default::default()
    });
    assert_eq!(
        refused(s),
        "cluster v1|reviews: connectionPool.tcp.connectTimeout: -0.000000005s is negative"
    );
    let mut s = canary();
    s.clusters[1].outlier_detection = Some(pb::OutlierDetection {
        base_ejection_time: bad(i64::MAX, 0),
        ..Default::default()
    });
    assert_eq!(
        refused(s),
        "cluster v2|reviews: outlierDetection.baseEjectionTime: 9223372036854775807s is over \
         10000 years"
    );
}
