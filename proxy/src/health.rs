//! The health port (15021 by default, as Istio's): `GET /healthz/ready`
//! answers 200 once the proxy may serve ([`ConfigState::is_ready`]: it has
//! a config and, with mTLS, a valid certificate), else 503 with the reason.
//! Kubernetes readiness probes and load balancers point here.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::discovery::ConfigState;
use crate::http::{ProxyBody, local_reply};

/// The readiness path.
pub const READY_PATH: &str = "/healthz/ready";

/// Answers one request on the health port.
pub async fn handle(state: Arc<ConfigState>, req: Request<Incoming>) -> Response<ProxyBody> {
    answer(&state, req.method(), req.uri().path())
}

fn answer(state: &ConfigState, method: &Method, path: &str) -> Response<ProxyBody> {
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
    match state.not_ready_reason() {
        None => local_reply(StatusCode::OK, "ready".into()),
        Some(reason) => local_reply(StatusCode::SERVICE_UNAVAILABLE, reason.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_a_config_was_applied() {
        let state = ConfigState::default();
        let before = answer(&state, &Method::GET, READY_PATH);
        assert_eq!(before.status(), StatusCode::SERVICE_UNAVAILABLE);
        state.ready.send_replace(true);
        assert_eq!(
            answer(&state, &Method::GET, READY_PATH).status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&state, &Method::GET, "/healthz/live").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&state, &Method::POST, READY_PATH).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
