//! Looking at a proxy's workload identity from outside: its admin `/certs`, token files, and
//! PEM compared by content.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::client::{HttpClient, Protocol};

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
