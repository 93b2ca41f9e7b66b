//! The security side of discovery over a real gRPC stream on the TLS port,
//! each proxy proving its identity with a client certificate: the trust
//! domain and root namespace given to the service shape every snapshot's
//! inbound policy and the endpoints' mTLS and SPIFFE IDs, and a policy
//! change is pushed to the proxies whose view it changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use remora_certs::{AllowedPeers, Ca, MeshTls, SpiffeId, TrustBundle, TrustDomain, WorkloadKey};
use remora_control_plane::config::model::Resource;
use remora_control_plane::config::parse_str;
use remora_control_plane::discovery::DiscoveryService;
use remora_control_plane::grpc;
use remora_control_plane::identity::IdentityArgs;
use remora_control_plane::mesh::Mesh;
use remora_control_plane::metrics::Metrics;
use remora_control_plane::translate::MeshSettings;
use remora_proto::pb;
use remora_proto::pb::discovery_client::DiscoveryClient;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

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

/// The control plane's ports in process, as `remora serve` runs them, with its CA for
/// `example.org` in a temporary data directory.
struct ControlPlane {
    tls: std::net::SocketAddr,
    data_dir: tempfile::TempDir,
}

impl ControlPlane {
    async fn start(
        mesh: Arc<Mesh>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let args = IdentityArgs {
            data_dir: data_dir.path().to_owned(),
            trust_domain: example_org(),
            cert_lifetime: Duration::from_secs(3600),
            grpc_tls_addr: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let requested = "127.0.0.1:0".parse().expect("addr");
        let identity = args.start(requested, Metrics::new()).await.expect("start");
        let tls = identity.tls_port.local_addr().expect("addr");
        let settings = MeshSettings {
            trust_domain: example_org(),
            root_namespace: "mesh-root".into(),
            ..MeshSettings::default()
        };
        let service = DiscoveryService::new(mesh).with_settings(settings);
        let server = tokio::spawn(async move {
            grpc::serve(
                listener,
                identity.tls_port,
                service,
                identity.service,
                shutdown,
            )
            .await
            .expect("serve");
        });
        (Self { tls, data_dir }, server)
    }

    /// mTLS as `default/<service_account>`, with a certificate from the control plane's CA.
    fn client_config(&self, service_account: &str) -> Arc<ClientConfig> {
        self.client_config_in(&example_org(), service_account)
    }

    /// mTLS as `spiffe://<trust_domain>/ns/default/sa/<service_account>`, signed with the
    /// control plane's CA key whatever the trust domain.
    fn client_config_in(
        &self,
        trust_domain: &TrustDomain,
        service_account: &str,
    ) -> Arc<ClientConfig> {
        let ca = Ca::load_or_create(self.data_dir.path(), trust_domain.clone()).expect("ca");
        let id = SpiffeId::workload(trust_domain, "default", service_account).expect("id");
        let key = WorkloadKey::generate().expect("key");
        let signed = ca
            .sign_csr(
                key.csr(&id).expect("csr").as_bytes(),
                &id,
                Duration::from_secs(3600),
            )
            .expect("signed");
        let mesh = MeshTls::new(TrustBundle::from_pem(&ca.trust_bundle_pem()).expect("bundle"));
        mesh.svid()
            .store(key.certify(&signed.cert_chain_pem()).expect("svid"));
        let control_plane =
            SpiffeId::parse("spiffe://example.org/ns/remora-system/sa/remora").expect("id");
        mesh.client_config(AllowedPeers::ids([control_plane]))
            .expect("config")
    }
}

fn example_org() -> TrustDomain {
    TrustDomain::new("example.org").expect("trust domain")
}

impl Proxy {
    /// Opens `node`'s discovery stream on the TLS port, proving `node.service_account`.
    async fn connect(cp: &ControlPlane, node: pb::Node) -> Proxy {
        let config = cp.client_config(&node.service_account);
        Self::try_connect(cp, config, node)
            .await
            .unwrap_or_else(|status| panic!("stream: {status:?}"))
    }

    /// Opens `node`'s discovery stream on the TLS port with `config`.
    async fn try_connect(
        cp: &ControlPlane,
        config: Arc<ClientConfig>,
        node: pb::Node,
    ) -> Result<Proxy, tonic::Status> {
        let connector = TlsConnector::from(config);
        let addr = cp.tls;
        let channel = Endpoint::from_static("http://control-plane.invalid")
            .connect_with_connector(tower::service_fn(move |_| {
                let connector = connector.clone();
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    let tls = connector
                        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                        .await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect over TLS: {e:?}")))?;
        let mut client = DiscoveryClient::new(channel);
        let (requests, rx) = mpsc::channel(4);
        requests
            .send(pb::DiscoveryRequest {
                node: Some(node),
                ..Default::default()
            })
            .await
            .expect("send hello");
        let snapshots = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Proxy {
            requests,
            snapshots,
        })
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
        app_health: None,
        accepts_incremental: false,
        accepts_resource_increments: false,
        protocol: remora_proto::PROTOCOL,
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (cp, server) = ControlPlane::start(Arc::clone(&mesh), async {
        let _ = stopped.await;
    })
    .await;

    let mut reviews = Proxy::connect(&cp, node("reviews", "reviews", "127.0.0.1:1001", true)).await;
    let own = reviews.next().await;
    let inbound = own.inbound.expect("inbound policy");
    assert_eq!(inbound.trust_domain, "example.org");
    assert_eq!(inbound.mtls, i32::from(pb::MtlsMode::Strict));
    let allow: Vec<_> = inbound.allow.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(allow, ["mesh-root/reviews-readers"]);

    let mut client = Proxy::connect(&cp, node("productpage", "productpage", "", true)).await;
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
        .expect("server task");
}

#[tokio::test]
async fn the_tls_port_refuses_a_certificate_of_another_trust_domain_from_the_same_ca() {
    // Issue 15, D8: `spiffe://evil.example/ns/default/sa/reviews`, signed with the mesh CA's
    // own key. The chain is good; the trust domain is not ours.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (cp, server) = ControlPlane::start(Arc::new(Mesh::new()), async {
        let _ = stopped.await;
    })
    .await;
    let evil = TrustDomain::new("evil.example").expect("td");
    let config = cp.client_config_in(&evil, "reviews");
    let result = Proxy::try_connect(&cp, config, node("reviews", "reviews", "", true)).await;
    match result {
        Err(status) => println!("evil.example at the TLS port: {status:?}"),
        Ok(mut proxy) => {
            // TLS 1.3: the client's handshake ends before the server's check; the refusal
            // then ends the stream before any snapshot.
            let next = tokio::time::timeout(WAIT, proxy.snapshots.message())
                .await
                .expect("an answer");
            assert!(
                !matches!(next, Ok(Some(_))),
                "a workload of evil.example got a snapshot"
            );
        }
    }
    // Our own trust domain gets in.
    let mut ours = Proxy::connect(&cp, node("reviews", "reviews", "", true)).await;
    ours.next().await;
    let _ = stop.send(());
    drop(ours);
    let _ = tokio::time::timeout(WAIT, server).await;
}
