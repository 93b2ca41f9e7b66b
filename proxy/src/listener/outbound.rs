//! The outbound path: the app sends plain HTTP naming a service in its Host
//! header; the proxy routes it to an endpoint of that service.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::request::Parts;
use http::{Request, Response, Version, header};
use http_body_util::Either;
use hyper::body::Incoming;

use super::captured::{CaptureSettings, Captured};
use super::check_request_target;
use super::orig_proto::absolute_form;
use super::tcp::{BLACKHOLE, PASSTHROUGH};
use crate::config::{Cluster, OutboundPolicy, RuntimeConfig};
use crate::error::ProxyError;
use crate::http::dst_port;
use crate::http::{APP_UNREACHED, ProxyBody, authority, host_of, port_of, strip_hop_by_hop};
use crate::listener::observe::{Observed, Record};
use crate::retry::{Attempts, Retries, RouteTimeout, Upstream};
use crate::telemetry::stats;
use crate::telemetry::{Direction, Telemetry};
use crate::upstream::{Endpoint, RequestBody, Transport, UpstreamBody, UpstreamError};
use remora_route::fault::Percentage;

/// What the outbound path reads: the current config and the retry state.
#[derive(Debug)]
pub struct Outbound {
    /// Swapped whole by discovery; each request loads it once.
    pub config: Arc<ArcSwap<RuntimeConfig>>,
    /// Retry budgets (one per destination service, across config versions)
    /// and the replay bound for request bodies.
    pub retries: Retries,
    /// Access log (and, with them, the other observers).
    pub telemetry: Arc<Telemetry>,
    /// How captured connections are told apart and forwarded.
    pub capture: CaptureSettings,
}

/// Handles one request. The whole outbound path, outermost first:
///
/// 1. refuse a request whose headers are over the limit with 431 and a
///    reason ([`crate::limits`]): here, where the request enters the mesh,
///    rather than on the connection it would share with other requests;
/// 2. hop-by-hop headers go, before the proxy reads or sets any header, so
///    a `Connection` header can remove only what the app sent (and never
///    `Host`);
/// 3. load the config once: the request finishes on it even if a new one
///    is swapped in meanwhile;
/// 4. make the request target unambiguous: one `Host` that agrees with an
///    absolute-form target or `:authority`, the path normalised per the
///    mesh's `pathNormalization` (400 otherwise; [`check_request_target`]).
///    Routing sees that Host and path, and the upstream gets them;
/// 5. find the virtual host by that authority (a port in it must be one
///    the service declares, when it declares any); on a
///    captured connection, else by the original destination's IP when it
///    is a mesh endpoint, else the destination is outside the mesh:
///    forwarded to it untouched (`ALLOW_ANY`) or refused with 502
///    (`REGISTRY_ONLY`); 404 if unknown on the explicit path;
/// 6. take the first route whose matches hold (404 if none);
/// 7. pick a destination by smooth weighted round robin (an aborted
///    request is labelled with it too);
/// 8. apply the route's `fault`: delay and abort, each by its percentage;
/// 9. choose the HTTP version upstream: the destination's declared port
///    protocol, its DestinationRule's `h2UpgradePolicy` or
///    `useClientProtocol`, else the one the app used
///    ([`Cluster::upstream_version`]);
/// 10. try it, within the route's `timeout` (504 when it fires), in the
///     attempt loop ([`crate::retry::attempts`]): pick an endpoint per the
///     load balancer, leaving out ejected hosts and, on a retry, hosts
///     that already failed this request; send over a pooled connection in
///     that version or, to an mTLS endpoint, over the mTLS h2 connection
///     (HTTP/1.1 marked with `remora-orig-proto`), bounded by
///     `perTryTimeout`; record the outcome for outlier detection; retry
///     while the policy, `maxRetries` and the retry budget allow, after a
///     jittered backoff;
/// 11. refuse a response whose headers are over the limit with 502.
pub async fn handle(outbound: Arc<Outbound>, req: Request<Incoming>) -> Response<Observed> {
    let (mut parts, body) = req.into_parts();
    // Before the telemetry adds its headers: the app's request is measured.
    let checked = crate::limits::headers().check_request(&parts, false);
    strip_hop_by_hop(&mut parts.headers);
    let mut record = Record::start(
        Arc::clone(&outbound.telemetry),
        Direction::Outbound,
        &mut parts,
    );
    let result = match checked {
        Ok(()) => route_and_send(&outbound, parts, body, &mut record).await,
        Err(e) => Err(ProxyError::RequestHeadersTooLarge(e)),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(error = %e, "outbound request failed");
            record.fail(e.flag());
            e.into_response()
        }
    };
    record.observe(resp)
}

async fn route_and_send(
    outbound: &Outbound,
    mut parts: Parts,
    body: Incoming,
    record: &mut Record,
) -> Result<Response<ProxyBody>, ProxyError> {
    let config = outbound.config.load_full();
    check_request_target(&mut parts, config.path_normalization())?;
    // Only this sidecar says which app port a request is for.
    dst_port::strip(&mut parts.headers);
    let captured_port = parts
        .extensions
        .get::<Arc<Captured>>()
        .map(|c| c.dst.port());
    let authority = authority(&parts).ok_or(ProxyError::NoHost)?;
    let host = host_of(authority).to_ascii_lowercase();
    let port = port_of(authority);
    let vhost = match config
        .virtual_host(&host)
        .filter(|vhost| vhost.serves_port(port))
    {
        Some(vhost) => vhost,
        None => {
            let Some(captured) = parts.extensions.get::<Arc<Captured>>().cloned() else {
                return Err(ProxyError::UnknownHost {
                    host: authority.to_ascii_lowercase(),
                });
            };
            let capture = config.capture();
            let by_ip = capture
                .at(captured.dst.ip())
                .and_then(|known| config.virtual_host(known.cluster.service()));
            match (by_ip, capture.policy()) {
                (Some(vhost), _) => vhost,
                (None, OutboundPolicy::RegistryOnly) => {
                    record.set_outside_mesh(BLACKHOLE);
                    return Err(ProxyError::OutsideMesh {
                        host,
                        destination: captured.dst,
                    });
                }
                (None, OutboundPolicy::AllowAny) => {
                    drop(config);
                    return passthrough(&captured, parts, body, record).await;
                }
            }
        }
    };
    let route = vhost
        .route(&parts)
        .ok_or_else(|| ProxyError::NoRouteMatched {
            service: vhost.name().to_owned(),
        })?;
    record.set_route(route.name());
    // Picked before the fault: an aborted request is labelled with the
    // destination it would have gone to (Envoy picks it with the route).
    let cluster = route.pick_destination();
    record.set_cluster(cluster);
    let fault = route.fault();
    if fault.is_active() {
        if let Some(delay) = fault.delay(Percentage::roll()) {
            stats::FAULT_DELAYS.inc();
            record.flag("DI");
            tokio::time::sleep(delay).await;
        }
        if let Some(abort) = fault.abort(Percentage::roll()) {
            stats::FAULT_ABORTS.inc();
            record.flag("FI");
            return Ok(crate::http::abort_reply(abort));
        }
    }
    // The destination port's protocol (or its DestinationRule) decides the
    // HTTP version upstream, not the client's: an h2 client of an
    // HTTP/1.1-only service is served in HTTP/1.1.
    parts.version = cluster.upstream_version(captured_port.or(port), parts.version);
    prepare_upstream_request(&mut parts)?;
    let budget = outbound.retries.budgets.for_service(vhost.name());
    let attempts = Attempts {
        cluster,
        policy: route.retry(),
        budget: &budget,
        retries: &outbound.retries,
        route: route.name(),
        timeout: route.timeout().map(RouteTimeout::from_now),
    };
    let mut upstream = ToCluster {
        cluster,
        record: &mut *record,
        dst_port: captured_port,
    };
    let mut resp = attempts.run(parts, body, &mut upstream).await?;
    if let Some(timeout) = attempts.timeout {
        // As Envoy's, the route timeout covers the whole response, the
        // body too.
        resp.body_mut().expire_at(timeout.at, timeout.after);
    }
    crate::limits::headers()
        .check_response(resp.headers(), record.mtls())
        .map_err(ProxyError::ResponseHeadersTooLarge)?;
    Ok(into_downstream_response(resp))
}

/// A captured request for a destination outside the mesh, sent to it as
/// it came (Istio's `PassthroughCluster`): no route, retry or mTLS.
async fn passthrough(
    captured: &Captured,
    mut parts: Parts,
    body: Incoming,
    record: &mut Record,
) -> Result<Response<ProxyBody>, ProxyError> {
    record.set_outside_mesh(PASSTHROUGH);
    let endpoint = captured.passthrough();
    record.set_upstream(endpoint.address());
    prepare_upstream_request(&mut parts)?;
    let req = Request::from_parts(parts, Either::Left(body));
    let resp = endpoint
        .send(
            req,
            endpoint.start_request(),
            &crate::upstream::PoolSettings::default(),
            Transport::Plaintext,
        )
        .await?;
    Ok(into_downstream_response(resp))
}

/// How the outbound path sends a try: over a pooled connection or, to an
/// mTLS endpoint, over the mTLS h2 connection (HTTP/1.1 marked with
/// `remora-orig-proto`, a captured request's port with
/// `x-remora-dst-port`); the access log and span hear of each try.
struct ToCluster<'a> {
    cluster: &'a Cluster,
    record: &'a mut Record,
    /// A captured request's original port, told to a peer sidecar.
    dst_port: Option<u16>,
}

impl Upstream<Incoming> for ToCluster<'_> {
    type Body = UpstreamBody;

    async fn send(
        &mut self,
        endpoint: &Arc<Endpoint>,
        mut parts: Parts,
        body: RequestBody,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        self.record.set_upstream(endpoint.address());
        let transport = self.cluster.transport(endpoint);
        let mtls = matches!(transport, Transport::Mtls(_));
        self.record.set_mtls(mtls);
        if mtls {
            super::orig_proto::encode(&mut parts)?;
            if let Some(port) = self.dst_port {
                dst_port::mark(&mut parts.headers, port);
            }
        }
        let req = Request::from_parts(parts, body);
        let active = endpoint.start_request();
        let resp = endpoint
            .send(req, active, self.cluster.pool(), transport)
            .await?;
        // The peer sidecar could not reach its app: a connect failure of
        // that endpoint. Only an mTLS peer is known to be a sidecar.
        if mtls && resp.headers().contains_key(&APP_UNREACHED) {
            return Err(ProxyError::Upstream(UpstreamError::AppUnreached {
                address: endpoint.address().to_owned(),
            }));
        }
        Ok(resp)
    }

    fn retrying(&mut self, n: u32, reason: &str) {
        self.record.add_retry(n, reason);
    }

    fn flag(&mut self, flag: &'static str) {
        self.record.flag(flag);
    }
}

/// Makes the request fit for the next hop in `parts.version`, whatever
/// version it came in: HTTP/1.1 requests go out in origin form with a Host
/// header; h2 in absolute form, the authority as `:authority` (from the
/// Host of a request that came in HTTP/1.1). Hop-by-hop headers were
/// stripped when the request arrived, and the target checked: the Host it
/// keeps or sets is the authority the request was routed or authorized on.
pub(crate) fn prepare_upstream_request(parts: &mut http::request::Parts) -> Result<(), ProxyError> {
    if parts.version == Version::HTTP_2 {
        if parts.uri.authority().is_none() {
            absolute_form(parts)?;
        }
    } else {
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
    // A mark between sidecars, never for the app (a plaintext peer's is
    // not believed, and goes too).
    parts.headers.remove(&APP_UNREACHED);
    Response::from_parts(parts, Either::Left(body))
}
