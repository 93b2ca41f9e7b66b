//! SPIFFE IDs and trust domains, parsed and validated per the SPIFFE ID specification
//! (<https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md>).
//!
//! A [`SpiffeId`] is only ever built through validation, so code that holds one never re-checks it.

use std::fmt;
use std::str::FromStr;

/// The URI scheme of every SPIFFE ID, with its separator.
const SCHEME: &str = "spiffe://";
/// Longest SPIFFE ID, in bytes, that the spec requires implementations to accept.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest trust domain name, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A SPIFFE trust domain name such as `cluster.local`: 1–255 bytes of `[a-z0-9.-_]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates `name` as a trust domain name (without the `spiffe://` prefix).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        let error = |kind| SpiffeIdError {
            what: "trust domain",
            input: name.to_owned(),
            kind,
        };
        if name.starts_with(SCHEME) {
            return Err(error(SpiffeIdErrorKind::SchemeInTrustDomain));
        }
        check_trust_domain(name, 0).map_err(error)?;
        Ok(Self(name.to_owned()))
    }

    /// The trust domain name, e.g. `cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself, `spiffe://<name>` (no path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            uri: format!("{SCHEME}{}", self.0),
            trust_domain_end: SCHEME.len() + self.0.len(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({:?})", self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A validated SPIFFE ID: `spiffe://<trust-domain>[/<segment>...]`.
///
/// Equality, hashing and ordering are those of the URI string, which is canonical once valid
/// (the spec allows no case folding, percent-encoding or dot segments).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    /// Byte index in `uri` where the trust domain ends and the path begins.
    trust_domain_end: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID; the error names the rule broken and the byte offset.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        parse(input).map_err(|kind| SpiffeIdError::new(input, kind))
    }

    /// The Istio-style workload identity `spiffe://<td>/ns/<namespace>/sa/<service_account>`.
    ///
    /// `namespace` and `service_account` must each be one valid path segment.
    pub fn workload(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        let uri = format!("{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}");
        for (field, value) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if value.contains('/') {
                return Err(SpiffeIdError::new(
                    &uri,
                    SpiffeIdErrorKind::NotOneSegment { field },
                ));
            }
        }
        Self::parse(&uri)
    }

    /// The whole ID as a URI string.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain name, e.g. `cluster.local`.
    pub fn trust_domain_name(&self) -> &str {
        &self.uri[SCHEME.len()..self.trust_domain_end]
    }

    /// The trust domain as a validated [`TrustDomain`].
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_name().to_owned())
    }

    /// The path, starting with `/`, or `""` for the ID of a trust domain itself.
    pub fn path(&self) -> &str {
        &self.uri[self.trust_domain_end..]
    }

    /// Whether this ID names a trust domain rather than a workload (empty path). Such IDs are
    /// never issued to, or accepted from, workloads (X509-SVID spec, section 2).
    pub fn is_trust_domain_id(&self) -> bool {
        self.path().is_empty()
    }

    /// The namespace when the path has Istio's shape `/ns/<namespace>/sa/<service-account>`.
    pub fn namespace(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The service account when the path has Istio's shape `/ns/<namespace>/sa/<service-account>`.
    pub fn service_account(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    fn istio_parts(&self) -> Option<(&str, &str)> {
        let mut segments = self.path().strip_prefix('/')?.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({:?})", self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = SpiffeIdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.uri
    }
}

/// Why a string is not a valid SPIFFE ID or trust domain: the input and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {}: {kind}", shorten(.input))]
pub struct SpiffeIdError {
    /// "SPIFFE ID" or "trust domain".
    what: &'static str,
    input: String,
    kind: SpiffeIdErrorKind,
}

impl SpiffeIdError {
    fn new(input: &str, kind: SpiffeIdErrorKind) -> Self {
        Self {
            what: "SPIFFE ID",
            input: input.to_owned(),
            kind,
        }
    }

    /// The rule that the input breaks.
    pub fn kind(&self) -> &SpiffeIdErrorKind {
        &self.kind
    }

    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// Quotes an input for an error message, cutting very long ones.
fn shorten(input: &str) -> String {
    const KEEP: usize = 120;
    if input.len() <= KEEP {
        return format!("{input:?}");
    }
    let mut end = KEEP;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &input[..end], input.len())
}

/// The SPIFFE ID rule that an input breaks; `at` fields are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdErrorKind {
    /// The input is empty.
    #[error("it is empty")]
    Empty,
    /// The input does not start with `spiffe://`.
    #[error("it must start with \"spiffe://\" (the scheme is lowercase `spiffe`)")]
    WrongScheme,
    /// A trust domain name was given with the `spiffe://` scheme.
    #[error("a trust domain is a bare name such as \"cluster.local\", without \"spiffe://\"")]
    SchemeInTrustDomain,
    /// There is nothing between `spiffe://` and the path.
    #[error("the trust domain is missing")]
    MissingTrustDomain,
    /// An uppercase letter in the trust domain.
    #[error("trust domain character {ch:?} at byte {at} is uppercase; trust domains are lowercase")]
    UppercaseTrustDomain {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A `:` in the authority: SPIFFE IDs carry no port.
    #[error("a port is not allowed (':' at byte {at})")]
    Port {
        /// Byte offset of the `:`.
        at: usize,
    },
    /// A `@` in the authority: SPIFFE IDs carry no userinfo.
    #[error("userinfo is not allowed ('@' at byte {at})")]
    Userinfo {
        /// Byte offset of the `@`.
        at: usize,
    },
    /// Any other character outside `[a-z0-9.-_]` in the trust domain.
    #[error(
        "trust domain character {ch:?} at byte {at} is not allowed (only a-z, 0-9, '.', '-', '_')"
    )]
    TrustDomainChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The trust domain is longer than 255 bytes.
    #[error("the trust domain is {len} bytes long; at most {MAX_TRUST_DOMAIN_LEN} are allowed")]
    TrustDomainTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The whole ID is longer than 2048 bytes.
    #[error("it is {len} bytes long; at most {MAX_SPIFFE_ID_LEN} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A `?`: SPIFFE IDs carry no query.
    #[error("a query is not allowed ('?' at byte {at})")]
    Query {
        /// Byte offset of the `?`.
        at: usize,
    },
    /// A `#`: SPIFFE IDs carry no fragment.
    #[error("a fragment is not allowed ('#' at byte {at})")]
    Fragment {
        /// Byte offset of the `#`.
        at: usize,
    },
    /// A `%`: SPIFFE IDs carry no percent-encoding.
    #[error("percent-encoding is not allowed ('%' at byte {at})")]
    PercentEncoded {
        /// Byte offset of the `%`.
        at: usize,
    },
    /// A path character outside `[A-Za-z0-9.-_]`.
    #[error(
        "path character {ch:?} at byte {at} is not allowed (only A-Z, a-z, 0-9, '.', '-', '_')"
    )]
    PathChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// Two slashes in a row.
    #[error("the path has an empty segment (\"//\" at byte {at})")]
    EmptySegment {
        /// Byte offset of the first of the two slashes.
        at: usize,
    },
    /// A `.` or `..` segment.
    #[error("the path segment {segment:?} at byte {at} is not allowed ('.' and '..' are relative)")]
    DotSegment {
        /// `"."` or `".."`.
        segment: &'static str,
        /// Byte offset of the segment.
        at: usize,
    },
    /// The path ends with `/`.
    #[error("the path must not end with '/'")]
    TrailingSlash,
    /// A namespace or service account given to [`SpiffeId::workload`] holds a `/`.
    #[error("the {field} must be a single path segment, without '/'")]
    NotOneSegment {
        /// `"namespace"` or `"service account"`.
        field: &'static str,
    },
}

fn parse(input: &str) -> Result<SpiffeId, SpiffeIdErrorKind> {
    if input.is_empty() {
        return Err(SpiffeIdErrorKind::Empty);
    }
    let rest = input
        .strip_prefix(SCHEME)
        .ok_or(SpiffeIdErrorKind::WrongScheme)?;
    if input.len() > MAX_SPIFFE_ID_LEN {
        return Err(SpiffeIdErrorKind::TooLong { len: input.len() });
    }
    let trust_domain_end = rest.find('/').unwrap_or(rest.len());
    check_trust_domain(&rest[..trust_domain_end], SCHEME.len())?;
    let path_start = SCHEME.len() + trust_domain_end;
    check_path(&input[path_start..], path_start)?;
    Ok(SpiffeId {
        uri: input.to_owned(),
        trust_domain_end: path_start,
    })
}

/// Checks a trust domain name that starts at byte `offset` of the input.
fn check_trust_domain(name: &str, offset: usize) -> Result<(), SpiffeIdErrorKind> {
    if name.is_empty() {
        return Err(SpiffeIdErrorKind::MissingTrustDomain);
    }
    for (i, ch) in name.char_indices() {
        let at = offset + i;
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => return Err(SpiffeIdErrorKind::UppercaseTrustDomain { ch, at }),
            ':' => return Err(SpiffeIdErrorKind::Port { at }),
            '@' => return Err(SpiffeIdErrorKind::Userinfo { at }),
            other => {
                return Err(char_error(other, at, |ch, at| {
                    SpiffeIdErrorKind::TrustDomainChar { ch, at }
                }));
            }
        }
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdErrorKind::TrustDomainTooLong { len: name.len() });
    }
    Ok(())
}

/// Checks a path (empty, or starting with `/`) that starts at byte `offset` of the input.
fn check_path(path: &str, offset: usize) -> Result<(), SpiffeIdErrorKind> {
    for (i, ch) in path.char_indices() {
        match ch {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '/' => {}
            other => {
                return Err(char_error(other, offset + i, |ch, at| {
                    SpiffeIdErrorKind::PathChar { ch, at }
                }));
            }
        }
    }
    let Some(segments) = path.strip_prefix('/') else {
        return Ok(()); // empty path: the ID of a trust domain
    };
    let mut at = offset + 1;
    let count = segments.split('/').count();
    for (index, segment) in segments.split('/').enumerate() {
        match segment {
            "" if index + 1 == count => return Err(SpiffeIdErrorKind::TrailingSlash),
            "" => return Err(SpiffeIdErrorKind::EmptySegment { at: at - 1 }),
            "." => return Err(SpiffeIdErrorKind::DotSegment { segment: ".", at }),
            ".." => return Err(SpiffeIdErrorKind::DotSegment { segment: "..", at }),
            _ => {}
        }
        at += segment.len() + 1;
    }
    Ok(())
}

/// The error for a character outside the allowed set: URI delimiters get their own message.
fn char_error(
    ch: char,
    at: usize,
    otherwise: fn(char, usize) -> SpiffeIdErrorKind,
) -> SpiffeIdErrorKind {
    match ch {
        '?' => SpiffeIdErrorKind::Query { at },
        '#' => SpiffeIdErrorKind::Fragment { at },
        '%' => SpiffeIdErrorKind::PercentEncoded { at },
        _ => otherwise(ch, at),
    }
}
