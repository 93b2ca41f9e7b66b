//! HTTP helpers shared by both directions: host extraction, hop-by-hop
//! headers, and the body type the proxy answers with.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::upstream::UpstreamBody;

/// What the proxy answers with: the upstream's body or a local reply.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// The request's authority: the `Host` header, else the URI's (h2 `:authority`).
pub fn authority(req: &Parts) -> Option<&str> {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// The host part of an authority, without port or IPv6 brackets.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

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

/// Removes connection-scoped headers (RFC 9110 §7.6.1) before forwarding.
/// `te: trailers` is kept: gRPC over HTTP/2 needs it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names is cheaper
    // than a hashed lookup for each.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(listed) = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        for name in listed.split(',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                headers.remove(name);
            }
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
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("reviews"), "reviews");
        assert_eq!(host_of("reviews:9080"), "reviews");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("end-user", HeaderValue::from_static("jason"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-private").is_none()
                && h.get("keep-alive").is_none()
                && h.get(header::CONNECTION).is_none()
        );
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.get("end-user").unwrap(), "jason");
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in [
            "connection",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "keep-alive",
            "proxy-connection",
            "te",
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h.insert("end-user", HeaderValue::from_static("jason"));
            strip_hop_by_hop(&mut h);
            assert!(h.get(name).is_none(), "{name} is removed when alone");
            assert_eq!(h.get("end-user").unwrap(), "jason");
        }
    }
}
