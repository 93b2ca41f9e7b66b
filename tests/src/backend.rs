//! An in-process HTTP app on `127.0.0.1:0` (HTTP/1.1 and h2c), standing in
//! for a workload behind a sidecar when a test needs exact control.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running app. Every response carries `x-backend: <name>` and
/// `x-http-version: <version the app received>`; the body is:
///
/// - `/status/<code>`: that status, body `<name>\n`;
/// - `/delay/<ms>`: waits, then `<name>\n`;
/// - `/echo`: `<name> <METHOD> <path?query> <HTTP version>\n` followed by the
///   request headers, one `name: value` per line;
/// - anything else: `<name>\n`.
///
/// Stops accepting when dropped (the test's runtime ends the rest).
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Backend {
    /// Starts an app that calls itself `name` (e.g. `v1`).
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let name: Arc<str> = name.into();
        let counter = Arc::clone(&hits);
        let accept = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            while let Ok((stream, _)) = listener.accept().await {
                let name = Arc::clone(&name);
                let counter = Arc::clone(&counter);
                let service = service_fn(move |req| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    answer(Arc::clone(&name), req)
                });
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                tokio::spawn(conn);
            }
        });
        Self { addr, hits, accept }
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn answer(
    name: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut status = StatusCode::OK;
    let mut body = format!("{name}\n");
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.parse::<u64>().unwrap_or(0).min(30_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if path == "/echo" {
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        body = format!("{name} {} {target} {:?}\n", req.method(), req.version());
        for (k, v) in req.headers() {
            body.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
    }
    let resp = Response::builder()
        .status(status)
        .header("x-backend", &*name)
        .header("x-http-version", format!("{:?}", req.version()))
        .body(Full::new(Bytes::from(body)))
        .expect("valid response");
    Ok(resp)
}
