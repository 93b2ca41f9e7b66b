//! Durations off the wire: each field's zero read its way, and what no proxy
//! can apply (negative, malformed, over 10,000 years) refused with an error
//! naming the field, the text a proxy NACKs with.

use std::time::Duration;

use http::Request;
use remora_proto::pb;

use super::*;

const CLUSTER: &str = "|reviews.default.svc.cluster.local";

fn wire(seconds: i64, nanos: i32) -> Option<remora_proto::Duration> {
    Some(remora_proto::Duration { seconds, nanos })
}

/// A snapshot that sets every duration field.
fn snapshot() -> pb::Snapshot {
    pb::Snapshot {
        virtual_hosts: vec![pb::VirtualHost {
            name: "reviews".into(),
            domains: vec!["reviews".into()],
            routes: vec![pb::Route {
                name: "reviews/http[0]".into(),
                destinations: vec![pb::WeightedCluster {
                    cluster: CLUSTER.into(),
                    weight: 1,
                }],
                timeout: wire(2, 0),
                retry: Some(pb::RetryPolicy {
                    attempts: 2,
                    per_try_timeout: wire(0, 500_000_000),
                    ..Default::default()
                }),
                fault: Some(pb::Fault {
                    delay: Some(pb::FaultDelay {
                        fixed_delay: wire(0, 100_000_000),
                        percentage: Some(50.0),
                    }),
                    abort: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        clusters: vec![pb::Cluster {
            name: CLUSTER.into(),
            service: "reviews.default.svc.cluster.local".into(),
            connection_pool: Some(pb::ConnectionPool {
                connect_timeout: wire(0, 250_000_000),
                tcp_idle_timeout: wire(3600, 0),
                http_idle_timeout: wire(90, 0),
                ..Default::default()
            }),
            outlier_detection: Some(pb::OutlierDetection {
                interval: wire(5, 0),
                base_ejection_time: wire(60, 0),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn compile(s: &pb::Snapshot) -> Result<CompiledSnapshot<ClusterSpec>, ConfigError> {
    CompiledSnapshot::compile(s, Ok)
}

fn route(s: &pb::Snapshot) -> &pb::Route {
    &s.virtual_hosts[0].routes[0]
}

type Field = fn(&mut pb::Snapshot) -> &mut Option<remora_proto::Duration>;

/// Each duration field, with the name its errors carry.
fn fields() -> [(&'static str, Field); 8] {
    fn route(s: &mut pb::Snapshot) -> &mut pb::Route {
        &mut s.virtual_hosts[0].routes[0]
    }
    fn pool(s: &mut pb::Snapshot) -> &mut pb::ConnectionPool {
        s.clusters[0].connection_pool.as_mut().expect("set")
    }
    fn outlier(s: &mut pb::Snapshot) -> &mut pb::OutlierDetection {
        s.clusters[0].outlier_detection.as_mut().expect("set")
    }
    [
        ("route `reviews/http[0]`: timeout", |s| {
            &mut route(s).timeout
        }),
        ("route `reviews/http[0]`: retries.perTryTimeout", |s| {
            &mut route(s).retry.as_mut().expect("set").per_try_timeout
        }),
        ("route `reviews/http[0]`: fault.delay.fixedDelay", |s| {
            let fault = route(s).fault.as_mut().expect("set");
            &mut fault.delay.as_mut().expect("set").fixed_delay
        }),
        ("connectionPool.tcp.connectTimeout", |s| {
            &mut pool(s).connect_timeout
        }),
        ("connectionPool.tcp.idleTimeout", |s| {
            &mut pool(s).tcp_idle_timeout
        }),
        ("connectionPool.http.idleTimeout", |s| {
            &mut pool(s).http_idle_timeout
        }),
        ("outlierDetection.interval", |s| &mut outlier(s).interval),
        ("outlierDetection.baseEjectionTime", |s| {
            &mut outlier(s).base_ejection_time
        }),
    ]
}

fn error_with(field: Field, value: Option<remora_proto::Duration>) -> String {
    let mut s = snapshot();
    *field(&mut s) = value;
    match compile(&s) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_duration_field_reaches_the_compiled_snapshot() {
    let s = snapshot();
    let compiled = compile(&s).expect("valid");
    let vhost = compiled.routes.virtual_host("reviews").expect("vhost");
    let req = Request::get("http://reviews/").body(()).expect("request");
    let r = vhost.route(&req.into_parts().0).expect("route");
    assert_eq!(r.timeout(), Some(Duration::from_secs(2)));
    assert_eq!(r.retry().per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(r.fault().delay(0), Some(Duration::from_millis(100)));
    let c = &compiled.clusters[0];
    let pool = c.connection_pool.expect("pool");
    assert_eq!(pool.connect_timeout, Some(Duration::from_millis(250)));
    assert_eq!(pool.tcp_idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(pool.http_idle_timeout, Some(Duration::from_secs(90)));
    let outlier = c.outlier.expect("outlier");
    assert_eq!(outlier.interval, Duration::from_secs(5));
    assert_eq!(outlier.base_ejection_time, Duration::from_secs(60));
    assert_eq!(route(&s).name, "reviews/http[0]");
}

#[test]
fn negative_durations_are_refused_naming_the_field() {
    for (name, field) in fields() {
        for value in [wire(-1, 0), wire(0, -1), wire(i64::MIN, 0)] {
            let err = error_with(field, value);
            assert!(err.contains(&format!("{name}: ")), "{name}: {err}");
            assert!(err.ends_with("is negative"), "{name}: {err}");
        }
    }
}

#[test]
fn malformed_or_huge_durations_are_refused_naming_the_field() {
    for (name, field) in fields() {
        for (value, why) in [
            (wire(0, 1_000_000_000), "nanos out of range"),
            (wire(0, i32::MIN), "nanos out of range"),
            (wire(1, -1), "nanos out of range"),
            (wire(i64::MAX, 0), "is over 10000 years"),
            (wire(315_576_000_001, 0), "is over 10000 years"),
        ] {
            let err = error_with(field, value);
            assert!(err.contains(&format!("{name}: ")), "{name}: {err}");
            assert!(err.contains(why), "{name}: {err}");
        }
    }
}

#[test]
fn zero_means_none_for_timeouts_is_refused_where_envoy_needs_more_and_delays_by_nothing() {
    let [timeout, per_try, delay, pool @ .., interval, ejection] = fields();
    let mut s = snapshot();
    for (_, field) in [timeout, per_try, delay] {
        *field(&mut s) = wire(0, 0);
    }
    let compiled = compile(&s).expect("valid");
    let vhost = compiled.routes.virtual_host("reviews").expect("vhost");
    let req = Request::get("http://reviews/").body(()).expect("request");
    let r = vhost.route(&req.into_parts().0).expect("route");
    assert_eq!(r.timeout(), None);
    assert_eq!(r.retry().per_try_timeout, None);
    assert_eq!(r.fault().delay(0), Some(Duration::ZERO));
    for (name, field) in pool.into_iter().chain([interval, ejection]) {
        let err = error_with(field, wire(0, 0));
        assert!(
            err.ends_with(&format!("{name}: must be above zero")),
            "{err}"
        );
    }
}

#[test]
fn absent_durations_take_the_defaults_but_a_delay_needs_one() {
    let [timeout, per_try, delay, pool @ .., interval, ejection] = fields();
    for (name, field) in [timeout, per_try]
        .into_iter()
        .chain(pool)
        .chain([interval, ejection])
    {
        assert_eq!(error_with(field, None), "", "{name}");
    }
    assert_eq!(
        error_with(delay.1, None),
        "reviews: route `reviews/http[0]`: fault.delay.fixedDelay: missing"
    );
    let mut s = snapshot();
    *fields()[6].1(&mut s) = None;
    *fields()[7].1(&mut s) = None;
    let outlier = compile(&s).expect("valid").clusters[0]
        .outlier
        .expect("set");
    assert_eq!(outlier.interval, Duration::from_secs(10));
    assert_eq!(outlier.base_ejection_time, Duration::from_secs(30));
}
