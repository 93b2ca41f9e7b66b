//! Cluster-level outlier ejection, picks and retry budget, on an injected
//! clock (`pick_endpoint_at`, `record_at`).

use std::collections::HashMap;

use http::StatusCode;
use remora_proto::pb;

use super::*;

const S500: Outcome = Outcome::Response(StatusCode::INTERNAL_SERVER_ERROR);
const S503: Outcome = Outcome::Response(StatusCode::SERVICE_UNAVAILABLE);

const BALANCERS: [pb::LoadBalancer; 3] = [
    pb::LoadBalancer::RoundRobin,
    pb::LoadBalancer::LeastRequest,
    pb::LoadBalancer::Random,
];

fn proto(n: usize, lb: pb::LoadBalancer, od: Option<pb::OutlierDetection>) -> pb::Cluster {
    pb::Cluster {
        name: "|reviews.default.svc.cluster.local".into(),
        service: "reviews.default.svc.cluster.local".into(),
        load_balancer: lb as i32,
        endpoints: (0..n)
            .map(|i| pb::Endpoint {
                address: format!("10.0.0.{}:9080", i + 1),
                ..Default::default()
            })
            .collect(),
        outlier_detection: od,
        ..Default::default()
    }
}

fn cluster(
    n: usize,
    lb: pb::LoadBalancer,
    od: Option<pb::OutlierDetection>,
    registry: &EndpointRegistry,
) -> Cluster {
    Cluster::from_proto(&proto(n, lb, od), registry, None).unwrap()
}

/// `outlierDetection: {}`: every field at Istio's default.
fn defaults() -> Option<pb::OutlierDetection> {
    Some(pb::OutlierDetection::default())
}

fn percents(max_ejection: u32, min_health: u32) -> Option<pb::OutlierDetection> {
    Some(pb::OutlierDetection {
        max_ejection_percent: max_ejection,
        min_health_percent: min_health,
        ..Default::default()
    })
}

/// Records five 5xx (the default threshold) on `e` at `now`; returns what
/// the last one did.
fn fail_five(c: &Cluster, e: &Arc<Endpoint>, now: Instant) -> Option<Duration> {
    for _ in 0..4 {
        assert_eq!(c.record_at(e, S500, now, Duration::ZERO), None);
    }
    c.record_at(e, S503, now, Duration::ZERO)
}

/// How often each endpoint (by address) is picked in `n` picks.
fn picks(c: &Cluster, avoid: &[Arc<Endpoint>], now: Instant, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let e = c.pick_endpoint_at(avoid, now).expect("an endpoint");
        *seen.entry(e.address().to_owned()).or_insert(0) += 1;
    }
    seen
}

fn count(seen: &HashMap<String, usize>, e: &Arc<Endpoint>) -> usize {
    seen.get(e.address()).copied().unwrap_or(0)
}

#[test]
fn a_single_host_is_ejected_at_the_default_ten_percent_and_still_picked_in_panic() {
    let registry = EndpointRegistry::default();
    let c = cluster(1, pb::LoadBalancer::LeastRequest, defaults(), &registry);
    let s = *c.outlier().unwrap();
    let e = Arc::clone(&c.endpoints()[0]);
    let t0 = Instant::now();
    let jitter = Duration::from_millis(300);
    for _ in 0..4 {
        assert_eq!(c.record_at(&e, S500, t0, jitter), None);
    }
    // The bad canary of one pod is ejected (Envoy would eject nothing).
    assert_eq!(
        c.record_at(&e, Outcome::ConnectFailure, t0, jitter),
        Some(Duration::from_secs(30) + jitter)
    );
    assert!(e.is_ejected(t0, &s));
    // No healthy host left: panic mode balances over all hosts, so
    // requests still go somewhere (Envoy's panic threshold).
    for _ in 0..10 {
        let picked = c
            .pick_endpoint_at(&[], t0 + Duration::from_secs(1))
            .unwrap();
        assert!(Arc::ptr_eq(picked, &e));
    }
    // Errors of requests that were in flight do not extend the ejection.
    assert_eq!(fail_five(&c, &e, t0 + Duration::from_secs(1)), None);
    let back = t0 + Duration::from_secs(30) + jitter;
    assert!(e.is_ejected(back - Duration::from_nanos(1), &s));
    assert!(!e.is_ejected(back, &s));
    // A second run of errors: twice as long.
    assert_eq!(fail_five(&c, &e, back), Some(Duration::from_secs(60)));
}

#[test]
fn an_ejected_host_is_never_picked_until_its_time_is_up() {
    for lb in BALANCERS {
        let registry = EndpointRegistry::default();
        let c = cluster(3, lb, defaults(), &registry);
        let eps = c.endpoints().to_vec();
        let t0 = Instant::now();
        assert_eq!(fail_five(&c, &eps[1], t0), Some(Duration::from_secs(30)));
        // The ejected host is the idlest: least request would prefer it.
        let _busy: Vec<_> = [&eps[0], &eps[2]]
            .iter()
            .flat_map(|e| (0..3).map(|_| e.start_request()))
            .collect();

        let during = picks(&c, &[], t0 + Duration::from_secs(29), 1000);
        assert_eq!(count(&during, &eps[1]), 0, "{lb:?}: {during:?}");
        assert!(count(&during, &eps[0]) > 0, "{lb:?}: {during:?}");
        assert!(count(&during, &eps[2]) > 0, "{lb:?}: {during:?}");
        assert_eq!(during.values().sum::<usize>(), 1000);

        let after = picks(&c, &[], t0 + Duration::from_secs(30), 1000);
        assert!(count(&after, &eps[1]) > 0, "{lb:?}: {after:?}");
        if lb == pb::LoadBalancer::RoundRobin {
            for e in &eps {
                assert!(count(&after, e).abs_diff(333) <= 1, "{after:?}");
            }
        }
    }
}

#[test]
fn max_ejection_percent_spares_a_second_host_of_three_at_ten_percent() {
    let registry = EndpointRegistry::default();
    let c = cluster(3, pb::LoadBalancer::RoundRobin, defaults(), &registry);
    let s = *c.outlier().unwrap();
    let eps = c.endpoints().to_vec();
    let t0 = Instant::now();
    assert_eq!(fail_five(&c, &eps[0], t0), Some(Duration::from_secs(30)));
    // 10% of 3 rounds down to 0, raised to 1: the second host is spared...
    assert_eq!(fail_five(&c, &eps[1], t0), None);
    assert!(!eps[1].is_ejected(t0, &s));
    // ...and counts a fresh run before it is considered again.
    assert_eq!(fail_five(&c, &eps[1], t0 + Duration::from_secs(1)), None);
    // Once the first is back, the second may go.
    let back = t0 + Duration::from_secs(30);
    assert_eq!(fail_five(&c, &eps[1], back), Some(Duration::from_secs(30)));
    assert!(!eps[0].is_ejected(back, &s));
    assert!(eps[1].is_ejected(back, &s));
}

#[test]
fn hosts_failing_at_once_on_many_threads_never_overshoot_max_ejection_percent() {
    // 20 hosts at 10%: at most 2 ejected. Every host is one failure short
    // of its threshold, then 20 threads each record the failure that
    // brings theirs over at the same moment. Without the decision being
    // one step, several threads count 0 or 1 others ejected and all eject.
    const HOSTS: usize = 20;
    for round in 0..1000 {
        let registry = EndpointRegistry::default();
        let c = cluster(HOSTS, pb::LoadBalancer::RoundRobin, defaults(), &registry);
        let s = *c.outlier().unwrap();
        let eps = c.endpoints().to_vec();
        let t0 = Instant::now();
        for e in &eps {
            for _ in 0..4 {
                assert_eq!(c.record_at(e, S500, t0, Duration::ZERO), None);
            }
        }
        let start = std::sync::Barrier::new(HOSTS);
        let ejected = std::thread::scope(|scope| {
            let threads: Vec<_> = eps
                .iter()
                .map(|e| {
                    let (c, start) = (&c, &start);
                    scope.spawn(move || {
                        start.wait();
                        c.record_at(e, S500, t0, Duration::ZERO).is_some()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&ejected| ejected)
                .count()
        });
        let now_out = eps.iter().filter(|e| e.is_ejected(t0, &s)).count();
        assert_eq!(ejected, 2, "round {round}: {ejected} ejections reported");
        assert_eq!(now_out, 2, "round {round}: {now_out} hosts ejected");
    }
}

#[test]
fn max_ejection_percent_100_ejects_every_failing_host_then_panics() {
    let registry = EndpointRegistry::default();
    let c = cluster(3, pb::LoadBalancer::RoundRobin, percents(100, 0), &registry);
    let s = *c.outlier().unwrap();
    let eps = c.endpoints().to_vec();
    let t0 = Instant::now();
    assert!(fail_five(&c, &eps[0], t0).is_some());
    assert!(fail_five(&c, &eps[1], t0).is_some());
    let seen = picks(&c, &[], t0, 100);
    assert_eq!(seen.get(eps[2].address()), Some(&100));
    assert!(fail_five(&c, &eps[2], t0).is_some());
    assert!(eps.iter().all(|e| e.is_ejected(t0, &s)));
    // Every host ejected: balance over all of them rather than fail.
    let seen = picks(&c, &[], t0, 300);
    for e in &eps {
        assert_eq!(count(&seen, e), 100, "{seen:?}");
    }
}

#[test]
fn avoid_prefers_a_healthy_host_not_yet_tried() {
    for lb in BALANCERS {
        let registry = EndpointRegistry::default();
        let c = cluster(3, lb, defaults(), &registry);
        let eps = c.endpoints().to_vec();
        let now = Instant::now();

        let seen = picks(&c, &eps[..1], now, 200);
        assert_eq!(count(&seen, &eps[0]), 0, "{lb:?}: {seen:?}");
        assert!(count(&seen, &eps[1]) > 0 && count(&seen, &eps[2]) > 0);
        let seen = picks(&c, &eps[..2], now, 100);
        assert_eq!(count(&seen, &eps[2]), 100, "{lb:?}: {seen:?}");
        // Every host tried: any of them rather than none.
        let seen = picks(&c, &eps, now, 300);
        assert_eq!(seen.len(), 3, "{lb:?}: {seen:?}");

        // eps[2] ejected, eps[0] tried: eps[1] is the one left.
        assert!(fail_five(&c, &eps[2], now).is_some());
        let seen = picks(&c, &eps[..1], now, 100);
        assert_eq!(count(&seen, &eps[1]), 100, "{lb:?}: {seen:?}");
        // Both healthy hosts tried: retry one of them, not the ejected one.
        let seen = picks(&c, &eps[..2], now, 100);
        assert_eq!(count(&seen, &eps[2]), 0, "{lb:?}: {seen:?}");
    }
}

#[test]
fn avoid_works_without_outlier_detection() {
    let registry = EndpointRegistry::default();
    let c = cluster(2, pb::LoadBalancer::RoundRobin, None, &registry);
    let eps = c.endpoints().to_vec();
    let seen = picks(&c, &eps[1..], Instant::now(), 50);
    assert_eq!(count(&seen, &eps[0]), 50);
}

#[test]
fn min_health_percent_panics_and_balances_over_the_ejected_host_too() {
    let registry = EndpointRegistry::default();
    let c = cluster(3, pb::LoadBalancer::RoundRobin, percents(0, 80), &registry);
    let eps = c.endpoints().to_vec();
    let t0 = Instant::now();
    assert!(fail_five(&c, &eps[0], t0).is_some());
    // 2 of 3 healthy is 66% < 80%: outlier detection steps aside.
    let seen = picks(&c, &[], t0, 300);
    for e in &eps {
        assert_eq!(count(&seen, e), 100, "{seen:?}");
    }

    // At 60% the two healthy hosts are enough: the ejected one is skipped.
    let registry = EndpointRegistry::default();
    let c = cluster(3, pb::LoadBalancer::RoundRobin, percents(0, 60), &registry);
    let eps = c.endpoints().to_vec();
    assert!(fail_five(&c, &eps[0], t0).is_some());
    let seen = picks(&c, &[], t0, 300);
    assert_eq!(count(&seen, &eps[0]), 0, "{seen:?}");
}

#[test]
fn without_outlier_detection_nothing_is_ejected() {
    let registry = EndpointRegistry::default();
    let c = cluster(2, pb::LoadBalancer::RoundRobin, None, &registry);
    assert!(c.outlier().is_none());
    let eps = c.endpoints().to_vec();
    let now = Instant::now();
    for _ in 0..100 {
        assert_eq!(c.record_at(&eps[0], S503, now, Duration::ZERO), None);
    }
    let seen = picks(&c, &[], now, 100);
    assert_eq!(count(&seen, &eps[0]), 50);
}

#[test]
fn an_ejection_is_shared_by_clusters_and_config_versions_listing_the_host() {
    let registry = EndpointRegistry::default();
    let all = cluster(3, pb::LoadBalancer::RoundRobin, defaults(), &registry);
    let mut v1 = proto(2, pb::LoadBalancer::RoundRobin, defaults());
    v1.name = "v1|reviews.default.svc.cluster.local".into();
    v1.subset = "v1".into();
    let subset = Cluster::from_proto(&v1, &registry, None).unwrap();
    let t0 = Instant::now();
    let bad = Arc::clone(&all.endpoints()[0]);
    assert!(Arc::ptr_eq(&bad, &subset.endpoints()[0]));
    assert!(fail_five(&all, &bad, t0).is_some());
    let seen = picks(&subset, &[], t0, 100);
    assert_eq!(count(&seen, &bad), 0, "{seen:?}");
    // A new config version reuses the endpoint, ejection included.
    let next = cluster(3, pb::LoadBalancer::RoundRobin, defaults(), &registry);
    let seen = picks(&next, &[], t0, 100);
    assert_eq!(count(&seen, &bad), 0, "{seen:?}");
}

#[test]
fn a_percent_above_100_is_a_config_error() {
    let c = proto(1, pb::LoadBalancer::RoundRobin, percents(101, 0));
    let err = Cluster::from_proto(&c, &EndpointRegistry::default(), None).unwrap_err();
    assert!(matches!(err, ConfigError::Policy { .. }), "{err}");
    assert!(err.to_string().contains("maxEjectionPercent"), "{err}");
}

fn with_max_retries(max_retries: Option<u32>) -> Cluster {
    let mut c = proto(1, pb::LoadBalancer::RoundRobin, None);
    c.connection_pool = max_retries.map(|max_retries| pb::ConnectionPool {
        max_retries,
        ..Default::default()
    });
    Cluster::from_proto(&c, &EndpointRegistry::default(), None).unwrap()
}

#[test]
fn try_start_retry_honours_max_retries_and_gives_back_on_drop() {
    let c = with_max_retries(Some(2));
    let first = c.try_start_retry().expect("first retry");
    let second = c.try_start_retry().expect("second retry");
    assert!(c.try_start_retry().is_none());
    drop(first);
    let third = c.try_start_retry().expect("a retry given back");
    assert!(c.try_start_retry().is_none());
    drop(second);
    drop(third);
    let guards: Vec<_> = (0..2).map(|_| c.try_start_retry().unwrap()).collect();
    assert!(c.try_start_retry().is_none());
    drop(guards);
    assert!(c.try_start_retry().is_some());
}

#[test]
fn max_retries_zero_or_unset_is_unlimited() {
    for c in [with_max_retries(Some(0)), with_max_retries(None)] {
        let guards: Vec<_> = (0..10_000).map(|_| c.try_start_retry()).collect();
        assert!(guards.iter().all(Option::is_some));
    }
}

/// Two endpoints: the first mTLS (with `spiffe_id`), the second plaintext.
fn mixed(spiffe_id: &str) -> pb::Cluster {
    let mut c = proto(2, pb::LoadBalancer::RoundRobin, None);
    c.endpoints[0].mtls = true;
    c.endpoints[0].spiffe_id = spiffe_id.to_owned();
    c
}

#[test]
fn only_mtls_endpoints_are_dialled_with_mtls() {
    let c = Cluster::from_proto(
        &mixed("spiffe://cluster.local/ns/default/sa/reviews"),
        &EndpointRegistry::default(),
        None,
    )
    .unwrap();
    let [tls, plain] = c.endpoints() else {
        panic!("two endpoints");
    };
    // Without an identity the client side is there, and says so.
    assert!(matches!(
        c.transport(tls),
        Transport::Mtls(MtlsClient::NoIdentity)
    ));
    assert!(matches!(c.transport(plain), Transport::Plaintext));
    let plaintext_only = cluster(
        2,
        pb::LoadBalancer::RoundRobin,
        None,
        &EndpointRegistry::default(),
    );
    assert!(matches!(
        plaintext_only.transport(&plaintext_only.endpoints()[0]),
        Transport::Plaintext
    ));
}

#[test]
fn an_mtls_endpoint_needs_a_valid_spiffe_id() {
    for (spiffe_id, expected) in [
        ("", "mtls is set but spiffe_id is empty"),
        ("https://reviews", "spiffe_id: "),
    ] {
        let err =
            Cluster::from_proto(&mixed(spiffe_id), &EndpointRegistry::default(), None).unwrap_err();
        assert!(matches!(err, ConfigError::EndpointIdentity { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "cluster |reviews.default.svc.cluster.local: endpoint 10.0.0.1:9080: "
            ) && text.contains(expected),
            "{text}"
        );
    }
}

#[test]
fn without_outlier_detection_consecutive_connect_failures_eject_one_host() {
    let registry = EndpointRegistry::default();
    let c = cluster(3, pb::LoadBalancer::RoundRobin, None, &registry);
    assert!(c.outlier().is_none());
    let s = *c.ejection();
    assert_eq!(s, OutlierSettings::FAILURE_ACCRUAL);
    let (a, b) = (Arc::clone(&c.endpoints()[0]), Arc::clone(&c.endpoints()[1]));
    let t0 = Instant::now();
    // 5xx answers never eject without the block, however many.
    for _ in 0..50 {
        assert_eq!(c.record_at(&a, S503, t0, Duration::ZERO), None);
    }
    // An answer in between starts the count again.
    for _ in 0..4 {
        assert_eq!(
            c.record_at(&a, Outcome::ConnectFailure, t0, Duration::ZERO),
            None
        );
    }
    assert_eq!(c.record_at(&a, S503, t0, Duration::ZERO), None);
    for _ in 0..4 {
        assert_eq!(
            c.record_at(&a, Outcome::ConnectFailure, t0, Duration::ZERO),
            None
        );
    }
    assert_eq!(
        c.record_at(&a, Outcome::ConnectFailure, t0, Duration::ZERO),
        Some(Duration::from_secs(5)),
        "the fifth connect failure in a row ejects for 5 s"
    );
    assert!(a.is_ejected(t0, &s));
    assert_eq!(
        count(&picks(&c, &[], t0, 30), &a),
        0,
        "ejected: never picked"
    );
    // One host of three may be ejected (10%, but always one): not two.
    for _ in 0..5 {
        assert_eq!(
            c.record_at(&b, Outcome::ConnectFailure, t0, Duration::ZERO),
            None
        );
    }
    assert!(!b.is_ejected(t0, &s));
    // Back after the ejection time.
    let later = t0 + Duration::from_secs(5);
    assert!(!a.is_ejected(later, &s));
    assert!(count(&picks(&c, &[], later, 30), &a) > 0);
}
