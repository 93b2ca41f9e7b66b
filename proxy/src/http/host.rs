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
mod tests {
    use http::Request;

    use super::*;

    fn parts(target: &str, version: Version, hosts: &[&str]) -> Parts {
        let mut req = Request::get(target).version(version);
        for host in hosts {
            req = req.header(header::HOST, *host);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn one_host_that_agrees_with_the_target_passes() {
        for (target, hosts) in [
            ("/x", &["reviews"][..]),
            ("/x", &["reviews:9080"][..]),
            ("/x", &["[::1]:80"][..]),
            ("http://reviews/x", &["reviews"][..]),
            ("http://Reviews:9080/x", &["reviews:9080"][..]),
        ] {
            assert_eq!(
                check_host(&parts(target, Version::HTTP_11, hosts)),
                Ok(()),
                "{target} {hosts:?}"
            );
        }
        // h2 needs no Host: `:authority` is the URI's.
        assert_eq!(
            check_host(&parts("http://reviews/x", Version::HTTP_2, &[])),
            Ok(())
        );
        // HTTP/1.0 may go without.
        assert_eq!(check_host(&parts("/x", Version::HTTP_10, &[])), Ok(()));
    }

    #[test]
    fn two_hosts_are_refused() {
        let p = parts("/x", Version::HTTP_11, &["reviews", "admin.reviews"]);
        assert_eq!(check_host(&p), Err(HostError::Duplicate));
        let p = parts("/x", Version::HTTP_11, &["reviews", "reviews"]);
        assert_eq!(check_host(&p), Err(HostError::Duplicate));
    }

    #[test]
    fn a_host_that_disagrees_with_the_absolute_form_or_authority_is_refused() {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let p = parts("http://admin.reviews/x", version, &["reviews"]);
            assert_eq!(
                check_host(&p),
                Err(HostError::Mismatch {
                    host: "reviews".to_owned(),
                    authority: "admin.reviews".to_owned(),
                })
            );
        }
        let p = parts("http://reviews:9080/x", Version::HTTP_11, &["reviews"]);
        assert!(matches!(check_host(&p), Err(HostError::Mismatch { .. })));
        let p = parts("http://reviews/x", Version::HTTP_11, &[""]);
        assert!(matches!(check_host(&p), Err(HostError::Mismatch { .. })));
    }

    #[test]
    fn a_missing_or_malformed_host_is_refused() {
        assert_eq!(
            check_host(&parts("/x", Version::HTTP_11, &[])),
            Err(HostError::Missing)
        );
        assert_eq!(
            check_host(&parts("http://reviews/x", Version::HTTP_11, &[])),
            Err(HostError::Missing)
        );
        for bad in [
            "user@reviews",
            "reviews/x",
            "reviews:80x",
            "re views",
            "[::1",
            "[::1]x",
            "[]",
            "reviews?",
            "reviews#",
            "a\\b",
        ] {
            assert_eq!(
                check_host(&parts("/x", Version::HTTP_11, &[bad])),
                Err(HostError::Invalid),
                "{bad}"
            );
        }
    }
}
