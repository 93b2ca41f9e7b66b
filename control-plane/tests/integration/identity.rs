//! The identity service over real gRPC connections, plaintext and TLS: CSRs signed for the
//! identity a bootstrap token names and refused for any other, forged tokens refused, the CA
//! surviving a restart, the TLS port's own certificate, renewal with a client certificate, and
//! `remora token create` and `remora serve` as processes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use remora_certs::{
    AllowedPeers, ClientAuth, MeshTls, SharedTrustBundle, SpiffeClientVerifier, SpiffeId,
    TrustBundle, TrustDomain, WorkloadKey, peer_identity, spiffe_id_of,
};
use remora_control_plane::discovery::DiscoveryService;
use remora_control_plane::grpc;
use remora_control_plane::identity::IdentityArgs;
use remora_control_plane::mesh::Mesh;
use remora_control_plane::metrics::Metrics;
use remora_control_plane::token::{TOKEN_KEY_FILE, TokenIdentity, TokenKey};
use remora_proto::pb::identity::identity_client::IdentityClient;
use remora_proto::pb::identity::{SignRequest, SignResponse};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const CONTROL_PLANE: &str = "spiffe://cluster.local/ns/remora-system/sa/remora";

/// A control plane's gRPC ports, in-process, over a data directory.
struct Server {
    plaintext: SocketAddr,
    tls: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Starts both ports on 127.0.0.1 the way `remora serve` does, with the CA in `data_dir`.
    async fn start(data_dir: &Path) -> Server {
        let args = IdentityArgs {
            data_dir: data_dir.to_owned(),
            trust_domain: TrustDomain::new("cluster.local").expect("td"),
            cert_lifetime: Duration::from_secs(24 * 60 * 60),
            grpc_tls_addr: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let plaintext = listener.local_addr().expect("addr");
        let requested = "127.0.0.1:0".parse().expect("addr");
        let identity = args.start(requested, Metrics::new()).await.expect("start");
        let tls = identity.tls_port.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            grpc::serve(
                listener,
                identity.tls_port,
                DiscoveryService::new(Arc::new(Mesh::new())),
                identity.service,
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("serve");
        });
        Server {
            plaintext,
            tls,
            stop: Some(stop),
            task,
        }
    }

    async fn plaintext_client(&self) -> IdentityClient<Channel> {
        IdentityClient::connect(format!("http://{}", self.plaintext))
            .await
            .expect("connect")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC channel over TLS to `addr` with `config` (the server is checked by SPIFFE ID).
async fn tls_channel(addr: SocketAddr, config: Arc<ClientConfig>) -> Channel {
    let connector = TlsConnector::from(config);
    Endpoint::from_static("http://control-plane.invalid")
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
        .expect("connect over TLS")
}

fn id(uri: &str) -> SpiffeId {
    SpiffeId::parse(uri).expect("SPIFFE ID")
}

fn token(data_dir: &Path, namespace: &str, service_account: &str) -> String {
    TokenKey::load_or_create(data_dir)
        .expect("token key")
        .issue(&TokenIdentity::new(namespace, service_account).expect("identity"))
}

fn request(csr_pem: String, token: String) -> SignRequest {
    // Every field, spelled out: the request has no place for a private key.
    SignRequest {
        csr_pem,
        token,
        requested_lifetime_seconds: 0,
    }
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    ::pem::parse_many(pem)
        .expect("PEM")
        .into_iter()
        .map(|block| {
            assert_eq!(block.tag(), "CERTIFICATE");
            CertificateDer::from(block.into_contents())
        })
        .collect()
}

/// Checks the leaf against the bundle with remora-certs' own verifier (chain, validity,
/// clientAuth usage, one SPIFFE ID).
fn verify_chain(cert_chain_pem: &str, trust_bundle_pem: &str) {
    let chain = certs(cert_chain_pem);
    let bundle = TrustBundle::from_pem(trust_bundle_pem).expect("bundle");
    let td = remora_certs::TrustDomain::new("cluster.local").expect("td");
    SpiffeClientVerifier::new(
        SharedTrustBundle::new(bundle),
        ClientAuth::Required,
        remora_certs::AllowedPeers::trust_domain(td),
    )
    .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
    .expect("the leaf chains to the bundle");
}

/// The leaf's subject alternative names, all of them.
fn sans(leaf: &CertificateDer<'_>) -> Vec<String> {
    let (_, x509) = X509Certificate::from_der(leaf).expect("x509");
    let san = x509
        .subject_alternative_name()
        .expect("SAN extension")
        .expect("has SANs");
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(uri) => format!("URI:{uri}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_csr_with_a_matching_token_is_signed_for_exactly_that_spiffe_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path()).await;
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr(&id(REVIEWS)).expect("csr");
    let before = SystemTime::now();
    let response = server
        .plaintext_client()
        .await
        .sign(request(csr, token(dir.path(), "default", "reviews")))
        .await
        .expect("signed")
        .into_inner();

    assert_eq!(response.spiffe_id, REVIEWS);
    let chain = certs(&response.cert_chain_pem);
    assert_eq!(chain.len(), 1, "a root CA sends the leaf alone");
    assert_eq!(sans(&chain[0]), [format!("URI:{REVIEWS}")]);
    assert_eq!(spiffe_id_of(&chain[0]).expect("SVID"), id(REVIEWS));
    verify_chain(&response.cert_chain_pem, &response.trust_bundle_pem);
    let svid = key
        .certify(&response.cert_chain_pem)
        .expect("the leaf is for our key");
    assert_eq!(svid.id(), &id(REVIEWS));
    let lifetime = Duration::from_secs(response.not_after_unix as u64)
        .saturating_sub(before.duration_since(SystemTime::UNIX_EPOCH).expect("now"));
    assert!(
        lifetime > Duration::from_secs(23 * 3600) && lifetime <= Duration::from_secs(24 * 3600),
        "default lifetime is 24 h, got {lifetime:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_token_for_another_identity_is_refused_naming_requested_and_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path()).await;
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr(&id(REVIEWS)).expect("csr");
    let status = server
        .plaintext_client()
        .await
        .sign(request(csr, token(dir.path(), "default", "ratings")))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(REVIEWS), "{}", status.message());
    assert!(
        status
            .message()
            .contains("spiffe://cluster.local/ns/default/sa/ratings"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn forged_malformed_and_missing_tokens_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path()).await;
    let mut client = server.plaintext_client().await;
    let csr = WorkloadKey::generate()
        .expect("key")
        .csr(&id(REVIEWS))
        .expect("csr");

    let genuine = token(dir.path(), "default", "reviews");
    let (text, mac) = genuine.rsplit_once('.').expect("MAC");
    let mut mac = URL_SAFE_NO_PAD.decode(mac).expect("base64url");
    mac[0] ^= 0x01;
    let forged = format!("{text}.{}", URL_SAFE_NO_PAD.encode(mac));
    let status = client
        .sign(request(csr.clone(), forged))
        .await
        .expect_err("forged");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("signature does not match"),
        "{}",
        status.message()
    );

    let other_key = TokenKey::from_bytes(&[9; 32])
        .issue(&TokenIdentity::new("default", "reviews").expect("identity"));
    let status = client
        .sign(request(csr.clone(), other_key))
        .await
        .expect_err("another control plane's token");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let status = client
        .sign(request(csr.clone(), "v1.default.reviews".to_owned()))
        .await
        .expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("malformed bootstrap token"),
        "{}",
        status.message()
    );

    let status = client
        .sign(request(csr, String::new()))
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_request_carries_a_csr_and_never_the_private_key() {
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr(&id(REVIEWS)).expect("csr");
    let blocks = ::pem::parse_many(&csr).expect("PEM");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].tag(), "CERTIFICATE REQUEST");
    assert!(!csr.contains("PRIVATE KEY"));
    // The CSR's public key is the workload's; nothing else of the key is in it.
    let (_, request_info) = x509_parser::certification_request::X509CertificationRequest::from_der(
        blocks[0].contents(),
    )
    .expect("CSR");
    let spki = ::pem::parse(key.public_key_pem()).expect("public key PEM");
    assert_eq!(
        request_info.certification_request_info.subject_pki.raw,
        spki.contents()
    );
    // The whole message on the wire: a struct literal with every field (adding a field would
    // break this line), and its encoding mentions no key.
    let message = request(csr, "v1.default.reviews.mac".to_owned());
    let wire = prost::Message::encode_to_vec(&message);
    assert!(!String::from_utf8_lossy(&wire).contains("PRIVATE KEY"));
}

#[tokio::test]
async fn a_restarted_control_plane_keeps_its_ca_and_token_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let key = WorkloadKey::generate().expect("key");
    let reviews_token = token(&data, "default", "reviews");

    let first = Server::start(&data).await;
    let before: SignResponse = first
        .plaintext_client()
        .await
        .sign(request(
            key.csr(&id(REVIEWS)).expect("csr"),
            reviews_token.clone(),
        ))
        .await
        .expect("signed")
        .into_inner();
    first.stop().await;

    let second = Server::start(&data).await;
    let after = second
        .plaintext_client()
        .await
        .sign(request(key.csr(&id(REVIEWS)).expect("csr"), reviews_token))
        .await
        .expect("the token issued before the restart still works")
        .into_inner();
    assert_eq!(
        certs(&before.trust_bundle_pem),
        certs(&after.trust_bundle_pem),
        "same root"
    );
    verify_chain(&before.cert_chain_pem, &after.trust_bundle_pem);
    second.stop().await;
}

#[tokio::test]
async fn the_tls_port_presents_the_control_plane_identity_chaining_to_the_bundle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path()).await;
    // The bundle, as a proxy would first get it (or be given it by the operator).
    let bundle_pem = server
        .plaintext_client()
        .await
        .sign(request(
            WorkloadKey::generate()
                .expect("key")
                .csr(&id(REVIEWS))
                .expect("csr"),
            token(dir.path(), "default", "reviews"),
        ))
        .await
        .expect("signed")
        .into_inner()
        .trust_bundle_pem;

    // A raw handshake: the server's certificate chains to the bundle and names the control plane.
    let mesh = MeshTls::new(TrustBundle::from_pem(&bundle_pem).expect("bundle"));
    let config = mesh
        .client_config(AllowedPeers::ids([id(CONTROL_PLANE)]))
        .expect("client config");
    let tcp = TcpStream::connect(server.tls).await.expect("connect");
    let tls = TlsConnector::from(Arc::clone(&config))
        .connect(ServerName::IpAddress(server.tls.ip().into()), tcp)
        .await
        .expect("TLS handshake with a server the bundle vouches for");
    assert_eq!(peer_identity(tls.get_ref().1), Some(id(CONTROL_PLANE)));
    drop(tls);

    // A client expecting some other identity refuses the server.
    let wrong = mesh
        .client_config(AllowedPeers::ids([id(REVIEWS)]))
        .expect("client config");
    let tcp = TcpStream::connect(server.tls).await.expect("connect");
    TlsConnector::from(wrong)
        .connect(ServerName::IpAddress(server.tls.ip().into()), tcp)
        .await
        .expect_err("the server is not reviews");

    // gRPC over TLS: sign with a token, no client certificate.
    let mut client = IdentityClient::new(tls_channel(server.tls, config).await);
    let key = WorkloadKey::generate().expect("key");
    let response = client
        .sign(request(
            key.csr(&id(REVIEWS)).expect("csr"),
            token(dir.path(), "default", "reviews"),
        ))
        .await
        .expect("signed over TLS")
        .into_inner();
    verify_chain(&response.cert_chain_pem, &response.trust_bundle_pem);
    server.stop().await;
}

#[tokio::test]
async fn a_proxy_renews_over_tls_with_its_current_certificate_and_no_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path()).await;
    let key = WorkloadKey::generate().expect("key");
    let first = server
        .plaintext_client()
        .await
        .sign(request(
            key.csr(&id(REVIEWS)).expect("csr"),
            token(dir.path(), "default", "reviews"),
        ))
        .await
        .expect("signed")
        .into_inner();
    let mesh = MeshTls::new(TrustBundle::from_pem(&first.trust_bundle_pem).expect("bundle"));
    mesh.svid()
        .store(key.certify(&first.cert_chain_pem).expect("svid"));
    let config = mesh
        .client_config(AllowedPeers::ids([id(CONTROL_PLANE)]))
        .expect("client config");
    let mut client = IdentityClient::new(tls_channel(server.tls, config).await);

    let next_key = WorkloadKey::generate().expect("key");
    let renewed = client
        .sign(request(
            next_key.csr(&id(REVIEWS)).expect("csr"),
            String::new(),
        ))
        .await
        .expect("renewed with the client certificate")
        .into_inner();
    assert_eq!(renewed.spiffe_id, REVIEWS);
    next_key
        .certify(&renewed.cert_chain_pem)
        .expect("the new leaf is for the new key");

    let status = client
        .sign(request(
            next_key
                .csr(&id("spiffe://cluster.local/ns/default/sa/ratings"))
                .expect("csr"),
            String::new(),
        ))
        .await
        .expect_err("a certificate only renews its own identity");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(REVIEWS), "{}", status.message());
    server.stop().await;
}

#[test]
fn token_create_prints_one_token_and_keeps_the_key_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_remora"))
            .args(["token", "create", "--data-dir"])
            .arg(&data)
            .args(args)
            .env_remove("REMORA_DATA_DIR")
            .output()
            .expect("run remora token create")
    };

    let out = run(&["--namespace", "default", "--service-account", "reviews"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout.clone()).expect("UTF-8");
    let line = stdout.strip_suffix('\n').expect("one line");
    assert!(!line.contains('\n'), "{stdout:?}");
    let fields: Vec<&str> = line.split('.').collect();
    assert_eq!(fields[..3], ["v1", "default", "reviews"], "{line}");
    assert_eq!(fields.len(), 4, "{line}");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(fields[3]).expect("base64url").len(),
        32
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("created a new token key"),
        "{out:?}"
    );

    let key_path = data.join(TOKEN_KEY_FILE);
    assert_eq!(std::fs::read(&key_path).expect("key").len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "token key mode {mode:o}");
    }
    let verified = TokenKey::load_or_create(&data)
        .expect("key")
        .verify(line, SystemTime::now())
        .expect("the printed token verifies with the key file");
    assert_eq!(verified.namespace(), "default");

    // The same key next time; an expiring token has five fields.
    let out = run(&["-n", "default", "-s", "reviews", "--ttl", "1h"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let expiring = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(expiring.trim().split('.').count(), 5, "{expiring}");

    let out = run(&["-n", "default", "-s", "my.sa"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid service account \"my.sa\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn remora_serve_signs_for_a_token_from_remora_token_create() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_remora"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--monitoring-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("REMORA_GRPC_TLS_ADDR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn remora serve");
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let listening: serde_json::Value = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let event: serde_json::Value = serde_json::from_str(&line).expect("JSON event");
            if event["event"] == "listening" {
                return event;
            }
        }
        panic!("remora serve exited before listening");
    })
    .await
    .expect("listening in time");
    let grpc_tls: SocketAddr = listening["grpc_tls"]
        .as_str()
        .expect("grpc_tls in the listening event")
        .parse()
        .expect("address");
    assert_eq!(grpc_tls.ip().to_string(), "127.0.0.1");
    assert_ne!(grpc_tls.port(), 0);
    let grpc = listening["grpc"].as_str().expect("grpc address");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remora"))
        .args([
            "token",
            "create",
            "-n",
            "default",
            "-s",
            "reviews",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("run remora token create");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("UTF-8");

    let mut client = IdentityClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let key = WorkloadKey::generate().expect("key");
    let response = client
        .sign(request(
            key.csr(&id(REVIEWS)).expect("csr"),
            token.trim().to_owned(),
        ))
        .await
        .expect("signed")
        .into_inner();
    verify_chain(&response.cert_chain_pem, &response.trust_bundle_pem);
    let signed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let event: serde_json::Value = serde_json::from_str(&line).expect("JSON event");
            if event["event"] == "signed" {
                return event;
            }
        }
        panic!("remora serve exited");
    })
    .await
    .expect("a signed event");
    assert_eq!(signed["spiffe_id"], REVIEWS);
    assert_eq!(signed["via"], "token");

    serve.start_kill().expect("kill");
    let _ = serve.wait().await;
}

#[test]
fn token_create_refuses_the_control_planes_own_identity_unless_forced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let create = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_remora"))
            .args(["token", "create", "-n", "remora-system", "-s", "remora"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .output()
            .expect("run remora token create")
    };
    let refused = create(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(refused.stdout.is_empty(), "no token printed: {refused:?}");
    assert!(
        stderr.contains("the control plane's own identity") && stderr.contains("--force"),
        "{stderr}"
    );
    let forced = create(&["--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert!(String::from_utf8_lossy(&forced.stdout).starts_with("v1.remora-system.remora."));
}
