//! The monitoring port (15014 by default, as istiod's): `GET /metrics`
//! (Prometheus, OpenMetrics text) and `GET /debug/proxies` (JSON, one
//! [`ProxyStatus`](crate::status::ProxyStatus) per connected proxy, as
//! `remora proxy-status` reads it).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::metrics::{self, Metrics};
use crate::status::ProxyTracker;

/// The path of the proxy status endpoint.
pub const PROXIES_PATH: &str = "/debug/proxies";

/// How long open requests may take to finish after shutdown begins.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What the monitoring endpoints read.
#[derive(Debug, Clone)]
pub struct Monitoring {
    /// Served by `/metrics`.
    pub metrics: Metrics,
    /// Served by `/debug/proxies`.
    pub proxies: ProxyTracker,
}

/// Serves the monitoring endpoints on `listener` until `shutdown`
/// completes, then lets open requests finish for a moment.
pub async fn serve(
    listener: TcpListener,
    monitoring: Monitoring,
    shutdown: impl Future<Output = ()> + Send,
) {
    let builder = {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1().timer(TokioTimer::new());
        b
    };
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "monitoring accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let monitoring = monitoring.clone();
        let service = service_fn(move |req| {
            let reply = route(&monitoring, req.method(), req.uri().path());
            async move { Ok::<_, Infallible>(reply) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "monitoring connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIME, graceful.shutdown()).await;
}

/// Answers one request.
fn route(monitoring: &Monitoring, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "monitoring endpoints answer GET only\n".into(),
        );
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            monitoring.metrics.encode(),
        ),
        PROXIES_PATH => {
            let proxies = monitoring.proxies.list(Instant::now());
            match serde_json::to_string(&proxies) {
                Ok(json) => reply(StatusCode::OK, "application/json", json),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("cannot encode the proxy status: {e}\n"),
                ),
            }
        }
        other => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no endpoint {other}; try /metrics or {PROXIES_PATH}\n"),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

#[cfg(test)]
mod tests;
