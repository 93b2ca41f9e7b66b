//! The admin API (localhost only by default): `/ready`, `/config_dump`,
//! `/clusters` (endpoints with their load and ejection state), `/certs`,
//! `/stats`, `/logging`, and `POST /quitquitquit` (drain and exit, for
//! Jobs, as Istio's); and the stats port's `/stats/prometheus`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::health::DRAINING;
use crate::http::{ProxyBody, local_reply};
use crate::lifecycle::Lifecycle;
use crate::state::ConfigState;
use crate::telemetry::metrics::{self, PROMETHEUS_PATH};

/// What the admin API reads and acts on.
#[derive(Debug)]
pub struct Admin {
    /// The config and certificate state.
    pub config: Arc<ConfigState>,
    /// Draining, and the `/quitquitquit` trigger.
    pub lifecycle: Arc<Lifecycle>,
}

/// Answers one admin request.
pub async fn handle(admin: Arc<Admin>, req: Request<Incoming>) -> Response<ProxyBody> {
    if req.uri().path() == "/logging" {
        let (status, text) = crate::telemetry::log_level::admin(req.method(), req.uri().query());
        return local_reply(status, text);
    }
    if req.uri().path() == "/quitquitquit" {
        return quit(&admin.lifecycle, req.method());
    }
    let state = &admin.config;
    if req.method() != Method::GET {
        return local_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "admin endpoints answer GET only".into(),
        );
    }
    match req.uri().path() {
        "/ready" if admin.lifecycle.is_draining() => {
            local_reply(StatusCode::SERVICE_UNAVAILABLE, DRAINING.into())
        }
        "/ready" => match state.not_ready_reason() {
            None => local_reply(StatusCode::OK, "ready".into()),
            Some(reason) => local_reply(StatusCode::SERVICE_UNAVAILABLE, reason.into()),
        },
        "/certs" => {
            let certs = match state.identity.get() {
                Some(identity) => identity.certs_json(),
                None => crate::identity::no_identity_json(),
            };
            let mut resp = Response::new(Either::Right(Full::new(Bytes::from(certs.to_string()))));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        "/config_dump" => {
            let config = state.current.load();
            let dump =
                serde_json::json!({ "version": config.version(), "snapshot": config.snapshot() });
            let mut resp = Response::new(Either::Right(Full::new(Bytes::from(dump.to_string()))));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        "/clusters" => {
            let config = state.current.load();
            let now = std::time::Instant::now();
            let clusters: Vec<serde_json::Value> = config
                .clusters()
                .iter()
                .map(|c| {
                    let endpoints: Vec<serde_json::Value> = c
                        .endpoints()
                        .iter()
                        .map(|e| {
                            let left = e.ejection_left(now);
                            serde_json::json!({
                                "address": e.address(),
                                "active_requests": e.active_requests(),
                                "open_connections": e.open_connections(),
                                "ejected": left.is_some(),
                                "ejection_left_ms": left.map(|d| d.as_millis() as u64),
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "name": c.name(),
                        "service": c.service(),
                        "subset": c.subset(),
                        "outlier_detection": c.outlier().is_some(),
                        "endpoints": endpoints,
                    })
                })
                .collect();
            let body = serde_json::json!({ "version": config.version(), "clusters": clusters });
            let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        "/stats" => {
            let mut resp = local_reply(StatusCode::OK, String::new());
            *resp.body_mut() =
                Either::Right(Full::new(Bytes::from(metrics::global().encode_samples())));
            resp
        }
        other => local_reply(
            StatusCode::NOT_FOUND,
            format!(
                "no admin endpoint {other}; try /ready, /config_dump, /clusters, /certs, /stats, /logging or /quitquitquit"
            ),
        ),
    }
}

/// `POST /quitquitquit`: starts the drain, as SIGTERM does. Refused when the
/// admin port is not on loopback, where something outside the pod could
/// reach it.
fn quit(lifecycle: &Lifecycle, method: &Method) -> Response<ProxyBody> {
    if method != Method::POST {
        return local_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "/quitquitquit answers POST only".into(),
        );
    }
    if !lifecycle.quit_allowed() {
        return local_reply(
            StatusCode::FORBIDDEN,
            "/quitquitquit works only when the admin port listens on loopback (--admin)".into(),
        );
    }
    lifecycle.request_quit();
    local_reply(StatusCode::OK, "OK: draining, then exiting".into())
}

/// Answers one request on the stats port (15090 by default, as Envoy's):
/// `GET /stats/prometheus` is every metric in the Prometheus text format.
pub async fn handle_scrape(_: Arc<()>, req: Request<Incoming>) -> Response<ProxyBody> {
    scrape(req.method(), req.uri().path())
}

fn scrape(method: &Method, path: &str) -> Response<ProxyBody> {
    if path != PROMETHEUS_PATH {
        return local_reply(
            StatusCode::NOT_FOUND,
            format!("no stats endpoint {path}; try {PROMETHEUS_PATH}"),
        );
    }
    if method != Method::GET {
        return local_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{PROMETHEUS_PATH} answers GET only"),
        );
    }
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(
        metrics::global().encode(),
    ))));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    resp
}

#[cfg(test)]
mod tests;
