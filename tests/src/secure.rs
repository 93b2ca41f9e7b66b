//! Meshes with identities: proxies that get SVIDs from the control plane's
//! CA, a proxy's identity seen from outside (its admin `/certs`, token files,
//! PEM compared by content), and the outside clients (`curl`,
//! `openssl s_client`) that probe an inbound port the way an attacker or a
//! misconfigured app would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::client::{HttpClient, Protocol};
use crate::mesh::{DemoApp, Mesh, Proxy, ProxySpec};

/// How long an outside client may take before the probe counts as hung.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Token files for the proxies of one test.
#[derive(Debug)]
pub struct Tokens {
    dir: TempDir,
}

impl Tokens {
    /// An empty token directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("remora-tokens-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// Writes a token for `namespace/service_account` (made by `mesh`'s
    /// control plane) into a file and returns its path.
    pub fn file(&self, mesh: &Mesh, namespace: &str, service_account: &str) -> PathBuf {
        let token = mesh.control_plane.token(namespace, service_account);
        token_file(
            self.dir.path(),
            &format!("{namespace}.{service_account}.token"),
            &token,
        )
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

/// `spec` with an identity: a token for `namespace/service_account` (the
/// spec's namespace, and `--service-account service_account`), the CA
/// certificate to verify the control plane with, and its TLS address.
pub fn with_identity(
    spec: ProxySpec,
    mesh: &Mesh,
    tokens: &Tokens,
    service_account: &str,
) -> ProxySpec {
    let token = tokens.file(mesh, &spec.namespace, service_account);
    let ca = mesh.control_plane.ca_cert();
    let ca_addr = mesh.control_plane.grpc_tls.to_string();
    spec.arg("--service-account", service_account)
        .arg("--token-file", &token.to_string_lossy())
        .arg("--ca-cert", &ca.to_string_lossy())
        .arg("--ca-address", &ca_addr)
}

/// A sidecar for `service` (service account of the same name, label
/// `version=v1`) in front of `app`, with a certificate; ready.
pub async fn sidecar(mesh: &Mesh, tokens: &Tokens, service: &str, app: &DemoApp) -> Proxy {
    mesh.proxy(&with_identity(
        ProxySpec::sidecar(service, "v1", app.addr),
        mesh,
        tokens,
        service,
    ))
    .await
}

/// A client-only proxy for workload `name` (service account of the same
/// name), with a certificate; ready.
pub async fn client(mesh: &Mesh, tokens: &Tokens, name: &str) -> Proxy {
    mesh.proxy(&with_identity(ProxySpec::client(name), mesh, tokens, name))
        .await
}

/// What an outside client got.
#[derive(Debug)]
pub struct Probe {
    /// The exit status code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// stdout and stderr, concatenated.
    pub output: String,
}

impl Probe {
    /// Whether an HTTP 200 came back.
    pub fn got_200(&self) -> bool {
        self.output.contains("HTTP/1.1 200") || self.output.contains("HTTP/2 200")
    }
}

/// `curl -sS -i http://<addr>/echo -H 'Host: <host>'`: a plaintext HTTP/1.1
/// request straight to a port.
pub async fn curl_plaintext(addr: SocketAddr, host: &str) -> Probe {
    let out = tokio::time::timeout(
        PROBE_TIMEOUT,
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "5", "-H"])
            .arg(format!("Host: {host}"))
            .arg(format!("http://{addr}/echo"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl hung")
    .expect("run curl (Debian package `curl`)");
    Probe {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `openssl s_client -connect <addr>` with no client certificate, sending
/// one HTTP/1.1 request over the TLS connection (ALPN `http/1.1`).
pub async fn openssl_without_certificate(addr: SocketAddr, host: &str) -> Probe {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(addr.to_string())
        .args(["-alpn", "http/1.1", "-ign_eof", "-tls1_3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run openssl (Debian package `openssl`)");
    let mut stdin = child.stdin.take().expect("stdin");
    let request = format!("GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // The server may close before reading: a failed write is part of the answer.
    let _ = stdin.write_all(request.as_bytes()).await;
    drop(stdin);
    let out = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .expect("openssl s_client hung")
        .expect("openssl s_client output");
    Probe {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `GET /certs` from the admin API at `admin`, parsed. Panics if it does not answer 200 with
/// JSON.
pub async fn certs(admin: SocketAddr) -> Value {
    let reply = HttpClient::new(admin, Protocol::Http1)
        .get("admin", "/certs", &[])
        .await
        .unwrap_or_else(|e| panic!("GET /certs from {admin}: {e:#}"));
    assert!(
        reply.status.is_success(),
        "/certs answered {}: {}",
        reply.status,
        reply.body
    );
    serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("/certs is not JSON ({e}): {}", reply.body))
}

/// `GET /ready` from the admin API at `admin`: the status code.
pub async fn ready_status(admin: SocketAddr) -> u16 {
    HttpClient::new(admin, Protocol::Http1)
        .get("admin", "/ready", &[])
        .await
        .unwrap_or_else(|e| panic!("GET /ready from {admin}: {e:#}"))
        .status
        .as_u16()
}

/// Writes `token` (with a trailing newline, as `remora token create > file` does) into
/// `dir/name` and returns the path.
pub fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).expect("write token file");
    path
}

/// The base64 bodies of the PEM blocks in `pem`, one string per block: two PEM texts hold the
/// same certificates iff these are equal, whatever their line endings or wrapping.
pub fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            current = Some(String::new());
        } else if line.starts_with("-----END") {
            blocks.extend(current.take());
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    blocks
}

/// A client-only proxy `productpage` and a sidecar `reviews` in front of an
/// in-process [`Backend`](crate::Backend), both with identities: the client
/// sidecar carries every request for `reviews` over one shared HTTP/2 mTLS
/// connection. No PeerAuthentication, so `reviews`' inbound port is
/// PERMISSIVE.
pub struct SidecarPair {
    _mesh: Mesh,
    _tokens: Tokens,
    /// The app behind `reviews`.
    pub app: crate::Backend,
    /// `reviews`' sidecar.
    pub server: Proxy,
    /// `productpage`'s client-only proxy.
    pub client: Proxy,
}

impl SidecarPair {
    /// The cluster name suffix of `reviews` (every subset).
    pub const REVIEWS: &'static str = "|reviews.default.svc.cluster.local";

    /// Starts the pair with extra flags for each proxy, and waits until the
    /// client knows `reviews`' endpoint.
    pub async fn start(server_args: &[(&str, &str)], client_args: &[(&str, &str)]) -> Self {
        let mesh = Mesh::start(&[]).await;
        let tokens = Tokens::new();
        let app = crate::Backend::start("reviews").await;
        let spec = server_args.iter().fold(
            ProxySpec::sidecar("reviews", "v1", app.addr),
            |s, (f, v)| s.arg(f, v),
        );
        let server = mesh
            .proxy(&with_identity(spec, &mesh, &tokens, "reviews"))
            .await;
        let spec = client_args
            .iter()
            .fold(ProxySpec::client("productpage"), |s, (f, v)| s.arg(f, v));
        let client = mesh
            .proxy(&with_identity(spec, &mesh, &tokens, "productpage"))
            .await;
        client
            .wait_endpoints(Self::REVIEWS, 1, Duration::from_secs(15))
            .await;
        Self {
            _mesh: mesh,
            _tokens: tokens,
            app,
            server,
            client,
        }
    }

    /// `reviews`' inbound address.
    pub fn inbound(&self) -> SocketAddr {
        self.server.inbound.expect("reviews has an inbound port")
    }

    /// Both proxies' recent stderr, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "client stderr:\n{}\nserver stderr:\n{}",
            self.client.process.stderr_tail(),
            self.server.process.stderr_tail()
        )
    }
}
