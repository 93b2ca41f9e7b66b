//! Clients that send exactly the bytes a test writes: HTTP/1.1 over a plain
//! TCP connection, or over mTLS with `openssl s_client` and a workload
//! certificate minted from the mesh CA's files. HTTP client libraries
//! normalise away what these tests need to send: two `Host` headers, an
//! absolute-form target that disagrees with `Host`, `..` and `\` in paths.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::mesh::Mesh;

/// How long one exchange may take before the test fails.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of response read.
const MAX_RESPONSE: usize = 1 << 20;

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// The status code.
    pub status: u16,
    /// The status line and header lines, as received.
    pub head: String,
    /// The body (as text), `Content-Length` bytes of it.
    pub body: String,
}

/// The request line and headers of a GET of `target` with `headers`
/// (`"Name: value"` lines), ready to send.
pub fn get(target: &str, headers: &[&str]) -> String {
    let mut request = format!("GET {target} HTTP/1.1\r\n");
    for line in headers {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// Sends `request` as is over a new TCP connection to `addr` and reads one
/// response (its head, then `Content-Length` bytes of body, or up to EOF).
pub async fn send(addr: SocketAddr, request: &str) -> RawReply {
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(addr, request))
        .await
        .unwrap_or_else(|_| {
            panic!("no response from {addr} within {EXCHANGE_TIMEOUT:?} to {request:?}")
        })
}

async fn exchange(addr: SocketAddr, request: &str) -> RawReply {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(reply) = parse(&buf) {
            return reply;
        }
        assert!(buf.len() < MAX_RESPONSE, "response from {addr} too long");
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return parse_at_eof(&buf).unwrap_or_else(|| {
                    panic!("{addr} closed after {:?} to {request:?}", text(&buf))
                });
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A whole response in `buf` (head and `Content-Length` bytes), if there
/// is one yet.
fn parse(buf: &[u8]) -> Option<RawReply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = text(&buf[..end]);
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())?;
    let body = buf.get(end..end + length)?;
    Some(reply(head, body))
}

/// The response in `buf` once the peer closed: its body is what came.
fn parse_at_eof(buf: &[u8]) -> Option<RawReply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(reply(text(&buf[..end]), &buf[end..]))
}

fn reply(head: String, body: &[u8]) -> RawReply {
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    RawReply {
        status,
        head,
        body: text(body),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A certificate and key for `spiffe://cluster.local/ns/<namespace>/sa/<sa>`,
/// signed by `mesh`'s CA (its files in the data directory) with the
/// `openssl` command: what a workload holding a token would get.
#[derive(Debug)]
pub struct WorkloadCert {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl WorkloadCert {
    /// Mints one with `openssl req` and `openssl x509 -req`.
    pub async fn mint(mesh: &Mesh, namespace: &str, service_account: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("remora-cert-")
            .tempdir()
            .expect("temp dir");
        let key = dir.path().join("key.pem");
        let csr = dir.path().join("csr.pem");
        let cert = dir.path().join("cert.pem");
        let ext = dir.path().join("ext.cnf");
        std::fs::write(
            &ext,
            format!(
                "subjectAltName=critical,URI:spiffe://cluster.local/ns/{namespace}/sa/{service_account}\n\
                 basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyAgreement\n\
                 extendedKeyUsage=clientAuth,serverAuth\n"
            ),
        )
        .expect("write ext.cnf");
        let data = &mesh.control_plane.data_dir;
        openssl(&[
            "req".as_ref(),
            "-new".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-nodes".as_ref(),
            "-subj".as_ref(),
            "/O=remora-e2e".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
        ])
        .await;
        openssl(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            data.join("ca-cert.pem").as_os_str(),
            "-CAkey".as_ref(),
            data.join("ca-key.pem").as_os_str(),
            "-set_serial".as_ref(),
            "4242".as_ref(),
            "-days".as_ref(),
            "1".as_ref(),
            "-extfile".as_ref(),
            ext.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ])
        .await;
        Self {
            cert,
            key,
            _dir: dir,
        }
    }
}

async fn openssl(args: &[&std::ffi::OsStr]) {
    let out = tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("openssl hung")
    .expect("run openssl (Debian package `openssl`)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `request` as is over mTLS (TLS 1.3, ALPN `http/1.1`) to `addr`
/// with `cert`, and reads the response until the server closes: the
/// request should say `Connection: close`.
pub async fn send_mtls(
    addr: SocketAddr,
    cert: &WorkloadCert,
    ca: &Path,
    request: &str,
) -> RawReply {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(addr.to_string())
        .args(["-alpn", "http/1.1", "-ign_eof", "-tls1_3", "-cert"])
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run openssl (Debian package `openssl`)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(request.as_bytes())
        .await
        .expect("write the request to openssl");
    drop(stdin);
    let out = tokio::time::timeout(EXCHANGE_TIMEOUT, child.wait_with_output())
        .await
        .expect("openssl s_client hung")
        .expect("openssl s_client output");
    let stdout = &out.stdout;
    let start = stdout
        .windows(5)
        .position(|w| w == b"HTTP/")
        .unwrap_or_else(|| {
            panic!(
                "no HTTP response from {addr}: {}{}",
                text(stdout),
                text(&out.stderr)
            )
        });
    parse(&stdout[start..])
        .or_else(|| parse_at_eof(&stdout[start..]))
        .unwrap_or_else(|| panic!("no whole response from {addr}: {}", text(stdout)))
}
