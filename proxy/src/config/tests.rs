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
        inbound: None,
        mesh: None,
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
    let config = RuntimeConfig::build(canary(), &EndpointRegistry::default(), None).unwrap();
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
    let config = RuntimeConfig::build(s, &EndpointRegistry::default(), None).unwrap();
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
    let err = RuntimeConfig::build(s, &EndpointRegistry::default(), None).unwrap_err();
    assert!(
        err.to_string().contains("unknown cluster `v3|reviews`"),
        "{err}"
    );

    let mut s = canary();
    for d in &mut s.virtual_hosts[0].routes[1].destinations {
        d.weight = 0;
    }
    let err = RuntimeConfig::build(s, &EndpointRegistry::default(), None).unwrap_err();
    assert!(matches!(err, ConfigError::NoWeight { .. }), "{err}");

    let mut s = canary();
    s.virtual_hosts[0].routes[0].matches[0].uri = Some(pb::StringMatch {
        kind: Some(Kind::Regex("[".into())),
    });
    let err = RuntimeConfig::build(s, &EndpointRegistry::default(), None).unwrap_err();
    assert!(err.to_string().contains("invalid regex"), "{err}");
}

#[test]
fn bad_address_and_duplicate_domain_are_rejected() {
    let mut s = canary();
    s.clusters[0].endpoints[0].address = "no-port".into();
    assert!(matches!(
        RuntimeConfig::build(s, &EndpointRegistry::default(), None),
        Err(ConfigError::BadAddress { .. })
    ));

    let mut s = canary();
    let mut twin = s.virtual_hosts[0].clone();
    twin.name = "other".into();
    s.virtual_hosts.push(twin);
    assert!(matches!(
        RuntimeConfig::build(s, &EndpointRegistry::default(), None),
        Err(ConfigError::DuplicateDomain { .. })
    ));
}

#[test]
fn endpoint_state_survives_a_new_config() {
    let registry = EndpointRegistry::default();
    let first = RuntimeConfig::build(canary(), &registry, None).unwrap();
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
    let second = RuntimeConfig::build(canary(), &registry, None).unwrap();
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
        RuntimeConfig::build(snapshot, &EndpointRegistry::default(), None)
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
