//! Listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 (prior
//! knowledge) on each with hyper-util's auto builder. The inbound listener
//! adds TLS per PeerAuthentication ([`serve_inbound`]).

mod accept;
pub mod capture;
pub mod detect;
pub mod dst_port;
pub mod inbound;
pub mod orig_dst;
pub mod orig_proto;
pub mod outbound;
pub mod tcp;
pub mod tunnel;

pub use accept::{HANDSHAKE_TIMEOUT, Handshake, handshake_for, serve_inbound};
pub use capture::{CaptureSettings, serve_outbound};

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use bytes::Bytes;
use http_body::Body;

use crate::limits::HeaderLimits;

/// Serves `handler` on every connection accepted from `listener` until
/// `shutdown` turns true, then closes the listener (new connections are
/// refused) and drains the open ones: idle ones close, HTTP/1.1 ones close
/// after the response in flight (`Connection: close`), HTTP/2 ones get a
/// GOAWAY. Resolves once all are closed; the caller bounds the wait
/// (`--drain-duration`, [`crate::lifecycle`]).
pub async fn serve<S, F, B>(
    listener: TcpListener,
    state: Arc<S>,
    handler: fn(Arc<S>, Request<Incoming>) -> F,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = http_builder();
    let graceful = GracefulShutdown::new();
    while let Some(stream) = next_connection(&listener, &mut shutdown).await {
        let state = Arc::clone(&state);
        let service = service_fn(move |req| {
            // Boxed once here rather than moved whole into hyper's slot:
            // the request path's future is a few KiB.
            let fut = Box::pin(handler(Arc::clone(&state), req));
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The HTTP server every listener uses: HTTP/1.1 with keep-alive and
/// HTTP/2, told apart by the HTTP/2 preface.
///
/// Request heads are capped per [`crate::limits::headers`] with room to
/// spare: a head over the limit but under the cap reaches the handler,
/// which refuses it with 431 and a reason; hyper refuses what is over the
/// cap (431 without a body over HTTP/1.1, a 431 or a reset on the h2
/// stream), and never ends an h2 connection for a head the check would
/// have let through.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let limits = crate::limits::headers();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut h1 = builder.http1();
    h1.timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(HeaderLimits::h1_buf_size(limits.request_bytes));
    if let Some(max) = limits.h1_max_headers() {
        h1.max_headers(max);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.h2_list_size(limits.request_bytes));
    builder
}

/// The next accepted connection (no Nagle), or `None` once `shutdown`
/// turns true.
async fn next_connection(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<TcpStream> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(shutdown) => return None,
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
