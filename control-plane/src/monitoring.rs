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
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn monitoring() -> Monitoring {
        let metrics = Metrics::new();
        Monitoring {
            proxies: ProxyTracker::new(metrics.clone()),
            metrics,
        }
    }

    async fn body(resp: Response<Full<Bytes>>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn routes_answer_get_and_name_the_endpoints_otherwise() {
        let m = monitoring();
        let _proxy = m.proxies.track(
            &remora_proto::pb::Node {
                id: "a".into(),
                service: "reviews".into(),
                ..Default::default()
            },
            "",
        );

        let metrics = route(&m, &Method::GET, "/metrics");
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            metrics::CONTENT_TYPE
        );
        assert!(body(metrics).await.contains("remora_connected_proxies 1\n"));

        let proxies = route(&m, &Method::GET, PROXIES_PATH);
        assert_eq!(proxies.status(), StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body(proxies).await).unwrap();
        assert_eq!(json[0]["id"], "a");
        assert_eq!(json[0]["status"], "STALE");

        let missing = route(&m, &Method::GET, "/nope");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(body(missing).await.contains("/debug/proxies"));

        let post = route(&m, &Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
