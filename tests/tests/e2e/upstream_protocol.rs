//! The HTTP version towards an upstream follows the destination port
//! (issue 18, item 2): HTTP/1.1 for a port declared `HTTP`, h2 for `HTTP2`
//! and `GRPC`, what the client spoke where nothing is declared (Istio's
//! sniffing), and a DestinationRule's `h2UpgradePolicy: UPGRADE` or
//! `useClientProtocol: true` over that. A server sidecar gives its app the
//! app port's protocol, whatever the hop between the sidecars carried.
//!
//! The backends are really HTTP/1.1-only (an h2 preface closes the
//! connection), really h2-only (an HTTP/1.1 request closes it) and a tonic
//! gRPC server; every answer is counted, per backend and per client
//! protocol, and so is the HTTP version each backend saw. Before this, an
//! h2 client of an HTTP/1.1-only service got 502 on every request and the
//! backend saw none.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use remora_e2e::echo::EchoApp;
use remora_e2e::echo::pb::EchoRequest;
use remora_e2e::echo::pb::echo_client::EchoClient;
use remora_e2e::mesh::endpoints_in;
use remora_e2e::secure::{self, Tokens};
use remora_e2e::yaml::destination_rule;
use remora_e2e::{Backend, Mesh, Protocol, Proxy, ProxySpec, Serves};
use tonic::transport::Endpoint;

/// Requests per client protocol and service.
const N: usize = 10;
const SETTLE: Duration = Duration::from_secs(15);

/// A ServiceEntry for `host` (namespace `default`) with one `port` (YAML
/// flow mapping) and, with `endpoint`, that static endpoint; without one,
/// a `workloadSelector` (the service's endpoints are sidecars that
/// register themselves: the entry only declares the port).
fn service_entry(host: &str, port: &str, endpoint: Option<SocketAddr>) -> String {
    let endpoints = match endpoint {
        Some(addr) => format!(
            "  endpoints:\n  - address: {}\n    ports: {{p: {}}}\n",
            addr.ip(),
            addr.port()
        ),
        None => format!("  workloadSelector:\n    labels: {{app: {host}}}\n"),
    };
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {host}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {port}
{endpoints}"
    )
}

/// The HTTP version an answer says its backend received.
fn seen_version(reply: &remora_e2e::Reply) -> String {
    reply
        .headers
        .get("x-http-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// Sends `N` GETs for `host` through `proxy` in `protocol`; returns the
/// answers as `"<status> <version the backend saw>"` → count.
async fn tally(proxy: SocketAddr, protocol: Protocol, host: &str) -> BTreeMap<String, usize> {
    let mut client = remora_e2e::HttpClient::new(proxy, protocol);
    let mut out = BTreeMap::new();
    for _ in 0..N {
        let key = match client.get(host, "/echo", &[]).await {
            Ok(reply) => format!("{} {}", reply.status.as_u16(), seen_version(&reply)),
            Err(e) => format!("error {e:#}"),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// `N` answers `200` whose backend saw `version`.
fn all_ok(version: &str) -> BTreeMap<String, usize> {
    [(format!("200 {version}"), N)].into()
}

/// `N` unary gRPC calls to `authority` through `proxy`; returns how many
/// answered OK with their message.
async fn grpc_calls(proxy: SocketAddr, authority: &str) -> usize {
    let channel = Endpoint::from_shared(format!("http://{proxy}"))
        .expect("endpoint")
        .origin(format!("http://{authority}").parse().expect("origin"))
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the proxy");
    let mut echo = EchoClient::new(channel);
    let mut ok = 0;
    for i in 0..N {
        let message = format!("m{i}");
        match echo
            .unary(EchoRequest {
                message: message.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(reply) if reply.get_ref().message == message => ok += 1,
            Ok(reply) => println!("gRPC {authority}: wrong answer {reply:?}"),
            Err(status) => println!("gRPC {authority}: {status:?}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn through_one_proxy_the_upstream_gets_its_port_s_protocol() {
    let h1 = Backend::start_serving("h1-only", Serves::Http1Only).await;
    let h2 = Backend::start_serving("h2-only", Serves::Http2Only).await;
    let upgraded = Backend::start_serving("upgraded", Serves::Http2Only).await;
    let sniffed = Backend::start_serving("sniffed", Serves::Both).await;
    let kept = Backend::start_serving("kept", Serves::Both).await;
    let grpc = EchoApp::start().await;
    let files = [
        (
            "h1.yaml",
            service_entry("h1", "{number: 80, name: p, protocol: HTTP}", Some(h1.addr)),
        ),
        (
            "h2.yaml",
            service_entry(
                "h2",
                "{number: 80, name: p, protocol: HTTP2}",
                Some(h2.addr),
            ),
        ),
        (
            "grpc.yaml",
            service_entry(
                "grpc",
                "{number: 50051, name: p, protocol: GRPC}",
                Some(grpc.addr),
            ),
        ),
        (
            "sniffed.yaml",
            service_entry("sniffed", "{number: 80, name: p}", Some(sniffed.addr)),
        ),
        (
            "upgraded.yaml",
            service_entry(
                "upgraded",
                "{number: 80, name: p, protocol: HTTP}",
                Some(upgraded.addr),
            ) + "---\n"
                + &destination_rule(
                    "upgraded",
                    "connectionPool:\n  http: {h2UpgradePolicy: UPGRADE}",
                ),
        ),
        (
            "kept.yaml",
            service_entry(
                "kept",
                "{number: 80, name: p, protocol: HTTP}",
                Some(kept.addr),
            ) + "---\n"
                + &destination_rule("kept", "connectionPool:\n  http: {useClientProtocol: true}"),
        ),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, y)| (*n, y.as_str())).collect();
    let mesh = Mesh::start(&files).await;
    let client = mesh.proxy(&ProxySpec::client("client")).await;
    for host in ["h1", "h2", "grpc", "sniffed", "upgraded", "kept"] {
        client
            .wait_endpoints(&format!("|{host}.default.svc.cluster.local"), 1, SETTLE)
            .await;
    }

    let out = client.outbound;
    // (service, client protocol, what every answer must be)
    let expected = [
        ("h1", Protocol::Http1, "HTTP/1.1"),
        ("h1", Protocol::Http2, "HTTP/1.1"),
        ("h2", Protocol::Http1, "HTTP/2.0"),
        ("h2", Protocol::Http2, "HTTP/2.0"),
        ("sniffed", Protocol::Http1, "HTTP/1.1"),
        ("sniffed", Protocol::Http2, "HTTP/2.0"),
        ("upgraded", Protocol::Http1, "HTTP/2.0"),
        ("kept", Protocol::Http1, "HTTP/1.1"),
        ("kept", Protocol::Http2, "HTTP/2.0"),
    ];
    for (host, protocol, version) in expected {
        let got = tally(out, protocol, host).await;
        println!("{protocol:?} client → {host}: {got:?}");
        assert_eq!(got, all_ok(version), "{protocol:?} client → {host}");
    }
    let hits = [
        ("h1-only", h1.hits()),
        ("h2-only", h2.hits()),
        ("sniffed", sniffed.hits()),
        ("upgraded", upgraded.hits()),
        ("kept", kept.hits()),
    ];
    println!("requests at each backend: {hits:?}");
    assert_eq!(
        hits.map(|(_, n)| n),
        [2 * N, 2 * N, 2 * N, N, 2 * N],
        "each backend answered every request sent to it: {hits:?}"
    );
    let grpc_ok = grpc_calls(out, "grpc:50051").await;
    println!("gRPC client → grpc: {grpc_ok} of {N} OK");
    assert_eq!(grpc_ok, N);
}

/// A sidecar with an identity for `service` in front of `app`.
async fn sidecar(mesh: &Mesh, tokens: &Tokens, service: &str, app: SocketAddr) -> Proxy {
    let spec = ProxySpec::sidecar(service, "v1", app);
    let spec = ProxySpec {
        labels: vec![
            ("app".to_owned(), service.to_owned()),
            ("version".to_owned(), "v1".to_owned()),
        ],
        ..spec
    };
    mesh.proxy(&secure::with_identity(spec, mesh, tokens, service))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn through_a_sidecar_pair_each_app_gets_its_port_s_protocol() {
    let h1 = Backend::start_serving("h1-only", Serves::Http1Only).await;
    let h2 = Backend::start_serving("h2-only", Serves::Http2Only).await;
    let sniffed = Backend::start_serving("sniffed", Serves::Both).await;
    let grpc = EchoApp::start().await;
    // `h1app`'s app port is `--app` (the service port names no target);
    // `h2app` names its app's port as `targetPort`. Clients of `h1app`
    // keep their own HTTP version on the hop between the sidecars
    // (`useClientProtocol`): its sidecar alone turns h2 into HTTP/1.1.
    let files = [
        (
            "h1app.yaml",
            service_entry("h1app", "{number: 80, name: http, protocol: HTTP}", None)
                + "---\n"
                + &destination_rule(
                    "h1app",
                    "connectionPool:\n  http: {useClientProtocol: true}",
                ),
        ),
        (
            "h2app.yaml",
            service_entry(
                "h2app",
                &format!(
                    "{{number: 80, name: http2, protocol: HTTP2, targetPort: {}}}",
                    h2.addr.port()
                ),
                None,
            ),
        ),
        (
            "grpcapp.yaml",
            service_entry(
                "grpcapp",
                "{number: 50051, name: grpc, protocol: GRPC}",
                None,
            ),
        ),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, y)| (*n, y.as_str())).collect();
    let mesh = Mesh::start_secure(&files).await;
    let tokens = Tokens::new();
    let h1_sidecar = sidecar(&mesh, &tokens, "h1app", h1.addr).await;
    let h2_sidecar = sidecar(&mesh, &tokens, "h2app", h2.addr).await;
    let _sniffed_sidecar = sidecar(&mesh, &tokens, "autoapp", sniffed.addr).await;
    let _grpc_sidecar = sidecar(&mesh, &tokens, "grpcapp", grpc.addr).await;
    let client = secure::client(&mesh, &tokens, "productpage").await;
    for host in ["h1app", "h2app", "autoapp", "grpcapp"] {
        let cluster = format!("|{host}.default.svc.cluster.local");
        let dump = client.wait_endpoints(&cluster, 1, SETTLE).await;
        assert_eq!(
            endpoints_in(&dump, &cluster).len(),
            1,
            "{host} has its sidecar as endpoint"
        );
    }

    let out = client.outbound;
    let expected = [
        ("h1app", Protocol::Http1, "HTTP/1.1"),
        ("h1app", Protocol::Http2, "HTTP/1.1"),
        ("h2app", Protocol::Http1, "HTTP/2.0"),
        ("h2app", Protocol::Http2, "HTTP/2.0"),
        ("autoapp", Protocol::Http1, "HTTP/1.1"),
        ("autoapp", Protocol::Http2, "HTTP/2.0"),
    ];
    for (host, protocol, version) in expected {
        let got = tally(out, protocol, host).await;
        println!("{protocol:?} client → sidecars → {host}: {got:?}");
        assert_eq!(got, all_ok(version), "{protocol:?} client → {host}");
    }
    let mtls = client
        .prometheus()
        .await
        .expect("client metrics")
        .iter()
        .filter(|(k, _)| k.starts_with("remora_requests_total{") && k.contains("mtls=\"true\""))
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert_eq!(mtls as usize, 6 * N, "every request crossed the mTLS hop");

    // Plaintext clients straight to the server sidecars' inbound ports
    // (PERMISSIVE): each app still gets its port's protocol.
    let direct = [
        (h1_sidecar.inbound, "h1app", Protocol::Http2, "HTTP/1.1"),
        (h2_sidecar.inbound, "h2app", Protocol::Http1, "HTTP/2.0"),
    ];
    for (inbound, host, protocol, version) in direct {
        let inbound = inbound.expect("sidecar has an inbound port");
        let got = tally(inbound, protocol, host).await;
        println!("plaintext {protocol:?} client → {host}'s sidecar: {got:?}");
        assert_eq!(got, all_ok(version), "plaintext {protocol:?} → {host}");
    }
    let hits = [
        ("h1-only", h1.hits()),
        ("h2-only", h2.hits()),
        ("sniffed", sniffed.hits()),
    ];
    println!("requests at each backend: {hits:?}");
    assert_eq!(hits.map(|(_, n)| n), [3 * N, 3 * N, 2 * N], "{hits:?}");

    let grpc_ok = grpc_calls(out, "grpcapp:50051").await;
    println!("gRPC client → sidecars → grpcapp: {grpc_ok} of {N} OK");
    assert_eq!(grpc_ok, N);
}
