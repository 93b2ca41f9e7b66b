//! One request, one authority (RFC 9112 §3.2, RFC 9113 §8.3.1): a request
//! whose `Host` headers, or `Host` and request-target authority
//! (absolute form, h2 `:authority`), could be read two ways is refused
//! before anything routes or authorizes on either.

use http::Version;
use http::header::{self, HeaderValue};
use http::request::Parts;

/// Why a request's authority is ambiguous or malformed; the request gets
/// 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// More than one `Host` header.
    #[error("bad request: more than one Host header")]
    Duplicate,
    /// An HTTP/1.1 request without `Host`.
    #[error("bad request: an HTTP/1.1 request needs a Host header")]
    Missing,
    /// `Host` is not `host[:port]`.
    #[error("bad request: the Host header is not host[:port]")]
    Invalid,
    /// `Host` and the request target's authority differ.
    #[error("bad request: Host `{host}` differs from the request target's authority `{authority}`")]
    Mismatch {
        /// The `Host` header.
        host: String,
        /// The authority of the absolute-form target or `:authority`.
        authority: String,
    },
}

/// Checks that `parts` names exactly one authority: at most one `Host`
/// (required in HTTP/1.1), a valid `host[:port]`, and equal (ignoring ASCII
/// case) to the request target's authority when it has one. After this,
/// [`super::authority`] is the only answer a reader can get.
pub(crate) fn check_host(parts: &Parts) -> Result<(), HostError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Duplicate);
    }
    let Some(host) = host else {
        return match parts.version {
            Version::HTTP_11 => Err(HostError::Missing),
            _ => Ok(()),
        };
    };
    if !is_authority(host.as_bytes()) {
        return Err(HostError::Invalid);
    }
    match parts.uri.authority() {
        Some(authority)
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            Err(HostError::Mismatch {
                host: text(host),
                authority: authority.as_str().to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2): an IP literal in brackets or a
/// reg-name/IPv4 address, then an optional port of digits. Empty is valid
/// (RFC 9112 §3.2: a target without authority). No user info.
fn is_authority(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            if literal.is_empty()
                || !literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            {
                return false;
            }
            match &rest[end + 1..] {
                [] => return true,
                [b':', port @ ..] => (&[][..], port),
                _ => return false,
            }
        }
        None => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon + 1..]),
            None => (value, &[][..]),
        },
    };
    host.iter().all(|&b| is_reg_name_byte(b)) && port.iter().all(u8::is_ascii_digit)
}

/// `unreserved / pct-encoded / sub-delims` (a `%` is let through without
/// checking its digits: it cannot split the name).
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

#[cfg(test)]
mod tests;
