//! One request's span, named and annotated per the OpenTelemetry HTTP
//! semantic conventions, plus Remora's own `remora.*` attributes.

use std::borrow::Cow;
use std::net::SocketAddr;

use http::header::HeaderValue;
use http::{HeaderMap, Method, Uri, Version};
use opentelemetry::trace::{Span as _, SpanId, Status, TraceId};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::Span as SdkSpan;

/// Attribute keys: OpenTelemetry HTTP semantic conventions (stable), then
/// Remora's.
pub mod attr {
    /// `GET`, `POST`, …; `_OTHER` for a method outside RFC 9110.
    pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
    /// The method as sent, when it is `_OTHER`.
    pub(crate) const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
    /// The request path, without the query.
    pub const URL_PATH: &str = "url.path";
    /// The matched route: low cardinality.
    pub const HTTP_ROUTE: &str = "http.route";
    /// The response status.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// The host the request named (Host or `:authority`).
    pub const SERVER_ADDRESS: &str = "server.address";
    /// The port the request named, when it named one.
    pub const SERVER_PORT: &str = "server.port";
    /// Server span: the caller's address; client span: the upstream's.
    pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
    /// The port beside [`NETWORK_PEER_ADDRESS`].
    pub const NETWORK_PEER_PORT: &str = "network.peer.port";
    /// `1.1` or `2`.
    pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
    /// The `User-Agent` header.
    pub(crate) const USER_AGENT_ORIGINAL: &str = "user_agent.original";
    /// The failure class, or the status code of a failed response.
    pub const ERROR_TYPE: &str = "error.type";
    /// The request's `x-request-id`.
    pub(crate) const HTTP_REQUEST_HEADER_X_REQUEST_ID: &str = "http.request.header.x-request-id";
    /// Client span: the destination service (as Zipkin and Jaeger read it).
    pub const PEER_SERVICE: &str = "peer.service";
    /// The destination service the route picked.
    pub const REMORA_DESTINATION_SERVICE: &str = "remora.destination.service";
    /// The destination subset, when the route named one.
    pub const REMORA_DESTINATION_SUBSET: &str = "remora.destination.subset";
    /// How many retries the request took.
    pub const REMORA_RETRIES: &str = "remora.retries";
    /// The peer's SPIFFE ID, from its mTLS certificate.
    pub const REMORA_PEER_IDENTITY: &str = "remora.peer.identity";
    /// Retry event: the attempt number (1 for the first retry).
    pub(crate) const REMORA_RETRY_ATTEMPT: &str = "remora.retry.attempt";
    /// Retry event: why the previous try was retried.
    pub(crate) const REMORA_RETRY_REASON: &str = "remora.retry.reason";
    /// The name of a retry event.
    pub const RETRY_EVENT: &str = "retry";
}

/// What a span needs to know about the request, borrowed from its head.
/// Built with disjoint borrows of `Parts` so that the headers can be
/// rewritten meanwhile:
///
/// ```ignore
/// let info = RequestInfo::new(&parts.method, &parts.uri).version(parts.version);
/// let span = tracer.start_server(&mut parts.headers, &info);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI: its path, and its authority when it has one (else
    /// the `Host` header is read).
    pub uri: &'a Uri,
    /// The HTTP version the request arrived in.
    pub version: Option<Version>,
    /// The caller's address: `network.peer.*` of a server span (a client
    /// span's peer is its upstream, from [`RequestSpan::set_upstream`]).
    pub peer: Option<SocketAddr>,
}

impl<'a> RequestInfo<'a> {
    /// The method and URI of a request.
    pub fn new(method: &'a Method, uri: &'a Uri) -> Self {
        Self {
            method,
            uri,
            version: None,
            peer: None,
        }
    }

    /// With the HTTP version.
    pub fn version(self, version: Version) -> Self {
        Self {
            version: Some(version),
            ..self
        }
    }

    /// With the caller's address.
    pub fn peer(self, peer: SocketAddr) -> Self {
        Self {
            peer: Some(peer),
            ..self
        }
    }
}

/// Which side of the proxy the span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Inbound: SERVER.
    Server,
    /// Outbound: CLIENT.
    Client,
}

/// One request's span. Holds an SDK span only while the request is traced
/// (sampled) and unfinished; otherwise every setter returns at once.
///
/// Dropped unfinished (the request was cancelled), the span ends with
/// `error.type = cancelled`.
#[derive(Debug)]
pub struct RequestSpan {
    /// Boxed: the SDK span is large and this lives in every request's
    /// future; the box is only made for sampled requests.
    span: Option<Box<SdkSpan>>,
    side: Side,
    method: &'static str,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    sampled: bool,
    request_id: HeaderValue,
    retries: u32,
    /// The last upstream tried, recorded at finish (the SDK keeps every
    /// value set for a key, so per-try values wait here).
    upstream: Option<String>,
}

impl RequestSpan {
    /// A span that records nothing: tracing is off or the request is not
    /// sampled. `trace_id` and `span_id` still say what was propagated.
    pub(crate) fn untraced(
        side: Side,
        trace_id: Option<TraceId>,
        span_id: Option<SpanId>,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            span: None,
            side,
            method: "",
            trace_id,
            span_id,
            sampled: false,
            request_id,
            retries: 0,
            upstream: None,
        }
    }

    /// A recording span, annotated with what the request head says.
    pub(crate) fn recording(
        mut span: SdkSpan,
        side: Side,
        info: &RequestInfo<'_>,
        headers: &HeaderMap,
        request_id: HeaderValue,
    ) -> Self {
        let context = span.span_context();
        let (trace_id, span_id) = (context.trace_id(), context.span_id());
        let (method, original) = method_name(info.method);
        let mut attributes = Vec::with_capacity(10);
        attributes.push(KeyValue::new(attr::HTTP_REQUEST_METHOD, method));
        if original {
            attributes.push(KeyValue::new(
                attr::HTTP_REQUEST_METHOD_ORIGINAL,
                info.method.as_str().to_owned(),
            ));
        }
        attributes.push(KeyValue::new(attr::URL_PATH, info.uri.path().to_owned()));
        let authority = info.uri.authority().map(|a| a.as_str()).or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        if let Some(authority) = authority {
            let host = crate::http::host_of(authority);
            attributes.push(KeyValue::new(attr::SERVER_ADDRESS, host.to_owned()));
            if let Some(port) = authority
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
            {
                attributes.push(KeyValue::new(attr::SERVER_PORT, i64::from(port)));
            }
        }
        // On a client span the peer is the upstream (`set_upstream`).
        if let Some(peer) = info.peer.filter(|_| side == Side::Server) {
            attributes.push(KeyValue::new(
                attr::NETWORK_PEER_ADDRESS,
                peer.ip().to_string(),
            ));
            attributes.push(KeyValue::new(
                attr::NETWORK_PEER_PORT,
                i64::from(peer.port()),
            ));
        }
        if let Some(version) = info.version.and_then(protocol_version) {
            attributes.push(KeyValue::new(attr::NETWORK_PROTOCOL_VERSION, version));
        }
        if side == Side::Server
            && let Some(agent) = headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
        {
            attributes.push(KeyValue::new(attr::USER_AGENT_ORIGINAL, agent.to_owned()));
        }
        if let Ok(id) = request_id.to_str() {
            attributes.push(KeyValue::new(
                attr::HTTP_REQUEST_HEADER_X_REQUEST_ID,
                Value::Array(Array::String(vec![StringValue::from(id.to_owned())])),
            ));
        }
        span.set_attributes(attributes);
        Self {
            span: Some(Box::new(span)),
            side,
            method,
            trace_id: Some(trace_id),
            span_id: Some(span_id),
            sampled: true,
            request_id,
            retries: 0,
            upstream: None,
        }
    }

    /// The route that matched (call once): names the span
    /// `{method} {route}` and sets `http.route`. Pass a low-cardinality name (the route's name or path
    /// template), never the raw path.
    pub fn set_route(&mut self, route: &str) {
        if let Some(span) = &mut self.span {
            let method = if self.method == "_OTHER" {
                "HTTP"
            } else {
                self.method
            };
            span.update_name(format!("{method} {route}"));
            span.set_attribute(KeyValue::new(attr::HTTP_ROUTE, route.to_owned()));
        }
    }

    /// The upstream endpoint a try went to (`ip:port`, or any address
    /// text); call it on every try, the last one is recorded.
    pub fn set_upstream(&mut self, address: &str) {
        if self.span.is_some() {
            let upstream = self.upstream.get_or_insert_with(String::new);
            upstream.clear();
            upstream.push_str(address);
        }
    }

    /// The destination the route picked (call once); an empty subset is
    /// left out. On a
    /// client span the service is also `peer.service`.
    pub fn set_destination(&mut self, service: &str, subset: &str) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(
                attr::REMORA_DESTINATION_SERVICE,
                service.to_owned(),
            ));
            if !subset.is_empty() {
                span.set_attribute(KeyValue::new(
                    attr::REMORA_DESTINATION_SUBSET,
                    subset.to_owned(),
                ));
            }
            if self.side == Side::Client {
                span.set_attribute(KeyValue::new(attr::PEER_SERVICE, service.to_owned()));
            }
        }
    }

    /// A retry is about to be sent: a `retry` event with the attempt number
    /// (1 for the first retry) and why (`503`, `reset`, `connect-failure`,
    /// …). `remora.retries` counts them at [`RequestSpan::finish`].
    pub fn add_retry(&mut self, attempt: u32, reason: &str) {
        self.retries += 1;
        if let Some(span) = &mut self.span {
            span.add_event(
                attr::RETRY_EVENT,
                vec![
                    KeyValue::new(attr::REMORA_RETRY_ATTEMPT, i64::from(attempt)),
                    KeyValue::new(attr::REMORA_RETRY_REASON, reason.to_owned()),
                ],
            );
        }
    }

    /// The peer's SPIFFE ID, once mTLS has verified it (call once).
    pub fn set_peer_identity(&mut self, spiffe_id: &str) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(
                attr::REMORA_PEER_IDENTITY,
                spiffe_id.to_owned(),
            ));
        }
    }

    /// Ends the span with the status sent downstream. `error` is a short,
    /// low-cardinality failure class (`timeout`, `connect_failure`,
    /// `no_route`, …) when the proxy failed the request; it becomes
    /// `error.type` and the span's error status. Without it, a 5xx (and on
    /// client spans a 4xx) is an error whose type is the status code, per
    /// the semantic conventions. Calls after the first do nothing.
    pub fn finish(&mut self, status: u16, error: Option<&str>) {
        let Some(mut span) = self.span.take() else {
            return;
        };
        span.set_attribute(KeyValue::new(
            attr::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
        if let Some(upstream) = self.upstream.take() {
            match upstream.parse::<SocketAddr>() {
                Ok(addr) => span.set_attributes([
                    KeyValue::new(attr::NETWORK_PEER_ADDRESS, addr.ip().to_string()),
                    KeyValue::new(attr::NETWORK_PEER_PORT, i64::from(addr.port())),
                ]),
                Err(_) => span.set_attribute(KeyValue::new(attr::NETWORK_PEER_ADDRESS, upstream)),
            }
        }
        if self.side == Side::Client || self.retries > 0 {
            span.set_attribute(KeyValue::new(attr::REMORA_RETRIES, i64::from(self.retries)));
        }
        let failed_status = status >= 500 || (self.side == Side::Client && status >= 400);
        let error_type: Option<Cow<'_, str>> = match error {
            Some(e) => Some(e.into()),
            None if failed_status => Some(status.to_string().into()),
            None => None,
        };
        if let Some(error_type) = error_type {
            span.set_status(Status::error(error.unwrap_or("").to_owned()));
            span.set_attribute(KeyValue::new(attr::ERROR_TYPE, error_type.into_owned()));
        }
        span.end();
    }

    /// The trace id in hex, for access logs: present whenever the request
    /// carries a trace context (sampled or not), `None` only when tracing
    /// is off and the request came without one.
    pub fn trace_id(&self) -> Option<String> {
        self.trace_id.map(|id| id.to_string())
    }

    /// This hop's span id in hex (the parent the next hop sees); `None`
    /// when tracing is off.
    pub fn span_id(&self) -> Option<String> {
        self.span_id.map(|id| id.to_string())
    }

    /// Whether this span is recorded and exported.
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// The request's `x-request-id`, kept or made at the first proxy.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.set_status(Status::error("request cancelled before a response"));
            span.set_attribute(KeyValue::new(attr::ERROR_TYPE, "cancelled"));
            span.end();
        }
    }
}

/// The span name and `http.request.method`: one of RFC 9110's methods or
/// PATCH, else `_OTHER` (span name `HTTP`) with the original kept aside.
/// Returns whether the method was `_OTHER`.
pub(crate) fn method_name(method: &Method) -> (&'static str, bool) {
    let known = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => return ("_OTHER", true),
    };
    (known, false)
}

/// The span name before a route is known.
pub(crate) fn initial_name(method: &Method) -> &'static str {
    match method_name(method) {
        (_, true) => "HTTP",
        (name, false) => name,
    }
}

fn protocol_version(version: Version) -> Option<&'static str> {
    match version {
        Version::HTTP_10 => Some("1.0"),
        Version::HTTP_11 => Some("1.1"),
        Version::HTTP_2 => Some("2"),
        Version::HTTP_3 => Some("3"),
        _ => None,
    }
}
