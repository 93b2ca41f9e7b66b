//! The outbound path: the app sends plain HTTP naming a service in its Host
//! header; the proxy routes it to an endpoint of that service.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response, Version, header};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::config::RuntimeConfig;
use crate::error::ProxyError;
use crate::http::{ProxyBody, authority, host_of, strip_hop_by_hop};

/// What the outbound path reads: the current config.
#[derive(Debug)]
pub struct Outbound {
    /// Swapped whole by discovery; each request loads it once.
    pub config: Arc<ArcSwap<RuntimeConfig>>,
}

/// Handles one request. The whole outbound path, outermost first:
///
/// 1. load the config once: the request finishes on it even if a new one
///    is swapped in meanwhile;
/// 2. find the virtual host by the Host header or `:authority` (port
///    ignored; 404 if unknown);
/// 3. take the first route whose matches hold (404 if none);
/// 4. pick a destination by smooth weighted round robin;
/// 5. pick an endpoint of that destination per its load balancer (503 if
///    it has none);
/// 6. send over a pooled connection in the protocol the app used
///    (HTTP/1.1 or h2), streaming bodies and trailers both ways.
pub async fn handle(outbound: Arc<Outbound>, req: Request<Incoming>) -> Response<ProxyBody> {
    match route_and_send(&outbound, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(error = %e, "outbound request failed");
            e.into_response()
        }
    }
}

async fn route_and_send(
    outbound: &Outbound,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let config = outbound.config.load_full();
    let (mut parts, body) = req.into_parts();
    let authority = authority(&parts).ok_or(ProxyError::NoHost)?;
    let host = host_of(authority).to_ascii_lowercase();
    let vhost = config
        .virtual_host(&host)
        .ok_or_else(|| ProxyError::UnknownHost { host: host.clone() })?;
    let route = vhost
        .route(&parts)
        .ok_or_else(|| ProxyError::NoRouteMatched {
            service: vhost.name().to_owned(),
        })?;
    let cluster = route.pick_cluster();
    let endpoint = cluster
        .pick_endpoint()
        .ok_or_else(|| ProxyError::NoEndpoint {
            service: cluster.service().to_owned(),
            subset: if cluster.subset().is_empty() {
                "(none)".to_owned()
            } else {
                cluster.subset().to_owned()
            },
        })?;
    let active = endpoint.start_request();
    prepare_upstream_request(&mut parts)?;
    let resp = endpoint
        .send(
            Request::from_parts(parts, Either::Left(body)),
            active,
            cluster.pool(),
        )
        .await?;
    Ok(into_downstream_response(resp))
}

/// Makes the request fit for the next hop: HTTP/1.1 requests go out in
/// origin form with a Host header; h2 keeps its absolute URI (`:authority`).
pub(super) fn prepare_upstream_request(parts: &mut http::request::Parts) -> Result<(), ProxyError> {
    strip_hop_by_hop(&mut parts.headers);
    if parts.version != Version::HTTP_2 {
        if !parts.headers.contains_key(header::HOST) {
            let host = parts.uri.authority().ok_or(ProxyError::NoHost)?.as_str();
            let value = header::HeaderValue::from_str(host).map_err(|_| ProxyError::NoHost)?;
            parts.headers.insert(header::HOST, value);
        }
        if parts.uri.authority().is_some() {
            let origin = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            parts.uri = origin.parse().map_err(|_| ProxyError::NoHost)?;
        }
        parts.version = Version::HTTP_11;
    }
    Ok(())
}

pub(super) fn into_downstream_response(
    resp: Response<crate::upstream::UpstreamBody>,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Either::Left(body))
}
