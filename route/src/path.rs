//! Request path normalisation, Istio's `pathNormalization` (Envoy's
//! `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action`).
//!
//! Both directions normalise the path before they look at it (route
//! matching, AuthorizationPolicy `paths`) and forward the path they looked
//! at, so what is checked is what is served. The steps, in this order:
//!
//! 1. percent-encodings: `%00` is refused, a `%` not followed by two hex
//!    digits is refused; an encoded unreserved character (`A-Z a-z 0-9 - .
//!    _ ~`) is decoded; `%2F` and `%5C` follow [`EscapedSlashes`]; any other
//!    encoding is kept with upper-case hex digits (RFC 3986 §6.2.2);
//! 2. `\` becomes `/`;
//! 3. with `MERGE_SLASHES`, runs of `/` become one;
//! 4. dot segments are resolved (RFC 3986 §5.2.4); a `..` that would climb
//!    above the root is refused, as is a dot segment with path parameters
//!    (`..;x`, `.;x`), which Tomcat and others resolve as `..` and `.`.
//!
//! `NONE` does none of this, but still refuses `%00` and applies
//! [`EscapedSlashes`]. The query is never touched. Path case is kept: a
//! policy on `/admin` does not cover `/ADMIN` (as in Istio).
//!
//! # Cost
//!
//! A path with nothing to change is recognised in one pass over its bytes
//! and left alone: no allocation. Only a path that changes (or is refused)
//! is rebuilt.

use bytes::Bytes;
use http::Uri;
use http::uri::PathAndQuery;

/// What to do with `%2F` (`/`) and `%5C` (`\`) in a path: Envoy's
/// `path_with_escaped_slashes_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// `KEEP_UNCHANGED`: forwarded encoded (hex digits upper-cased); a
    /// policy on `/a/b` does not match `/a%2Fb`.
    #[default]
    Keep,
    /// `REJECT_REQUEST`: 400.
    Reject,
    /// `UNESCAPE_AND_FORWARD`: decoded before the other steps, so
    /// `/a%2Fb` is `/a/b` and `/a%5Cb` is `/a/b` too.
    Unescape,
}

/// Which normalisation: Istio's `pathNormalization.normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathMode {
    /// `NONE`: the path is forwarded as received.
    None,
    /// `BASE` (Istio's default): RFC 3986, backslashes, dot segments.
    #[default]
    Base,
    /// `MERGE_SLASHES`: `BASE`, and `//` becomes `/`.
    MergeSlashes,
}

/// How a proxy normalises request paths: the mode and what to do with
/// escaped slashes. Istio's `DECODE_AND_MERGE_SLASHES` is
/// [`PathMode::MergeSlashes`] with [`EscapedSlashes::Unescape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathNormalization {
    /// Which steps run.
    pub mode: PathMode,
    /// What `%2F` and `%5C` become.
    pub escaped_slashes: EscapedSlashes,
}

/// Why a path cannot be normalised safely; the request gets 400 with this
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// `%` not followed by two hex digits.
    #[error("bad request: the path has an invalid percent-encoding")]
    InvalidPercentEncoding,
    /// `%00`.
    #[error("bad request: the path contains an encoded NUL (%00)")]
    EncodedNul,
    /// `%2F` or `%5C` under [`EscapedSlashes::Reject`].
    #[error("bad request: the path contains an escaped slash (%2F or %5C)")]
    EscapedSlash,
    /// A `..` segment with nothing left to remove.
    #[error("bad request: the path climbs above the root with `..`")]
    AboveRoot,
    /// `..;` or `.;`: a dot segment with path parameters.
    #[error("bad request: the path has a dot segment with parameters (`..;` or `.;`)")]
    DotSegmentWithParameters,
    /// The request target is neither a path, `*`, nor an absolute URI.
    #[error("bad request: the request target is not a path")]
    NotAPath,
}

impl PathNormalization {
    /// Istio's `NONE`.
    pub const NONE: Self = Self {
        mode: PathMode::None,
        escaped_slashes: EscapedSlashes::Keep,
    };
    /// Istio's `BASE`, the default.
    pub const BASE: Self = Self {
        mode: PathMode::Base,
        escaped_slashes: EscapedSlashes::Keep,
    };
    /// Istio's `MERGE_SLASHES`.
    pub const MERGE_SLASHES: Self = Self {
        mode: PathMode::MergeSlashes,
        escaped_slashes: EscapedSlashes::Keep,
    };
    /// Istio's `DECODE_AND_MERGE_SLASHES`.
    pub const DECODE_AND_MERGE_SLASHES: Self = Self {
        mode: PathMode::MergeSlashes,
        escaped_slashes: EscapedSlashes::Unescape,
    };

    fn rfc3986(self) -> bool {
        self.mode != PathMode::None
    }

    fn merge_slashes(self) -> bool {
        self.mode == PathMode::MergeSlashes
    }

    /// Normalises the path of `uri` in place; the query, and the scheme and
    /// authority of an absolute URI, are kept. `*` (asterisk form) and a URI
    /// without a path (authority form) are left alone. A path with nothing
    /// to change is not copied.
    pub fn apply(self, uri: &mut Uri) -> Result<(), PathError> {
        let Some(target) = uri.path_and_query().map(PathAndQuery::as_str) else {
            return Ok(());
        };
        if target == "*" {
            return Ok(());
        }
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        if self.is_normal(path.as_bytes()) {
            return Ok(());
        }
        let mut normal = self.normalize(path)?;
        if let Some(query) = query {
            normal.push('?');
            normal.push_str(query);
        }
        let pq = PathAndQuery::from_maybe_shared(Bytes::from(normal))
            .map_err(|_| PathError::NotAPath)?;
        let mut parts = std::mem::take(uri).into_parts();
        parts.path_and_query = Some(pq);
        *uri = Uri::from_parts(parts).map_err(|_| PathError::NotAPath)?;
        Ok(())
    }

    /// Whether [`Self::normalize`] would return `path` unchanged: one pass,
    /// no allocation. `false` also for every path it would refuse.
    pub fn is_normal(self, path: &[u8]) -> bool {
        if path.first() != Some(&b'/') {
            return false;
        }
        let rfc3986 = self.rfc3986();
        let mut segment_start = 1;
        let mut i = 1;
        while i < path.len() {
            match path[i] {
                b'%' => match hex_octet(path, i) {
                    None if rfc3986 => return false,
                    None => {}
                    Some((0, _)) => return false,
                    Some((b'/' | b'\\', upper)) => match self.escaped_slashes {
                        EscapedSlashes::Keep if !rfc3986 || upper => {
                            i += 3;
                            continue;
                        }
                        _ => return false,
                    },
                    Some((octet, upper)) => {
                        if rfc3986 && (is_unreserved(octet) || !upper) {
                            return false;
                        }
                        i += 3;
                        continue;
                    }
                },
                b'\\' if rfc3986 => return false,
                b'/' => {
                    let segment = &path[segment_start..i];
                    if rfc3986 && is_dot_segment(segment) {
                        return false;
                    }
                    if self.merge_slashes() && segment.is_empty() {
                        return false;
                    }
                    segment_start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        !(rfc3986 && is_dot_segment(&path[segment_start..]))
    }

    /// The normal form of `path` (no query), or why there is none. An
    /// empty path is `/`.
    pub fn normalize(self, path: &str) -> Result<String, PathError> {
        if path.is_empty() {
            return Ok("/".to_owned());
        }
        if !path.starts_with('/') {
            return Err(PathError::NotAPath);
        }
        let decoded = self.decode(path)?;
        if !self.rfc3986() {
            return Ok(decoded);
        }
        self.resolve_segments(&decoded)
    }

    /// Steps 1 (percent-encodings) and 2 (backslashes). Runs of bytes
    /// that stay are copied whole.
    fn decode(self, path: &str) -> Result<String, PathError> {
        let bytes = path.as_bytes();
        let mut out = String::with_capacity(path.len());
        // `path[..copied]` is in `out` already.
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            let edit = match bytes[i] {
                b'%' => self.percent_edit(bytes, i)?,
                b'\\' if self.rfc3986() => Some(Edit::Char('/', 1)),
                _ => None,
            };
            let Some(edit) = edit else {
                i += 1;
                continue;
            };
            // `i` is at an ASCII byte and `copied` just after ASCII bytes
            // (`%`, hex digits, `\`): both are char boundaries.
            out.push_str(&path[copied..i]);
            match edit {
                Edit::Char(c, len) => {
                    out.push(c);
                    i += len;
                }
                Edit::UpperHex => {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                    i += 3;
                }
            }
            copied = i;
        }
        out.push_str(&path[copied..]);
        Ok(out)
    }

    /// What becomes of the `%` at `bytes[at]`: `None` to keep it as it is.
    fn percent_edit(self, bytes: &[u8], at: usize) -> Result<Option<Edit>, PathError> {
        let rfc3986 = self.rfc3986();
        match hex_octet(bytes, at) {
            None if rfc3986 => Err(PathError::InvalidPercentEncoding),
            None => Ok(None),
            Some((0, _)) => Err(PathError::EncodedNul),
            Some((octet @ (b'/' | b'\\'), upper)) => match self.escaped_slashes {
                EscapedSlashes::Reject => Err(PathError::EscapedSlash),
                // Step 2 turns a decoded `\` into `/` at once.
                EscapedSlashes::Unescape if rfc3986 => Ok(Some(Edit::Char('/', 3))),
                EscapedSlashes::Unescape => Ok(Some(Edit::Char(char::from(octet), 3))),
                EscapedSlashes::Keep if rfc3986 && !upper => Ok(Some(Edit::UpperHex)),
                EscapedSlashes::Keep => Ok(None),
            },
            Some((octet, _)) if rfc3986 && is_unreserved(octet) => {
                Ok(Some(Edit::Char(char::from(octet), 3)))
            }
            Some((_, false)) if rfc3986 => Ok(Some(Edit::UpperHex)),
            Some(_) => Ok(None),
        }
    }

    /// Steps 3 and 4 on a decoded path that starts with `/`.
    fn resolve_segments(self, path: &str) -> Result<String, PathError> {
        let segments: Vec<&str> = path[1..].split('/').collect();
        let last = segments.len() - 1;
        let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
        let mut trailing_slash = false;
        for (i, segment) in segments.into_iter().enumerate() {
            trailing_slash = false;
            match segment {
                "" if self.merge_slashes() && i != last => {}
                "." => trailing_slash = i == last,
                ".." => {
                    kept.pop().ok_or(PathError::AboveRoot)?;
                    trailing_slash = i == last;
                }
                s if s.starts_with(".;") || s.starts_with("..;") => {
                    return Err(PathError::DotSegmentWithParameters);
                }
                s => kept.push(s),
            }
        }
        let mut out = String::with_capacity(path.len());
        for segment in &kept {
            out.push('/');
            out.push_str(segment);
        }
        if trailing_slash || out.is_empty() {
            out.push('/');
        }
        Ok(out)
    }
}

/// A change [`PathNormalization::decode`] makes at one position.
enum Edit {
    /// Write this character for the next `usize` bytes.
    Char(char, usize),
    /// Keep `%XY`, its hex digits in upper case.
    UpperHex,
}

/// The octet `%XY` at `path[at]` encodes, and whether both hex digits are
/// already upper case (or digits).
fn hex_octet(path: &[u8], at: usize) -> Option<(u8, bool)> {
    let hi = *path.get(at + 1)?;
    let lo = *path.get(at + 2)?;
    let value = |d: u8| char::from(d).to_digit(16);
    let octet = value(hi)? * 16 + value(lo)?;
    let upper = !hi.is_ascii_lowercase() && !lo.is_ascii_lowercase();
    // Two hex digits make at most 0xFF.
    Some((u8::try_from(octet).ok()?, upper))
}

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(octet: u8) -> bool {
    octet.is_ascii_alphanumeric() || matches!(octet, b'-' | b'.' | b'_' | b'~')
}

/// A segment that [`PathNormalization::resolve_segments`] removes or
/// refuses: `.`, `..`, or either followed by `;` parameters.
fn is_dot_segment(segment: &[u8]) -> bool {
    matches!(segment, b"." | b"..") || segment.starts_with(b".;") || segment.starts_with(b"..;")
}

#[cfg(test)]
mod tests;
