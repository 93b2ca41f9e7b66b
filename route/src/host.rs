//! Reading a request's authority: the host a request is for, as routing
//! and the proxy's lookup see it.

use http::header;
use http::request::Parts;

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

/// The port of an authority, if it carries one.
pub fn port_of(authority: &str) -> Option<u16> {
    let rest = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.1,
        None => authority,
    };
    let (_, port) = rest.rsplit_once(':')?;
    port.parse().ok()
}

#[cfg(test)]
mod tests;
