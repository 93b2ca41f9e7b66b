//! HTTP helpers shared by both directions: host extraction and the Host
//! check ([`host`]; the listeners check the whole request target with
//! [`check_request_target`](crate::listener::check_request_target)), the
//! app port carried between sidecars ([`dst_port`]), hop-by-hop headers,
//! and the body type the proxy answers with.

pub(crate) mod dst_port;
pub mod host;
pub(crate) use remora_route::host::{authority, host_of, port_of};
pub use remora_route::path;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use remora_route::fault::Abort;

use crate::upstream::UpstreamBody;

/// What the proxy answers with: the upstream's body or a local reply.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Set by a server sidecar on its own answer when it could not connect to
/// its app: the request never reached an app. The client sidecar takes it,
/// from an mTLS peer only, as a connect failure of that endpoint (retried
/// for any method, counted toward ejection) and never forwards it; the
/// server sidecar removes it from every answer of its app, so no app can
/// forge it.
pub(crate) const APP_UNREACHED: HeaderName = HeaderName::from_static("x-remora-app-unreached");

/// A reply made by the proxy itself, with a plain-text reason.
pub fn local_reply(status: StatusCode, reason: String) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(reason + "\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The local reply to a request that `fault.abort` aborts; the request
/// never reaches the upstream. A gRPC abort is a trailers-only response.
pub(crate) fn abort_reply(abort: Abort) -> Response<ProxyBody> {
    match abort {
        Abort::Http(status) => local_reply(status, "fault filter abort".into()),
        Abort::Grpc(code) => {
            let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
            let headers = resp.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(code));
            headers.insert("grpc-message", HeaderValue::from_static("fault injected"));
            resp
        }
    }
}

/// Headers a `Connection` header may not name: removing them would change
/// what the request is for (`Host`) or what the proxy tells the app
/// (`x-forwarded-client-cert`, which the inbound side sets itself).
const NEVER_CONNECTION_SCOPED: [HeaderName; 2] = [
    header::HOST,
    HeaderName::from_static("x-forwarded-client-cert"),
];

/// Removes connection-scoped headers (RFC 9110 §7.6.1): the fixed ones and
/// those every `Connection` header names, except the ones in
/// [`NEVER_CONNECTION_SCOPED`]. `te: trailers` is kept: gRPC over HTTP/2
/// needs it.
///
/// Both directions call this first, before the proxy reads or sets any
/// header, so a client's `Connection` can remove only what it sent.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names is cheaper
    // than a hashed lookup for each.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // `close` and `keep-alive` (the usual options) name no header to remove
    // beyond the fixed ones: only other options are collected.
    let options = || {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|o| o.trim_ascii())
            .filter(|o| !o.eq_ignore_ascii_case(b"close") && !o.eq_ignore_ascii_case(b"keep-alive"))
    };
    if options().next().is_some() {
        let named: Vec<HeaderName> = options()
            .filter_map(|o| HeaderName::from_bytes(o).ok())
            .filter(|name| !NEVER_CONNECTION_SCOPED.contains(name))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers.get(header::TE).is_some_and(|te| te != "trailers") {
        headers.remove(header::TE);
    }
}

/// Whether `name` is, or may be, a connection-scoped header: `te` is, unless
/// it says `trailers`; `connection` may name others.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == header::TE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

#[cfg(test)]
mod tests;
