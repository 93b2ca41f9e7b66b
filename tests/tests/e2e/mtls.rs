//! mTLS between sidecars, end to end: real control plane and CA, real
//! proxies that get their certificates with bootstrap tokens, the demo app
//! behind a sidecar, and `curl` / `openssl s_client` as outside clients.
//!
//! The demo app's `/echo` answers with the protocol and host it received
//! and with the `x-forwarded-client-cert` header its sidecar added (echoed
//! as `x-echo-x-forwarded-client-cert`), which is how a test sees the peer
//! identity on the server side.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use remora_e2e::mesh::endpoints_in;
use remora_e2e::secure::{self, Tokens, curl_plaintext, openssl_without_certificate};
use remora_e2e::{DemoApp, Mesh, Protocol, Proxy, Reply};
use serde_json::Value;

const REVIEWS: &str = "|reviews.default.svc.cluster.local";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const SETTLE: Duration = Duration::from_secs(15);

const STRICT_MESH_WIDE: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
";

const DISABLE_DEFAULT_NS: &str = "
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: DISABLE}
";

/// `reviews` (demo app + sidecar, identity `reviews`) and a client-only
/// proxy `productpage` (identity `productpage`), both with certificates.
struct Pair {
    mesh: Mesh,
    _tokens: Tokens,
    _app: DemoApp,
    server: Proxy,
    client: Proxy,
}

impl Pair {
    async fn start(files: &[(&str, &str)]) -> Self {
        let mesh = Mesh::start_secure(files).await;
        let tokens = Tokens::new();
        let app = DemoApp::start("reviews", "v1").await;
        let server = secure::sidecar(&mesh, &tokens, "reviews", &app).await;
        let client = secure::client(&mesh, &tokens, "productpage").await;
        client.wait_endpoints(REVIEWS, 1, SETTLE).await;
        Self {
            mesh,
            _tokens: tokens,
            _app: app,
            server,
            client,
        }
    }

    fn inbound(&self) -> std::net::SocketAddr {
        self.server.inbound.expect("sidecar has an inbound port")
    }

    async fn echo(&self, protocol: Protocol) -> Reply {
        self.client
            .client(protocol)
            .get("reviews", "/echo", &[])
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "request through the mesh failed: {e:#}\nclient stderr:\n{}\nserver stderr:\n{}",
                    self.client.process.stderr_tail(),
                    self.server.process.stderr_tail()
                )
            })
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The single endpoint of `cluster` in a config dump.
fn endpoint<'a>(dump: &'a Value, cluster: &str) -> &'a Value {
    dump["snapshot"]["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == cluster))
        .and_then(|c| c["endpoints"].get(0))
        .unwrap_or_else(|| panic!("no endpoint in {cluster}: {dump}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_talk_mtls_and_the_app_sees_the_client_identity() {
    let pair = Pair::start(&[]).await;

    let dump = pair.client.config_dump().await.expect("config_dump");
    let ep = endpoint(&dump, REVIEWS);
    assert_eq!(
        ep["mtls"], true,
        "auto mTLS to a sidecar with an identity: {ep}"
    );
    assert_eq!(
        ep["spiffe_id"], "spiffe://cluster.local/ns/default/sa/reviews",
        "{ep}"
    );

    for protocol in [Protocol::Http1, Protocol::Http2] {
        let reply = pair.echo(protocol).await;
        assert_eq!(reply.status, 200, "{protocol:?}: {}", reply.body);
        let xfcc = header(&reply, "x-echo-x-forwarded-client-cert");
        println!("{protocol:?}: app saw x-forwarded-client-cert: {xfcc}");
        assert!(
            xfcc.contains(&format!("URI={CLIENT_ID}")),
            "{protocol:?}: the app should see the client's identity, got {xfcc:?}"
        );
        assert!(
            xfcc.contains("By=spiffe://cluster.local/ns/default/sa/reviews"),
            "{xfcc:?}"
        );
        // HTTP/1.1 from the client app crosses the sidecars over h2 and
        // reaches the server app as HTTP/1.1 again, with its Host.
        let expected = match protocol {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2.0",
        };
        assert_eq!(header(&reply, "x-echo-version"), expected);
        assert_eq!(header(&reply, "x-echo-host"), "reviews");
    }

    // A client that claims an identity in a header gets it replaced: only
    // the handshake speaks for the peer.
    let forged = pair
        .client
        .client(Protocol::Http1)
        .get(
            "reviews",
            "/echo",
            &[(
                "x-forwarded-client-cert",
                "URI=spiffe://cluster.local/ns/default/sa/admin",
            )],
        )
        .await
        .expect("request");
    let xfcc = header(&forged, "x-echo-x-forwarded-client-cert");
    assert!(
        !xfcc.contains("sa/admin"),
        "forged XFCC reached the app: {xfcc:?}"
    );
    assert!(xfcc.contains(CLIENT_ID), "{xfcc:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_refuses_plaintext_and_tls_without_a_certificate() {
    let pair = Pair::start(&[("peer-authentication.yaml", STRICT_MESH_WIDE)]).await;
    pair.server
        .wait_config("STRICT", SETTLE, |d| d["snapshot"]["inbound"]["mtls"] == 1)
        .await;

    // The mesh path still works, over mTLS.
    let reply = pair.echo(Protocol::Http1).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(header(&reply, "x-echo-x-forwarded-client-cert").contains(CLIENT_ID));

    let curl = curl_plaintext(pair.inbound(), "reviews").await;
    println!(
        "STRICT, curl plaintext: exit {:?}: {}",
        curl.code,
        curl.output.trim()
    );
    assert!(
        !curl.got_200(),
        "plaintext reached the app under STRICT: {curl:?}"
    );
    assert_ne!(curl.code, Some(0), "{curl:?}");

    let ssl = openssl_without_certificate(pair.inbound(), "reviews").await;
    println!(
        "STRICT, openssl s_client without a certificate: exit {:?}: {}",
        ssl.code,
        ssl.output
            .lines()
            .filter(|l| l.contains("alert") || l.contains("error"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert!(
        !ssl.got_200(),
        "a TLS client without a certificate got through: {ssl:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permissive_accepts_both_and_disable_accepts_plaintext_only() {
    let pair = Pair::start(&[]).await;

    // PERMISSIVE (no policy): plaintext, TLS without a certificate, and mTLS.
    let curl = curl_plaintext(pair.inbound(), "reviews").await;
    assert!(
        curl.got_200(),
        "PERMISSIVE should accept plaintext: {curl:?}"
    );
    assert!(
        !curl.output.contains("forwarded-client-cert"),
        "a plaintext peer has no identity: {curl:?}"
    );
    let ssl = openssl_without_certificate(pair.inbound(), "reviews").await;
    assert!(
        ssl.got_200(),
        "PERMISSIVE should accept TLS without a client certificate: {ssl:?}"
    );
    let reply = pair.echo(Protocol::Http1).await;
    assert!(
        header(&reply, "x-echo-x-forwarded-client-cert").contains(CLIENT_ID),
        "under PERMISSIVE proxies still use mTLS with each other"
    );

    // DISABLE for the namespace: plaintext only, and the client's proxy
    // stops using mTLS towards it (auto mTLS follows the destination).
    pair.mesh
        .write_file("peer-authentication.yaml", DISABLE_DEFAULT_NS);
    pair.server
        .wait_config("DISABLE", SETTLE, |d| d["snapshot"]["inbound"]["mtls"] == 2)
        .await;
    pair.client
        .wait_config("plaintext endpoint", SETTLE, |d| {
            !endpoints_in(d, REVIEWS).is_empty() && endpoint(d, REVIEWS)["mtls"] == false
        })
        .await;

    let curl = curl_plaintext(pair.inbound(), "reviews").await;
    assert!(curl.got_200(), "DISABLE accepts plaintext: {curl:?}");
    let ssl = openssl_without_certificate(pair.inbound(), "reviews").await;
    println!("DISABLE, openssl s_client: exit {:?}", ssl.code);
    assert!(!ssl.got_200(), "DISABLE must not speak TLS: {ssl:?}");
    let reply = pair.echo(Protocol::Http1).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        header(&reply, "x-echo-x-forwarded-client-cert"),
        "",
        "plaintext between the proxies carries no identity"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_with_another_identity_fails_the_destination_check() {
    // `payments` is declared served by service account `payments`, but the
    // workload at its address holds a certificate for `impostor`.
    let mesh = Mesh::start_secure(&[]).await;
    let tokens = Tokens::new();
    let app = DemoApp::start("impostor", "v1").await;
    let impostor = secure::sidecar(&mesh, &tokens, "impostor", &app).await;
    let port = impostor.inbound.expect("inbound").port();
    mesh.write_file(
        "payments.yaml",
        &format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: payments}}
spec:
  hosts: [payments.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: payments}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: payments-1}}
spec:
  address: 127.0.0.1
  ports: {{http: {port}}}
  labels: {{app: payments, security.istio.io/tlsMode: istio}}
  serviceAccount: payments
"
        ),
    );
    let client = secure::client(&mesh, &tokens, "productpage").await;
    let cluster = "|payments.default.svc.cluster.local";
    let dump = client
        .wait_config("payments endpoint", SETTLE, |d| {
            endpoints_in(d, cluster).len() == 1
        })
        .await;
    let ep = endpoint(&dump, cluster);
    assert_eq!(ep["mtls"], true, "{ep}");
    assert_eq!(
        ep["spiffe_id"],
        "spiffe://cluster.local/ns/default/sa/payments"
    );

    let mut http = client.client(Protocol::Http1);
    for i in 0..3 {
        let reply = http.get("payments", "/echo", &[]).await.expect("request");
        println!(
            "impostor, request {i}: {} {}",
            reply.status,
            reply.body.trim()
        );
        assert_eq!(reply.status, 502, "{}", reply.body);
        assert!(
            reply.body.contains("sa/impostor") && reply.body.contains("sa/payments"),
            "the 502 should say who answered and who was expected: {}",
            reply.body
        );
        assert_eq!(
            header(&reply, "x-echo-path"),
            "",
            "the impostor's app answered"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_without_a_length_crosses_the_mtls_hop_whole_and_is_replayed_on_a_retry() {
    let vs =
        remora_e2e::yaml::virtual_service("reviews", "retries:\n  attempts: 2\n  retryOn: 5xx");
    let pair = Pair::start(&[("vs.yaml", vs.as_str())]).await;
    // 48 KiB of text (the reply is read as text), in 4 KiB chunks, no length announced.
    let body: Bytes = (0..48 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let chunks: Vec<Bytes> = (0..body.len())
        .step_by(4096)
        .map(|at| body.slice(at..body.len().min(at + 4096)))
        .collect();
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut http = pair.client.client(protocol);
        let echoed = http
            .request_chunked(Method::POST, "reviews", "/echo", &[], chunks.clone())
            .await
            .unwrap_or_else(|e| panic!("{protocol:?} POST /echo: {e:#}"));
        assert_eq!(echoed.status, 200, "{protocol:?}: {}", echoed.body);
        assert!(
            echoed.body.as_bytes() == body,
            "{protocol:?}: the app received {} bytes, not the 48 KiB sent",
            echoed.body.len()
        );
        let before = pair.client.stat("remora_retry_attempts_total").await;
        let failed = http
            .request_chunked(Method::POST, "reviews", "/status/503", &[], chunks.clone())
            .await
            .unwrap_or_else(|e| panic!("{protocol:?} POST /status/503: {e:#}"));
        assert_eq!(failed.status, 503, "{protocol:?}: {}", failed.body);
        let retries = pair.client.stat("remora_retry_attempts_total").await - before;
        assert_eq!(
            retries, 2,
            "{protocol:?}: attempts 2 on a 503, the body kept for both"
        );
    }
}
