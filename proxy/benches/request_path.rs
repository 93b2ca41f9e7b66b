//! Micro-benchmarks of the request path's pure parts, through the proxy
//! crate's public API only: route matching over 100 and 10,000 routes (and
//! the virtual-host lookup among as many hosts), the weighted pick of a
//! destination, the endpoint pick with hosts ejected, and trace header
//! propagation.
//!
//! `cargo bench -p remora-proxy --bench request_path`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use remora_proto::pb;
use remora_proxy::config::RuntimeConfig;
use remora_proxy::telemetry::Interner;
use remora_proxy::telemetry::trace::{RequestInfo, SamplingRatio, TraceConfig, Tracer};
use remora_proxy::upstream::{EndpointRegistry, Outcome};
use remora_route::WeightedSchedule;

/// The service every route sends to.
const CLUSTER: &str = "|svc.default.svc.cluster.local";

fn prefix(p: &str) -> Option<pb::StringMatch> {
    Some(pb::StringMatch {
        kind: Some(pb::string_match::Kind::Prefix(p.to_owned())),
    })
}

fn cluster(endpoints: usize, outlier: bool) -> pb::Cluster {
    pb::Cluster {
        name: CLUSTER.to_owned(),
        service: "svc.default.svc.cluster.local".to_owned(),
        endpoints: (0..endpoints)
            .map(|i| pb::Endpoint {
                address: format!("10.0.0.{}:8080", i + 1),
                ..Default::default()
            })
            .collect(),
        outlier_detection: outlier.then(|| pb::OutlierDetection {
            consecutive_5xx_errors: Some(5),
            base_ejection_time: Some(Duration::from_secs(30).into()),
            max_ejection_percent: 50,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One virtual host with `n` routes, route `i` matching the path prefix
/// `/r{i}/` and a header, the way a large VirtualService looks.
fn many_routes(n: usize) -> RuntimeConfig {
    let routes = (0..n)
        .map(|i| pb::Route {
            name: format!("r{i}"),
            matches: vec![pb::RouteMatch {
                uri: prefix(&format!("/r{i}/")),
                headers: vec![pb::KeyMatch {
                    name: "x-tenant".to_owned(),
                    value: prefix("t"),
                }],
                ..Default::default()
            }],
            destinations: vec![pb::WeightedCluster {
                cluster: CLUSTER.to_owned(),
                weight: 100,
            }],
            ..Default::default()
        })
        .collect();
    let snapshot = pb::Snapshot {
        version: "bench".to_owned(),
        virtual_hosts: vec![pb::VirtualHost {
            name: "svc.default.svc.cluster.local".to_owned(),
            domains: vec!["svc".to_owned()],
            routes,
            ..Default::default()
        }],
        clusters: vec![cluster(3, false)],
        ..Default::default()
    };
    RuntimeConfig::build(
        snapshot,
        &EndpointRegistry::default(),
        None,
        Interner::global(),
    )
    .expect("valid bench config")
}

/// `n` virtual hosts of one catch-all route each.
fn many_hosts(n: usize) -> RuntimeConfig {
    let snapshot = pb::Snapshot {
        version: "bench".to_owned(),
        virtual_hosts: (0..n)
            .map(|i| pb::VirtualHost {
                name: format!("svc{i}.default.svc.cluster.local"),
                domains: vec![
                    format!("svc{i}"),
                    format!("svc{i}.default.svc.cluster.local"),
                ],
                routes: vec![pb::Route {
                    name: "default".to_owned(),
                    destinations: vec![pb::WeightedCluster {
                        cluster: CLUSTER.to_owned(),
                        weight: 100,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        clusters: vec![cluster(3, false)],
        ..Default::default()
    };
    RuntimeConfig::build(
        snapshot,
        &EndpointRegistry::default(),
        None,
        Interner::global(),
    )
    .expect("valid bench config")
}

fn request_parts(path: &str) -> http::request::Parts {
    Request::get(path)
        .header("host", "svc")
        .header("x-tenant", "tenant-a")
        .header("user-agent", "bench")
        .body(())
        .expect("valid request")
        .into_parts()
        .0
}

fn route_matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [100usize, 10_000] {
        let config = many_routes(n);
        let vh = config.virtual_host("svc").expect("the virtual host");
        let first = request_parts("/r0/item");
        let last = request_parts(&format!("/r{}/item", n - 1));
        let miss = request_parts("/nowhere");
        g.bench_with_input(BenchmarkId::new("first_of", n), &first, |b, req| {
            b.iter(|| vh.route(black_box(req)).map(|r| r.name().len()))
        });
        g.bench_with_input(BenchmarkId::new("last_of", n), &last, |b, req| {
            b.iter(|| vh.route(black_box(req)).map(|r| r.name().len()))
        });
        g.bench_with_input(BenchmarkId::new("none_of", n), &miss, |b, req| {
            b.iter(|| vh.route(black_box(req)).is_some())
        });
        let hosts = many_hosts(n);
        let name = format!("svc{}", n / 2);
        g.bench_with_input(
            BenchmarkId::new("host_lookup_among", n),
            &name,
            |b, name| b.iter(|| hosts.virtual_host(black_box(name)).is_some()),
        );
    }
    g.finish();
}

fn weighted_pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("weighted_pick");
    for weights in [vec![90u32, 10], vec![10; 10]] {
        let schedule = WeightedSchedule::new(&weights).expect("weights above 0");
        g.bench_function(BenchmarkId::new("destinations", weights.len()), |b| {
            b.iter(|| black_box(schedule.pick()))
        });
    }
    g.finish();
}

fn endpoint_pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("endpoint_pick");
    for ejected in [0usize, 3] {
        let snapshot = pb::Snapshot {
            version: "bench".to_owned(),
            clusters: vec![cluster(10, true)],
            ..Default::default()
        };
        let config = RuntimeConfig::build(
            snapshot,
            &EndpointRegistry::default(),
            None,
            Interner::global(),
        )
        .expect("valid config");
        let cl = &config.clusters()[0];
        let now = Instant::now();
        for e in cl.endpoints().iter().take(ejected) {
            for _ in 0..5 {
                cl.record_at(
                    e,
                    Outcome::Response(StatusCode::BAD_GATEWAY),
                    now,
                    Duration::ZERO,
                );
            }
        }
        let ejected_now = cl
            .endpoints()
            .iter()
            .filter(|e| cl.outlier().is_some_and(|s| e.is_ejected(now, s)))
            .count();
        assert_eq!(ejected_now, ejected, "the bench ejects what it says");
        g.bench_function(BenchmarkId::new("of_10_with_ejected", ejected), |b| {
            b.iter(|| {
                cl.pick_endpoint_at(&[], black_box(now))
                    .map(|e| e.address().len())
            })
        });
        let failed = [cl.endpoints()[ejected].clone()];
        g.bench_function(
            BenchmarkId::new("retry_avoiding_one_with_ejected", ejected),
            |b| {
                b.iter(|| {
                    cl.pick_endpoint_at(black_box(&failed), now)
                        .map(|e| e.address().len())
                })
            },
        );
    }
    g.finish();
}

fn incoming_headers(kind: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("user-agent", HeaderValue::from_static("bench"));
    h.insert(
        "x-request-id",
        HeaderValue::from_static("5d0a3f2c-6c1e-4c38-9d47-1b2a3c4d5e6f"),
    );
    match kind {
        "w3c" => {
            h.insert(
                "traceparent",
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
        }
        "b3_single" => {
            h.insert(
                "b3",
                HeaderValue::from_static("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            );
        }
        "b3_multi" => {
            h.insert(
                "x-b3-traceid",
                HeaderValue::from_static("80f198ee56343ba864fe8b2a57d3eff7"),
            );
            h.insert("x-b3-spanid", HeaderValue::from_static("e457b5a2e4d86bd1"));
            h.insert("x-b3-sampled", HeaderValue::from_static("1"));
        }
        _ => {}
    }
    h
}

fn header_propagation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mut on = TraceConfig::disabled("bench");
    // A collector that is never reached: spans are queued and dropped, off
    // the request path, as in production when the collector is away.
    on.endpoint = Some("http://127.0.0.1:9".to_owned());
    on.sampling = SamplingRatio::ISTIO_DEFAULT;
    let tracers = [
        ("off", Tracer::disabled()),
        ("sampled_1pct", Tracer::new(on).expect("tracer")),
    ];
    let method = Method::GET;
    let uri: Uri = "/reviews/1".parse().expect("uri");
    let mut g = c.benchmark_group("trace_headers");
    for (name, tracer) in &tracers {
        for kind in ["none", "w3c", "b3_single", "b3_multi"] {
            let headers = incoming_headers(kind);
            g.bench_function(BenchmarkId::new(*name, kind), |b| {
                b.iter_batched_ref(
                    || headers.clone(),
                    |h| {
                        let info = RequestInfo::new(&method, &uri);
                        let span = tracer.start_client(h, &info);
                        drop(black_box(span));
                    },
                    criterion::BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    route_matching,
    weighted_pick,
    endpoint_pick,
    header_propagation
);
criterion_main!(benches);
