//! The health port (15021 by default, as Istio's): `GET /healthz/ready`
//! answers 200 once the proxy may serve ([`ConfigState::is_ready`]: it has
//! a config and, with mTLS, a valid certificate), else 503 with the reason.
//! Kubernetes readiness probes and load balancers point here. During the
//! drain on shutdown it answers 503 `draining` ([`crate::lifecycle`]), and
//! while an app that has answered once does not answer its probe, 503
//! `app not ready: <why>` ([`crate::app_health`]).

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::{ProxyBody, local_reply};
use crate::lifecycle::Lifecycle;
use crate::state::ConfigState;

/// What readiness depends on.
#[derive(Debug)]
pub struct Health {
    /// The config and certificate state.
    pub config: Arc<ConfigState>,
    /// Whether the proxy is draining.
    pub lifecycle: Arc<Lifecycle>,
}

/// The answer while the proxy drains.
pub(crate) const DRAINING: &str = "draining: the proxy is shutting down";

/// The readiness path.
pub(crate) const READY_PATH: &str = "/healthz/ready";

/// Answers one request on the health port.
pub async fn handle(state: Arc<Health>, req: Request<Incoming>) -> Response<ProxyBody> {
    answer(&state, req.method(), req.uri().path())
}

fn answer(state: &Health, method: &Method, path: &str) -> Response<ProxyBody> {
    if path != READY_PATH {
        return local_reply(
            StatusCode::NOT_FOUND,
            format!("no health endpoint {path}; try {READY_PATH}"),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        return local_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{READY_PATH} answers GET and HEAD only"),
        );
    }
    if state.lifecycle.is_draining() {
        return local_reply(StatusCode::SERVICE_UNAVAILABLE, DRAINING.into());
    }
    if let Some(reason) = state.config.not_ready_reason() {
        return local_reply(StatusCode::SERVICE_UNAVAILABLE, reason.into());
    }
    match state.config.app_not_ready_reason() {
        None => local_reply(StatusCode::OK, "ready".into()),
        Some(reason) => local_reply(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

#[cfg(test)]
mod tests;
