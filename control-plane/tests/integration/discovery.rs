//! The discovery service over a real gRPC connection: registration,
//! pushes on change, only to the proxies a change affects,
//! deregistration when a stream ends, and the proxy status and metrics
//! that ACKs and NACKs leave.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use remora_control_plane::admission::AdmissionPolicy;
use remora_control_plane::config::parse_str;
use remora_control_plane::discovery::{self, DiscoveryService};
use remora_control_plane::mesh::Mesh;
use remora_control_plane::metrics::Metrics;
use remora_control_plane::publish::Debounce;
use remora_control_plane::status::{ProxyStatus, ProxyTracker, SyncStatus};
use remora_proto::pb;
use remora_proto::pb::discovery_client::DiscoveryClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CANARY: &str = "
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

const WAIT: Duration = Duration::from_secs(5);

struct Proxy {
    requests: mpsc::Sender<pb::DiscoveryRequest>,
    snapshots: tonic::Streaming<pb::Snapshot>,
}

impl Proxy {
    async fn connect(addr: std::net::SocketAddr, node: pb::Node) -> Proxy {
        Self::reconnect(addr, node, "").await
    }

    /// Connects saying it already serves `version_info` (empty: no config).
    async fn reconnect(addr: std::net::SocketAddr, node: pb::Node, version_info: &str) -> Proxy {
        let mut client = DiscoveryClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (requests, rx) = mpsc::channel(4);
        requests
            .send(pb::DiscoveryRequest {
                node: Some(node),
                version_info: version_info.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let snapshots = client
            .stream(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        Proxy {
            requests,
            snapshots,
        }
    }

    /// The next snapshot, ACKed.
    async fn next(&mut self) -> pb::Snapshot {
        let s = tokio::time::timeout(WAIT, self.snapshots.message())
            .await
            .expect("no snapshot within 5 s")
            .expect("stream failed")
            .expect("stream ended");
        self.requests
            .send(pb::DiscoveryRequest {
                version_info: s.version.clone(),
                response_nonce: s.nonce.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        s
    }
}

fn node(service: &str, version: &str, inbound: &str) -> pb::Node {
    pb::Node {
        id: format!("{service}-{version}"),
        service: service.into(),
        namespace: "default".into(),
        labels: [("version".to_owned(), version.to_owned())].into(),
        service_account: service.into(),
        inbound_address: inbound.into(),
        protocol: remora_proto::PROTOCOL,
        ..Default::default()
    }
}

fn endpoints(s: &pb::Snapshot, cluster: &str) -> Vec<String> {
    s.clusters
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| c.endpoints.iter().map(|e| e.address.clone()).collect())
        .unwrap_or_default()
}

const V1: &str = "v1|reviews.default.svc.cluster.local";
const V2: &str = "v2|reviews.default.svc.cluster.local";

#[tokio::test]
async fn registry_changes_reach_exactly_the_affected_proxies() {
    let mesh = Arc::new(Mesh::new());
    let outcome = parse_str(Path::new("canary.yaml"), CANARY);
    assert!(!outcome.has_errors(), "{:?}", outcome.diagnostics);
    mesh.set_config(outcome.resources);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(discovery::serve(listener, Arc::clone(&mesh), async {
        let _ = stopped.await;
    }));

    // A client-only proxy sees the routes before any endpoint exists.
    let mut client = Proxy::connect(addr, node("productpage", "v1", "")).await;
    let first = client.next().await;
    assert!(!first.version.is_empty());
    assert!(endpoints(&first, V1).is_empty());

    // A v1 workload registers: the client hears of it.
    let mut v1 = Proxy::connect(addr, node("reviews", "v1", "127.0.0.1:1001")).await;
    v1.next().await;
    let second = client.next().await;
    assert_eq!(endpoints(&second, V1), ["127.0.0.1:1001"]);
    assert_ne!(first.version, second.version);

    // Another client-only workload connects: nobody's view changes, so the
    // client's next snapshot is the one caused by the v2 workload below.
    let mut other = Proxy::connect(addr, node("details", "v1", "")).await;
    other.next().await;
    let mut v2 = Proxy::connect(addr, node("reviews", "v2", "127.0.0.1:1002")).await;
    v2.next().await;
    let third = client.next().await;
    assert_eq!(endpoints(&third, V2), ["127.0.0.1:1002"]);
    assert_eq!(endpoints(&third, V1), ["127.0.0.1:1001"]);

    // The v1 workload's stream ends: it leaves the registry.
    drop(v1);
    let fourth = client.next().await;
    assert!(endpoints(&fourth, V1).is_empty());
    assert_eq!(endpoints(&fourth, V2), ["127.0.0.1:1002"]);

    // A config change reaches everyone whose view it changes.
    let outcome = parse_str(Path::new("canary.yaml"), &CANARY.replace("90", "50"));
    mesh.set_config(outcome.resources);
    let fifth = client.next().await;
    let weights: Vec<u32> = fifth.virtual_hosts[0].routes[0]
        .destinations
        .iter()
        .map(|d| d.weight)
        .collect();
    assert_eq!(weights, [50, 10]);

    let _ = stop.send(());
    drop((client, other, v2));
    tokio::time::timeout(WAIT, server)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_first_request_without_a_node_is_refused_with_a_reason() {
    let mesh = Arc::new(Mesh::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(discovery::serve(listener, mesh, std::future::pending()));
    let mut client = DiscoveryClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::DiscoveryRequest::default()).await.unwrap();
    let err = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect_err("must be refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("node"), "{}", err.message());
}

#[tokio::test]
async fn after_a_restart_proxies_with_a_config_keep_it_until_the_registry_refills() {
    let mesh = Arc::new(Mesh::with_warmup(Duration::from_millis(1500)));
    let warm_until = mesh.warm_until();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(discovery::serve(listener, mesh, std::future::pending()));

    // A sidecar reconnecting with the version it serves: registered at once
    // (others can route to it) but pushed nothing before the warm-up ends.
    let mut reconnecting = Proxy::reconnect(
        addr,
        node("reviews", "v1", "127.0.0.1:1001"),
        "0123456789abcdef",
    )
    .await;

    // A new proxy (no config yet) is served at once, and already sees the
    // reconnected sidecar.
    let mut fresh = Proxy::connect(addr, node("productpage", "v1", "")).await;
    let snapshot = fresh.next().await;
    assert_eq!(
        endpoints(&snapshot, "|reviews.default.svc.cluster.local"),
        ["127.0.0.1:1001"]
    );

    let held = reconnecting.next().await;
    assert!(
        tokio::time::Instant::now() >= warm_until,
        "a reconnecting proxy was pushed during the warm-up"
    );
    assert!(!held.version.is_empty());
}

/// Polls `tracker` until `done` holds for its list, for up to [`WAIT`].
async fn wait_status(
    tracker: &ProxyTracker,
    what: &str,
    done: impl Fn(&[ProxyStatus]) -> bool,
) -> Vec<ProxyStatus> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = tracker.list(tokio::time::Instant::now());
        if done(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}; last status: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn acks_and_nacks_show_in_the_proxy_status_and_the_metrics() {
    let mesh = Arc::new(Mesh::new());
    let metrics = Metrics::new();
    let tracker = ProxyTracker::new(metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(discovery::serve_service(
        listener,
        // Plaintext: development mode, as `discovery::serve`.
        DiscoveryService::with_tracker(mesh, tracker.clone()).with_admission(AdmissionPolicy {
            allow_plaintext: true,
            ..AdmissionPolicy::default()
        }),
        std::future::pending(),
    ));

    let mut client = Proxy::connect(addr, node("productpage", "v1", "")).await;
    let applied = client.next().await;
    let list = wait_status(&tracker, "productpage SYNCED", |l| {
        l.len() == 1 && l[0].status == SyncStatus::Synced
    })
    .await;
    assert_eq!(list[0].id, "productpage-v1");
    assert_eq!(
        list[0].version_acked.as_deref(),
        Some(applied.version.as_str())
    );

    // A sidecar registers; the client is pushed a new snapshot and NACKs it.
    let mut sidecar = Proxy::connect(addr, node("reviews", "v1", "127.0.0.1:1001")).await;
    sidecar.next().await;
    let rejected = tokio::time::timeout(WAIT, client.snapshots.message())
        .await
        .expect("no snapshot within 5 s")
        .unwrap()
        .unwrap();
    client
        .requests
        .send(pb::DiscoveryRequest {
            version_info: applied.version.clone(),
            response_nonce: rejected.nonce.clone(),
            // Long (within the request bound): kept cut to the detail bound.
            error_detail: format!("vh/r0: invalid regex {}", "x".repeat(50_000)),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = wait_status(&tracker, "productpage NACKED, reviews SYNCED", |l| {
        l.len() == 2 && l[0].status == SyncStatus::Nacked && l[1].status == SyncStatus::Synced
    })
    .await;
    let nacked = &list[0];
    assert_eq!(
        nacked.version_sent.as_deref(),
        Some(rejected.version.as_str())
    );
    assert_eq!(
        nacked.version_acked.as_deref(),
        Some(applied.version.as_str()),
        "a NACK keeps the applied version"
    );
    let kept = nacked
        .last_nack_error
        .as_deref()
        .expect("the NACK's detail");
    assert!(kept.starts_with("vh/r0: invalid regex xxx"), "{kept:.40}");
    assert!(
        kept.len() <= remora_proto::MAX_NACK_DETAIL_BYTES && kept.ends_with("bytes cut)"),
        "{} bytes kept, ending {:?}",
        kept.len(),
        &kept[kept.len().saturating_sub(40)..]
    );
    assert_eq!(list[1].id, "reviews-v1");

    let text = metrics.encode();
    for line in [
        "remora_connected_proxies 2\n",
        "remora_nacks_total 1\n",
        "remora_pushes_total{result=\"nack\"} 1\n",
        "remora_pushes_total{result=\"ack\"} 2\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }

    drop((client, sidecar));
    wait_status(&tracker, "both forgotten", <[ProxyStatus]>::is_empty).await;
    assert!(metrics.encode().contains("remora_connected_proxies 0\n"));
}

/// The value of a metric without labels.
fn metric(metrics: &Metrics, name: &str) -> u64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// A discovery server on a free port with its own metrics, debouncing
/// bursts with `quiet` (10 s at most).
async fn server_with_debounce(mesh: Arc<Mesh>, quiet: Duration) -> (std::net::SocketAddr, Metrics) {
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = DiscoveryService::with_tracker(mesh, ProxyTracker::new(metrics.clone()))
        .with_admission(AdmissionPolicy {
            allow_plaintext: true,
            ..AdmissionPolicy::default()
        })
        .with_debounce(Debounce {
            quiet,
            max: Duration::from_secs(10),
        });
    tokio::spawn(discovery::serve_service(
        listener,
        service,
        std::future::pending(),
    ));
    (addr, metrics)
}

fn canary(weight_v1: u32) -> Vec<remora_control_plane::config::model::Resource> {
    let yaml = CANARY.replace("weight: 90", &format!("weight: {weight_v1}"));
    let outcome = parse_str(Path::new("canary.yaml"), &yaml);
    assert!(!outcome.has_errors(), "{:?}", outcome.diagnostics);
    outcome.resources
}

/// Proxies of one view (namespace and labels) get one snapshot, built once
/// for all of them per change, byte for byte the same; a change reaches all.
#[tokio::test]
async fn proxies_of_one_view_share_one_snapshot_built_once() {
    let mesh = Arc::new(Mesh::new());
    mesh.set_config(canary(90));
    let (addr, metrics) = server_with_debounce(Arc::clone(&mesh), Duration::from_millis(50)).await;
    // Client-only: their registrations change nobody's snapshot.
    let mut proxies = Vec::new();
    for i in 0..3 {
        let mut p = Proxy::connect(addr, node("productpage", "v1", "")).await;
        let mut first = p.next().await;
        first.nonce.clear();
        proxies.push((p, i, first));
    }
    let first = &proxies[0].2;
    for (_, i, s) in &proxies {
        assert_eq!(s.encode_to_vec(), first.encode_to_vec(), "proxy {i}");
    }

    let (translations, built) = (
        metric(&metrics, "remora_translations_total"),
        metric(&metrics, "remora_view_snapshots_built_total"),
    );
    mesh.set_config(canary(70));
    let mut after = Vec::new();
    for (p, _, _) in &mut proxies {
        let mut s = p.next().await;
        s.nonce.clear();
        assert_eq!(s.virtual_hosts[0].routes[0].destinations[0].weight, 70);
        after.push(s.encode_to_vec());
    }
    assert!(after.iter().all(|b| *b == after[0]));
    assert_eq!(
        metric(&metrics, "remora_translations_total") - translations,
        1,
        "one translation for the change"
    );
    assert_eq!(
        metric(&metrics, "remora_view_snapshots_built_total") - built,
        1,
        "one snapshot for the three proxies of the view"
    );
    assert_eq!(metric(&metrics, "remora_views"), 1);
}

/// A burst of changes within the quiet period is translated once, and the
/// proxies get its end state in one snapshot.
#[tokio::test]
async fn a_burst_of_changes_is_translated_once() {
    let mesh = Arc::new(Mesh::new());
    mesh.set_config(canary(90));
    // A quiet period far longer than the burst takes, even on a loaded machine.
    let (addr, metrics) = server_with_debounce(Arc::clone(&mesh), Duration::from_secs(2)).await;
    let mut proxy = Proxy::connect(addr, node("productpage", "v1", "")).await;
    proxy.next().await;
    let translations = metric(&metrics, "remora_translations_total");
    for weight in 11..=30 {
        mesh.set_config(canary(weight));
    }
    let s = proxy.next().await;
    assert_eq!(s.virtual_hosts[0].routes[0].destinations[0].weight, 30);
    assert_eq!(
        metric(&metrics, "remora_translations_total") - translations,
        1,
        "twenty changes, one translation"
    );
}

/// A proxy that takes incremental snapshots: a registration sends it the
/// endpoint lists that changed and nothing else, a route change sends the
/// routes without any endpoint list, and each applied to what it runs
/// gives the complete snapshot of that version.
#[tokio::test]
async fn a_registration_sends_endpoints_and_a_route_change_sends_routes() {
    let mesh = Arc::new(Mesh::new());
    mesh.set_config(canary(90));
    let (addr, _) = server_with_debounce(Arc::clone(&mesh), Duration::from_millis(50)).await;
    let incremental = |n: pb::Node| pb::Node {
        accepts_incremental: true,
        ..n
    };
    // The service is known (a first workload adds its default cluster: a routes change).
    let mut v2 = Proxy::connect(addr, node("reviews", "v2", "127.0.0.1:1002")).await;
    v2.next().await;
    let mut client = Proxy::connect(addr, incremental(node("productpage", "v1", ""))).await;
    let first = client.next().await;
    assert!(
        first.base_version.is_empty(),
        "the first snapshot is complete"
    );
    assert_eq!(endpoints(&first, V2), ["127.0.0.1:1002"]);

    // A registration: two endpoint lists (the service's and its subset's), no routes.
    let mut v1 = Proxy::connect(addr, node("reviews", "v1", "127.0.0.1:1001")).await;
    v1.next().await;
    let update = client.next().await;
    assert_eq!(update.base_version, first.version);
    assert!(!update.routes_included);
    assert!(update.virtual_hosts.is_empty() && update.clusters.is_empty());
    let lists: Vec<&str> = update
        .endpoints
        .iter()
        .map(|l| l.cluster.as_str())
        .collect();
    // In cluster order: by name, byte-wise (`v` before `|`).
    assert_eq!(lists, [V1, "|reviews.default.svc.cluster.local"]);
    let second = remora_proto::incremental::apply(&first, update.clone()).expect("applies");
    assert_eq!(endpoints(&second, V1), ["127.0.0.1:1001"]);
    assert!(
        update.encoded_len() * 2 < second.encoded_len(),
        "smaller than the whole"
    );

    // A route change: the routes and clusters, not one endpoint list.
    mesh.set_config(canary(50));
    let update = client.next().await;
    assert_eq!(update.base_version, second.version);
    assert!(update.routes_included);
    assert!(update.endpoints.is_empty(), "{:?}", update.endpoints);
    assert!(update.clusters.iter().all(|c| c.endpoints.is_empty()));
    let third = remora_proto::incremental::apply(&second, update).expect("applies");
    assert_eq!(third.virtual_hosts[0].routes[0].destinations[0].weight, 50);
    assert_eq!(endpoints(&third, V1), ["127.0.0.1:1001"], "endpoints kept");
    assert_eq!(endpoints(&third, V2), ["127.0.0.1:1002"], "endpoints kept");
    drop((v1, v2));
}

/// A proxy that takes incremental snapshots per resource: a route change
/// sends the one virtual host it changed, no other host and no cluster; a
/// VirtualService and DestinationRule changed together (a route to a new
/// subset) send the host with the new cluster and its endpoints in one push.
#[tokio::test]
async fn a_route_change_sends_only_its_virtual_host_to_a_per_resource_proxy() {
    let mesh = Arc::new(Mesh::new());
    mesh.set_config(canary(90));
    let (addr, _) = server_with_debounce(Arc::clone(&mesh), Duration::from_millis(50)).await;
    let mut v2 = Proxy::connect(addr, node("reviews", "v2", "127.0.0.1:1002")).await;
    v2.next().await;
    let mut ratings = Proxy::connect(addr, node("ratings", "v1", "127.0.0.1:1003")).await;
    ratings.next().await;
    let mut client = Proxy::connect(
        addr,
        pb::Node {
            accepts_incremental: true,
            accepts_resource_increments: true,
            ..node("productpage", "v1", "")
        },
    )
    .await;
    let first = client.next().await;
    let hosts = |s: &pb::Snapshot| -> Vec<String> {
        s.virtual_hosts.iter().map(|h| h.name.clone()).collect()
    };
    assert_eq!(
        hosts(&first),
        [
            "ratings.default.svc.cluster.local",
            "reviews.default.svc.cluster.local"
        ]
    );

    mesh.set_config(canary(50));
    let update = client.next().await;
    assert_eq!(update.base_version, first.version);
    assert!(!update.routes_included);
    assert_eq!(hosts(&update), ["reviews.default.svc.cluster.local"]);
    assert!(update.clusters.is_empty() && update.endpoints.is_empty());
    let second = remora_proto::incremental::apply(&first, update).expect("applies");
    assert_eq!(second.virtual_hosts[1].routes[0].destinations[0].weight, 50);
    assert_eq!(second.virtual_hosts[0], first.virtual_hosts[0], "kept");
    assert_eq!(endpoints(&second, V2), ["127.0.0.1:1002"], "endpoints kept");

    // A third subset, and the route to it, in one change of both resources.
    let yaml = CANARY
        .replace(
            "weight: 10",
            "weight: 5\n    - destination: {host: reviews, subset: v3}\n      weight: 5",
        )
        .replace(
            "  - {name: v2, labels: {version: v2}}",
            "  - {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v2}}",
        );
    let outcome = parse_str(Path::new("canary.yaml"), &yaml);
    assert!(!outcome.has_errors(), "{:?}", outcome.diagnostics);
    mesh.set_config(outcome.resources);
    let update = client.next().await;
    assert_eq!(update.base_version, second.version);
    assert_eq!(hosts(&update), ["reviews.default.svc.cluster.local"]);
    let v3 = "v3|reviews.default.svc.cluster.local";
    let clusters: Vec<&str> = update.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters, [v3]);
    let lists: Vec<&str> = update
        .endpoints
        .iter()
        .map(|l| l.cluster.as_str())
        .collect();
    assert_eq!(lists, [v3]);
    let third = remora_proto::incremental::apply(&second, update).expect("applies");
    assert_eq!(endpoints(&third, v3), ["127.0.0.1:1002"]);
    drop((v2, ratings));
}

/// A proxy that NACKs an incremental snapshot keeps what it runs; the
/// control plane then sends the complete snapshot of that version.
#[tokio::test]
async fn a_nacked_incremental_snapshot_is_followed_by_the_complete_one() {
    let mesh = Arc::new(Mesh::new());
    mesh.set_config(canary(90));
    let (addr, metrics) = server_with_debounce(Arc::clone(&mesh), Duration::from_millis(50)).await;
    let mut v2 = Proxy::connect(addr, node("reviews", "v2", "127.0.0.1:1002")).await;
    v2.next().await;
    let mut client = Proxy::connect(
        addr,
        pb::Node {
            accepts_incremental: true,
            ..node("productpage", "v1", "")
        },
    )
    .await;
    let first = client.next().await;
    let mut v1 = Proxy::connect(addr, node("reviews", "v1", "127.0.0.1:1001")).await;
    v1.next().await;

    let update = tokio::time::timeout(WAIT, client.snapshots.message())
        .await
        .expect("a snapshot")
        .unwrap()
        .unwrap();
    assert_eq!(update.base_version, first.version);
    client
        .requests
        .send(pb::DiscoveryRequest {
            version_info: first.version.clone(),
            response_nonce: update.nonce.clone(),
            error_detail: "cannot apply".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let complete = client.next().await;
    assert!(complete.base_version.is_empty(), "complete after a NACK");
    assert_eq!(complete.version, update.version);
    assert_eq!(endpoints(&complete, V1), ["127.0.0.1:1001"]);
    assert_eq!(metric(&metrics, "remora_connected_proxies"), 3);
    drop((v1, v2));
}

/// The discovery server decodes requests itself (`discovery/wire.rs`): a
/// proxy that sends a request over the bound, or garbage that is no
/// DiscoveryRequest, loses its own stream with a status, while another
/// proxy's stream keeps getting config changes.
#[tokio::test]
async fn an_oversized_or_garbled_request_ends_only_its_own_stream() {
    let mesh = Arc::new(Mesh::new());
    mesh.set_config(parse_str(Path::new("canary.yaml"), CANARY).resources);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(discovery::serve(
        listener,
        Arc::clone(&mesh),
        std::future::pending(),
    ));

    let mut healthy = Proxy::connect(addr, node("productpage", "v1", "")).await;
    healthy.next().await;

    // A NACK whose detail is one byte over the bound.
    let mut big = Proxy::connect(addr, node("details", "v1", "")).await;
    let first = tokio::time::timeout(WAIT, big.snapshots.message())
        .await
        .expect("a first snapshot")
        .expect("stream")
        .expect("a message");
    big.requests
        .send(pb::DiscoveryRequest {
            response_nonce: first.nonce,
            error_detail: "x".repeat(remora_proto::MAX_REQUEST_BYTES + 1),
            ..Default::default()
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(WAIT, big.snapshots.message())
        .await
        .expect("the oversized stream must end within 5 s");
    let status = ended.expect_err("an oversized request ends its stream with a status");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");

    // Raw HTTP/2 with a gRPC frame that is no DiscoveryRequest.
    let garbled = tokio::spawn(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/remora.discovery.v1.Discovery/Stream");
        let garbage = tokio_stream::once(bytes::Bytes::from_static(&[0xff; 64]));
        client
            .streaming::<_, bytes::Bytes, bytes::Bytes, _>(
                tonic::Request::new(garbage),
                path,
                RawCodec,
            )
            .await
    });
    let answer = tokio::time::timeout(WAIT, garbled)
        .await
        .expect("garbage is answered within 5 s")
        .unwrap();
    let status = answer.expect_err("garbage is refused");
    assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");

    // The healthy proxy still gets a config change.
    mesh.set_config(parse_str(Path::new("canary.yaml"), &CANARY.replace("90", "50")).resources);
    let after = healthy.next().await;
    let weights: Vec<u32> = after.virtual_hosts[0].routes[0]
        .destinations
        .iter()
        .map(|d| d.weight)
        .collect();
    assert_eq!(weights, [50, 10]);
}

/// Sends and receives raw bytes as gRPC messages.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
