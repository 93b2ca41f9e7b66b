//! The security side of discovery over a real gRPC stream: the trust
//! domain and root namespace given to the service shape every snapshot's
//! inbound policy and the endpoints' mTLS and SPIFFE IDs, and a policy
//! change is pushed to the proxies whose view it changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use remora_certs::TrustDomain;
use remora_control_plane::config::model::Resource;
use remora_control_plane::config::parse_str;
use remora_control_plane::discovery::{DiscoveryService, serve_service};
use remora_control_plane::mesh::Mesh;
use remora_control_plane::translate::MeshSettings;
use remora_proto::pb;
use remora_proto::pb::discovery_client::DiscoveryClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(5);

/// Mesh-wide STRICT in the root namespace `mesh-root`, and an ALLOW policy
/// for `reviews` from there.
const POLICIES: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: mesh-root}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-readers, namespace: mesh-root}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from:
    - source: {principals: [example.org/ns/default/sa/productpage]}
    to:
    - operation: {methods: [GET]}
";

/// `reviews` in `default` turns mTLS off.
const DISABLE_DEFAULT: &str = "
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: DISABLE}
";

fn resources(yaml: &str) -> Vec<Resource> {
    let outcome = parse_str(Path::new("security.yaml"), yaml);
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    outcome.resources
}

struct Proxy {
    requests: mpsc::Sender<pb::DiscoveryRequest>,
    snapshots: tonic::Streaming<pb::Snapshot>,
}

impl Proxy {
    async fn connect(addr: std::net::SocketAddr, node: pb::Node) -> Proxy {
        let mut client = DiscoveryClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (requests, rx) = mpsc::channel(4);
        requests
            .send(pb::DiscoveryRequest {
                node: Some(node),
                ..Default::default()
            })
            .await
            .expect("send hello");
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
            .expect("send ack");
        s
    }

    /// ACKs snapshots until `done` holds for one; bounded by `WAIT` each.
    async fn until(&mut self, done: impl Fn(&pb::Snapshot) -> bool) -> pb::Snapshot {
        for _ in 0..10 {
            let s = self.next().await;
            if done(&s) {
                return s;
            }
        }
        panic!("no matching snapshot in 10 pushes");
    }
}

fn node(service: &str, app: &str, inbound: &str, mtls: bool) -> pb::Node {
    pb::Node {
        id: format!("{service}-1"),
        service: service.into(),
        namespace: "default".into(),
        labels: [("app".to_owned(), app.to_owned())].into(),
        service_account: service.into(),
        inbound_address: inbound.into(),
        mtls,
        app_port: 9080,
    }
}

/// `(mtls, spiffe_id)` of the endpoints of `reviews`' default cluster.
fn reviews_tls(s: &pb::Snapshot) -> Vec<(bool, String)> {
    s.clusters
        .iter()
        .find(|c| c.name == "|reviews.default.svc.cluster.local")
        .map(|c| {
            c.endpoints
                .iter()
                .map(|e| (e.mtls, e.spiffe_id.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn settings_shape_inbound_policy_and_endpoint_identity() {
    let mesh = Arc::new(Mesh::new());
    mesh.set_config(resources(POLICIES));
    let settings = MeshSettings {
        trust_domain: TrustDomain::new("example.org").expect("trust domain"),
        root_namespace: "mesh-root".into(),
        ..MeshSettings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = DiscoveryService::new(Arc::clone(&mesh)).with_settings(settings);
    let server = tokio::spawn(serve_service(listener, service, async {
        let _ = stopped.await;
    }));

    let mut reviews =
        Proxy::connect(addr, node("reviews", "reviews", "127.0.0.1:1001", true)).await;
    let own = reviews.next().await;
    let inbound = own.inbound.expect("inbound policy");
    assert_eq!(inbound.trust_domain, "example.org");
    assert_eq!(inbound.mtls, i32::from(pb::MtlsMode::Strict));
    let allow: Vec<_> = inbound.allow.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(allow, ["mesh-root/reviews-readers"]);

    let mut client = Proxy::connect(addr, node("productpage", "productpage", "", true)).await;
    let first = client.until(|s| !reviews_tls(s).is_empty()).await;
    assert_eq!(
        reviews_tls(&first),
        [(
            true,
            "spiffe://example.org/ns/default/sa/reviews".to_owned()
        )]
    );
    // The client is not selected by the ALLOW policy.
    let client_inbound = first.inbound.expect("inbound policy");
    assert!(client_inbound.allow.is_empty());
    assert_eq!(client_inbound.mtls, i32::from(pb::MtlsMode::Strict));

    // `default` turns mTLS off: the client is told to reach reviews in plaintext.
    mesh.set_config(resources(&format!("{POLICIES}---{DISABLE_DEFAULT}")));
    let second = client
        .until(|s| reviews_tls(s).iter().any(|(mtls, _)| !mtls))
        .await;
    assert_eq!(reviews_tls(&second), [(false, String::new())]);
    assert_eq!(
        second.inbound.expect("inbound policy").mtls,
        i32::from(pb::MtlsMode::Disable)
    );

    let _ = stop.send(());
    drop((client, reviews));
    tokio::time::timeout(WAIT, server)
        .await
        .expect("server did not stop")
        .expect("server task")
        .expect("server");
}
