//! `remora-proxy wait-ready`: blocks until the sidecar answers 200 on
//! `/healthz/ready`, for an app's start to wait for its sidecar (Istio's
//! `holdApplicationUntilProxyStarts`, `pilot-agent wait`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::health::READY_PATH;
use crate::lifecycle::parse_duration;

/// How long one probe (connect, request, answer) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The most of a not-ready answer's body kept as the reason.
const MAX_REASON_BYTES: usize = 1024;

/// `remora-proxy wait-ready`.
#[derive(Debug, Clone, Args)]
pub struct WaitReadyArgs {
    /// The proxy's health port.
    #[arg(long, default_value = "127.0.0.1:15021")]
    pub health_addr: SocketAddr,
    /// Give up (exit 1) after this long, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The pause between two probes.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub period: Duration,
}

/// Probes until the proxy is ready; the error names the last reason it was
/// not (its 503 answer, or why it could not be asked).
pub async fn wait_ready(args: &WaitReadyArgs) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        let reason = match tokio::time::timeout(PROBE_TIMEOUT, probe(args.health_addr)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => reason,
            Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
        };
        if tokio::time::Instant::now() + args.period >= deadline {
            return Err(format!(
                "the proxy at {} was not ready within {:?}: {reason}",
                args.health_addr, args.timeout
            ));
        }
        tokio::time::sleep(args.period).await;
    }
}

/// One `GET /healthz/ready`: `Ok` on 200, else why not.
async fn probe(addr: SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(conn);
    let req = Request::get(READY_PATH)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    if status == StatusCode::OK {
        return Ok(());
    }
    let body = Limited::new(resp.into_body(), MAX_REASON_BYTES)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
        .unwrap_or_default();
    Err(format!("{status} {body}"))
}
