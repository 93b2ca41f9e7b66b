//! Listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 (prior
//! knowledge) on each with hyper-util's auto builder.

pub mod inbound;
pub mod outbound;

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
use tokio::net::TcpListener;
use tokio::sync::watch;

use bytes::Bytes;
use http_body::Body;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serves `handler` on every connection accepted from `listener` until
/// `shutdown` turns true, then drains open connections for up to
/// [`DRAIN_TIME`].
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = service_fn(move |req| {
            let fut = handler(Arc::clone(&state), req);
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
    let _ = tokio::time::timeout(DRAIN_TIME, graceful.shutdown()).await;
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
