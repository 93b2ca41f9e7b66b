//! The upstream every target forwards to: HTTP/1.1 and cleartext HTTP/2
//! (prior knowledge) on one port, answering every request with 200 and the
//! same 1 KiB body. Run as its own process (`remora-bench upstream`) so that
//! it can be pinned to the servers' core and its CPU time read apart.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The size of every response body.
pub const BODY_LEN: usize = 1024;

/// The response body: 1 KiB of printable bytes.
static BODY: [u8; BODY_LEN] = [b'x'; BODY_LEN];

/// Answers one request: 200, `content-type: text/plain`, the 1 KiB body.
fn answer(_req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(&BODY)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Binds `addr`, prints `{"event":"listening","addr":"..."}` on stdout and
/// serves until the process is stopped. Connection errors (a client that
/// goes away mid-request) end that connection only.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!(
        "{}",
        serde_json::json!({"event": "listening", "addr": local.to_string()})
    );
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors and the like: keep serving.
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(answer(req)) });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
