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
    fn port_of_reads_the_port_if_any() {
        assert_eq!(port_of("httpbin:9999"), Some(9999));
        assert_eq!(port_of("httpbin"), None);
        assert_eq!(port_of("[::1]:80"), Some(80));
        assert_eq!(port_of("[::1]"), None);
        assert_eq!(port_of("httpbin:x"), None);
    }
}
