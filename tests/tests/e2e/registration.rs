//! Registration, end to end (issue 15, D1 and D2): who may register as a
//! service and with what. Each test reproduces an attack on a running mesh
//! (real control plane, real proxies with certificates from its CA) and
//! checks that the attacker is refused at its own stream, gets no traffic,
//! and spoils nobody's config.

use std::time::Duration;

use remora_e2e::mesh::endpoints_in;
use remora_e2e::secure::{self, Tokens, with_identity};
use remora_e2e::{DemoApp, EVENT_TIMEOUT, Mesh, Protocol, Proxy, ProxySpec, yaml};
use remora_proto::pb;
use remora_proto::pb::discovery_client::DiscoveryClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const REVIEWS: &str = "|reviews.default.svc.cluster.local";
const SETTLE: Duration = Duration::from_secs(15);

const STRICT_MESH_WIDE: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
";

/// The honest mesh: `reviews` v1 (demo app + sidecar with identity
/// `reviews`) and a client `productpage` (identity `productpage`).
struct Honest {
    mesh: Mesh,
    tokens: Tokens,
    _app: DemoApp,
    reviews: Proxy,
    client: Proxy,
}

impl Honest {
    async fn start(mesh: Mesh) -> Self {
        let tokens = Tokens::new();
        let app = DemoApp::start("reviews", "v1").await;
        let reviews = secure::sidecar(&mesh, &tokens, "reviews", &app).await;
        let client = secure::client(&mesh, &tokens, "productpage").await;
        client.wait_endpoints(REVIEWS, 1, SETTLE).await;
        Self {
            mesh,
            tokens,
            _app: app,
            reviews,
            client,
        }
    }

    /// Sends `n` requests for `reviews` through the client's sidecar and
    /// returns the versions that answered (`x-remora-demo-version`).
    async fn versions(&self, n: usize) -> Vec<String> {
        let mut http = self.client.client(Protocol::Http1);
        let mut out = Vec::new();
        for _ in 0..n {
            let reply = http
                .get("reviews", "/", &[("authorization", "Bearer secret")])
                .await
                .expect("request through the mesh");
            assert_eq!(reply.status, 200, "{}", reply.body);
            out.push(reply.body.trim().to_owned());
        }
        out
    }
}

/// An attacker's sidecar for `reviews` in front of an app answering `evil`.
async fn attacker(mesh: &Mesh, spec: impl FnOnce(ProxySpec) -> ProxySpec) -> (DemoApp, Proxy) {
    let app = DemoApp::start("reviews", "evil").await;
    let spec = spec(ProxySpec::sidecar("reviews", "v1", app.addr));
    let proxy = Proxy::start(&spec, &mesh.control_plane.url()).await;
    (app, proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tokenless_proxy_registering_as_reviews_is_refused_and_gets_no_traffic() {
    let mut honest =
        Honest::start(Mesh::start_secure(&[("pa.yaml", STRICT_MESH_WIDE)]).await).await;
    let (_app, mut evil) = attacker(&honest.mesh, |spec| spec).await;

    let refused = evil.process.wait_event("refused", EVENT_TIMEOUT).await;
    println!("tokenless reviews: {refused}");
    assert_eq!(refused["code"], "Unauthenticated", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--allow-plaintext-discovery")),
        "{refused}"
    );
    // The control plane says whom it refused (its line may be read after
    // the proxy's: wait for it).
    honest
        .mesh
        .control_plane
        .process
        .wait_for(0, EVENT_TIMEOUT, "the control plane's `refused`", |e| {
            e.name() == "refused"
        })
        .await;
    assert!(
        evil.process
            .events_since(0)
            .iter()
            .all(|e| e.name() != "ready"),
        "the attacker got a config"
    );

    let versions = honest.versions(20).await;
    assert!(
        versions.iter().all(|v| v == "v1"),
        "the attacker answered: {versions:?}"
    );
    let dump = honest.client.config_dump().await.expect("config_dump");
    assert_eq!(endpoints_in(&dump, REVIEWS).len(), 1, "{dump}");
}

#[tokio::test(flavor = "multi_thread")]
async fn productpages_identity_registering_as_reviews_is_refused() {
    let honest = Honest::start(Mesh::start_secure(&[]).await).await;
    // A real token, for another service account, with the CA certificate:
    // the proxy gets its certificate and connects over mTLS.
    let (_app, mut evil) = attacker(&honest.mesh, |spec| {
        with_identity(spec, &honest.mesh, &honest.tokens, "productpage")
    })
    .await;
    let refused = evil.process.wait_event("refused", EVENT_TIMEOUT).await;
    println!("productpage as reviews: {refused}");
    assert_eq!(refused["code"], "PermissionDenied", "{refused}");
    assert!(
        refused["reason"].as_str().is_some_and(|r| r.contains(
            "spiffe://cluster.local/ns/default/sa/productpage may not serve reviews.default: \
             its service accounts are [reviews]"
        )),
        "{refused}"
    );
    let versions = honest.versions(20).await;
    assert!(
        versions.iter().all(|v| v == "v1"),
        "the attacker answered: {versions:?}"
    );
    // The one endpoint the client expects is the proven `reviews`.
    let dump = honest.client.config_dump().await.expect("config_dump");
    let ids: Vec<String> = dump["snapshot"]["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == REVIEWS)
        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["spiffe_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["spiffe://cluster.local/ns/default/sa/reviews"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_discovery_in_development_never_sends_plaintext_to_a_strict_endpoint() {
    // With --allow-plaintext-discovery a tokenless `reviews` registers, but
    // its endpoint cannot do mTLS: under STRICT it is left out.
    let honest = Honest::start(Mesh::start(&[("pa.yaml", STRICT_MESH_WIDE)]).await).await;
    let (_app, mut evil) = attacker(&honest.mesh, |spec| spec).await;
    evil.wait_ready().await;
    let versions = honest.versions(20).await;
    assert!(
        versions.iter().all(|v| v == "v1"),
        "plaintext reached a STRICT endpoint: {versions:?}"
    );
    let dump = honest.client.config_dump().await.expect("config_dump");
    assert_eq!(endpoints_in(&dump, REVIEWS).len(), 1, "{dump}");
}

/// Opens a raw discovery stream over plaintext and returns the status the
/// control plane answers `node` with (or `Ok` if it sent a snapshot).
async fn register_raw(url: &str, node: pb::Node) -> Result<(), tonic::Status> {
    let mut client = DiscoveryClient::connect(url.to_owned())
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::DiscoveryRequest {
        node: Some(node),
        ..Default::default()
    })
    .await
    .expect("hello");
    let mut stream = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    tokio::time::timeout(EVENT_TIMEOUT, stream.message())
        .await
        .expect("an answer")?;
    Ok(())
}

fn poisoned(id: &str, change: impl FnOnce(&mut pb::Node)) -> pb::Node {
    let mut node = pb::Node {
        id: id.to_owned(),
        service: "reviews".to_owned(),
        namespace: "default".to_owned(),
        labels: [("version".to_owned(), "v1".to_owned())].into(),
        service_account: "reviews".to_owned(),
        inbound_address: "127.0.0.1:9".to_owned(),
        mtls: true,
        app_port: 9080,
        app_health: None,
        accepts_incremental: false,
        accepts_resource_increments: false,
        protocol: remora_proto::PROTOCOL,
    };
    change(&mut node);
    node
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poisoned_registration_next_to_a_healthy_mesh_freezes_nothing() {
    // Development mode, so that the attacker's plaintext claims are read at
    // all (in production they are refused before anything else).
    let honest = Honest::start(
        Mesh::start(&[
            ("dr.yaml", &yaml::reviews_destination_rule(&["v1", "v2"])),
            ("vs.yaml", &yaml::reviews_canary(100, 0)),
        ])
        .await,
    )
    .await;
    let url = honest.mesh.control_plane.url();
    let attacks = [
        poisoned("a1", |n| n.inbound_address = "0.0.0.0:0".into()),
        poisoned("a2", |n| n.service_account = "a/../../b?c#d".into()),
        poisoned("a3", |n| n.namespace = "n s".into()),
        poisoned("a4", |n| n.service = "reviews.default".into()),
        poisoned("a5", |n| {
            n.labels.insert("bad key".into(), "x".into());
        }),
        poisoned("a6", |n| n.app_port = 1 << 20),
        poisoned("a7", |n| n.inbound_address = "10.9.9.9:15006".into()),
        // A proxy from before the protocol had revisions.
        poisoned("a8", |n| n.protocol = 0),
    ];
    for node in attacks {
        let id = node.id.clone();
        let status = register_raw(&url, node)
            .await
            .expect_err("a poisoned registration is refused");
        println!("{id}: {:?}: {}", status.code(), status.message());
        assert!(
            matches!(
                status.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::PermissionDenied
                    | tonic::Code::FailedPrecondition
            ),
            "{id}: {status:?}"
        );
        assert!(status.message().contains("node."), "{id}: {status:?}");
    }

    // A new proxy still gets ready, and a config change reaches everyone.
    let app2 = DemoApp::start("reviews", "v2").await;
    let v2 = honest
        .mesh
        .proxy(&with_identity(
            ProxySpec::sidecar("reviews", "v2", app2.addr),
            &honest.mesh,
            &honest.tokens,
            "reviews",
        ))
        .await;
    honest
        .mesh
        .write_file("vs.yaml", &yaml::reviews_canary(0, 100));
    for proxy in [&honest.client, &honest.reviews, &v2] {
        proxy
            .wait_config("the canary at v2 100%", SETTLE, |d| {
                default_route_v2_weight(d) == Some(100)
            })
            .await;
    }
    let versions = honest.versions(5).await;
    assert!(versions.iter().all(|v| v == "v2"), "{versions:?}");
    for proxy in [&honest.client, &honest.reviews, &v2] {
        assert!(
            proxy
                .process
                .events_since(0)
                .iter()
                .all(|e| e.name() != "rejected"),
            "{}: a snapshot was NACKed",
            proxy.process.name()
        );
    }
}

/// The weight of `v2` in the last (catch-all) route of `reviews`, as a
/// proxy's `/config_dump` shows it.
fn default_route_v2_weight(dump: &serde_json::Value) -> Option<u64> {
    let host = dump["snapshot"]["virtual_hosts"]
        .as_array()?
        .iter()
        .find(|vh| vh["name"] == "reviews.default.svc.cluster.local")?;
    let route = host["routes"].as_array()?.last()?;
    route["destinations"]
        .as_array()?
        .iter()
        .find(|d| d["cluster"] == "v2|reviews.default.svc.cluster.local")
        .map(|d| d["weight"].as_u64().unwrap_or(0))
}
