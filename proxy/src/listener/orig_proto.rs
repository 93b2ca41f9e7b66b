//! HTTP/1.1 requests carried over the HTTP/2 connection between sidecars,
//! as Linkerd does with `l5d-orig-proto`.
//!
//! The outbound side marks the request with [`ORIG_PROTO`] and gives it the
//! absolute URI HTTP/2 needs (scheme, and the `Host` as `:authority`); the
//! inbound side removes the mark and takes the request for the HTTP/1.1
//! request it was, with its `Host`. HTTP/2 is not marked. The version so
//! carried is the one the client's sidecar chose for the service port
//! ([`crate::config::upstream_version`]); the server's sidecar sends the
//! request to its app in it unless the app port declares its own
//! protocol ([`crate::config::app_version`]).

use http::Version;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, Scheme, Uri};

use crate::error::ProxyError;

/// The header that says an HTTP/2 request between proxies was HTTP/1.1
/// when the app sent it.
pub(crate) const ORIG_PROTO: HeaderName = HeaderName::from_static("remora-orig-proto");

const HTTP_11: HeaderValue = HeaderValue::from_static("HTTP/1.1");

/// Outbound, before sending over mTLS: turns an HTTP/1.1 request (origin
/// form with `Host`, as `prepare_upstream_request` leaves it) into an
/// HTTP/2 one marked with [`ORIG_PROTO`]. HTTP/2 requests are unchanged.
pub fn encode(parts: &mut Parts) -> Result<(), ProxyError> {
    if parts.version == Version::HTTP_2 {
        return Ok(());
    }
    absolute_form(parts)?;
    parts.headers.insert(ORIG_PROTO, HTTP_11);
    parts.version = Version::HTTP_2;
    Ok(())
}

/// Inbound, first thing: an HTTP/2 request marked with [`ORIG_PROTO`]
/// becomes the HTTP/1.1 request it was, with `Host` from `:authority`. The
/// mark is removed from every request, so the app never sees it.
pub(crate) fn decode(parts: &mut Parts) {
    let Some(orig) = parts.headers.remove(ORIG_PROTO) else {
        return;
    };
    if parts.version != Version::HTTP_2 || orig != HTTP_11 {
        return;
    }
    if !parts.headers.contains_key(header::HOST)
        && let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, value);
    }
    parts.version = Version::HTTP_11;
}

/// Gives a request the absolute URI HTTP/2 needs: scheme `http`, the Host
/// (else the target's authority) as authority, and its path. The Host
/// header goes: `:authority` carries it.
pub(crate) fn absolute_form(parts: &mut http::request::Parts) -> Result<(), ProxyError> {
    let authority = match parts.headers.get(header::HOST) {
        Some(host) => Authority::try_from(host.as_bytes()).map_err(|_| ProxyError::NoHost)?,
        None => parts.uri.authority().cloned().ok_or(ProxyError::NoHost)?,
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| ProxyError::NoHost)?;
    parts.headers.remove(header::HOST);
    Ok(())
}

#[cfg(test)]
mod tests;
