//! Trace context on the wire: reading W3C `traceparent` and B3 (single `b3`
//! header or the `x-b3-*` set) from a request, writing them back for the next
//! hop, and `x-request-id`.
//!
//! Hand-written rather than the `opentelemetry-zipkin` propagator because the
//! proxy must know which B3 format arrived (to answer in the same one), must
//! keep a 64-bit B3 trace id 64 bits wide, and must read a B3 sampling
//! decision that comes without ids (`b3: 0`).

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::trace::{SpanId, TraceId};

/// W3C Trace Context.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// B3 in one header: `{trace}-{span}[-{sampled}[-{parent}]]` or `{sampled}`.
pub(crate) const B3: HeaderName = HeaderName::from_static("b3");
/// B3, one header per field.
pub(crate) const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub(crate) const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub(crate) const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub(crate) const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub(crate) const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
/// Envoy's request id, kept across every hop of a request.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The trace context a request arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Incoming {
    /// The caller's span, when the request carried valid ids.
    pub(crate) parent: Option<Parent>,
    /// The caller's sampling decision.
    pub(crate) sampling: Sampling,
    /// The B3 format that arrived, answered in kind; `None` if no B3 header.
    pub(crate) b3: Option<B3Format>,
}

/// The ids of the caller's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
}

/// A sampling decision as the caller sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Sampling {
    /// No decision: this hop decides (B3 without a sampled field, or no
    /// context at all).
    #[default]
    Deferred,
    /// Sampled (W3C flag 01, B3 `1`).
    Sampled,
    /// Not sampled (W3C flag 00, B3 `0`).
    NotSampled,
    /// B3 debug (`d`, `x-b3-flags: 1`): sampled, and said so downstream.
    Debug,
}

/// Which B3 headers arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum B3Format {
    /// One `b3` header.
    Single {
        /// The trace id arrived 64 bits wide and goes on that way.
        trace_id_64: bool,
    },
    /// The `x-b3-*` headers.
    Multi {
        /// The trace id arrived 64 bits wide and goes on that way.
        trace_id_64: bool,
    },
}

impl Incoming {
    /// Reads the context from `headers`. A valid `traceparent` wins; else the
    /// `b3` header; else the `x-b3-*` headers. Invalid values are ignored,
    /// as W3C Trace Context asks.
    pub(crate) fn extract(headers: &HeaderMap) -> Self {
        // Most requests carry none of these: for a small map one pass over
        // its names is cheaper than the five hashed lookups below.
        if headers.len() <= SCAN_LIMIT && !headers.keys().any(is_trace_context) {
            return Self::default();
        }
        let w3c = headers
            .get(TRACEPARENT)
            .and_then(|v| parse_traceparent(v.as_bytes()));
        let b3 = if let Some(v) = headers.get(B3) {
            parse_b3_single(v.as_bytes())
        } else if headers.contains_key(X_B3_TRACEID)
            || headers.contains_key(X_B3_SAMPLED)
            || headers.contains_key(X_B3_FLAGS)
        {
            parse_b3_multi(headers)
        } else {
            None
        };
        match (w3c, b3) {
            (Some((parent, sampling)), b3) => Self {
                parent: Some(parent),
                sampling,
                b3: b3.map(|b| b.format),
            },
            (None, Some(b3)) => Self {
                parent: b3.parent,
                sampling: b3.sampling,
                b3: Some(b3.format),
            },
            (None, None) => Self::default(),
        }
    }
}

/// Up to how many headers [`Incoming::extract`] looks at every name first.
const SCAN_LIMIT: usize = 16;

/// Whether `name` is one [`Incoming::extract`] reads.
fn is_trace_context(name: &HeaderName) -> bool {
    match name.as_str().as_bytes().first() {
        Some(b't') => name == TRACEPARENT,
        Some(b'b') => name == B3,
        Some(b'x') => name == X_B3_TRACEID || name == X_B3_SAMPLED || name == X_B3_FLAGS,
        _ => false,
    }
}

/// `00-{trace:32}-{span:16}-{flags:2}`; a later version may append fields
/// after another `-`. Version `ff`, uppercase hex and all-zero ids are
/// invalid.
fn parse_traceparent(v: &[u8]) -> Option<(Parent, Sampling)> {
    if v.len() < 55 || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let version = hex_lower(&v[0..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = hex_lower(&v[3..35])?;
    let span_id = hex_lower(&v[36..52])?;
    let flags = hex_lower(&v[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    let sampling = if flags & 1 == 1 {
        Sampling::Sampled
    } else {
        Sampling::NotSampled
    };
    Some((ids(trace_id, span_id as u64), sampling))
}

/// What one B3 form carried.
struct B3Context {
    parent: Option<Parent>,
    sampling: Sampling,
    format: B3Format,
}

/// `{trace:16|32}-{span:16}[-{1|0|d}[-{parent:16}]]`, or only `{1|0|d}`.
fn parse_b3_single(v: &[u8]) -> Option<B3Context> {
    let v = std::str::from_utf8(v).ok()?.trim();
    let mut fields = v.split('-');
    let first = fields.next()?;
    if first.len() == 1 {
        // A sampling decision alone.
        let sampling = b3_sampling(first)?;
        return fields.next().is_none().then_some(B3Context {
            parent: None,
            sampling,
            format: B3Format::Single { trace_id_64: false },
        });
    }
    let (trace_id, trace_id_64) = b3_trace_id(first)?;
    let span_id = b3_span_id(fields.next()?)?;
    let sampling = match fields.next() {
        None => Sampling::Deferred,
        Some(s) => b3_sampling(s)?,
    };
    if let Some(parent) = fields.next() {
        b3_span_id(parent)?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(B3Context {
        parent: Some(ids(trace_id, span_id)),
        sampling,
        format: B3Format::Single { trace_id_64 },
    })
}

/// `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled` (`1`/`0`, or the older
/// `true`/`false`), `x-b3-flags: 1` (debug). Either id alone is invalid;
/// the sampling fields alone are a decision without ids.
fn parse_b3_multi(headers: &HeaderMap) -> Option<B3Context> {
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let debug = text(X_B3_FLAGS).is_some_and(|f| f.trim() == "1");
    let sampling = if debug {
        Sampling::Debug
    } else {
        match text(X_B3_SAMPLED).map(str::trim) {
            None => Sampling::Deferred,
            Some("1" | "true") => Sampling::Sampled,
            Some("0" | "false") => Sampling::NotSampled,
            Some(_) => return None,
        }
    };
    let (parent, trace_id_64) = match (text(X_B3_TRACEID), text(X_B3_SPANID)) {
        (Some(t), Some(s)) => {
            let (trace_id, trace_id_64) = b3_trace_id(t.trim())?;
            (Some(ids(trace_id, b3_span_id(s.trim())?)), trace_id_64)
        }
        (None, None) => (None, false),
        _ => return None,
    };
    Some(B3Context {
        parent,
        sampling,
        format: B3Format::Multi { trace_id_64 },
    })
}

fn b3_sampling(s: &str) -> Option<Sampling> {
    match s {
        "1" => Some(Sampling::Sampled),
        "0" => Some(Sampling::NotSampled),
        "d" => Some(Sampling::Debug),
        _ => None,
    }
}

/// A B3 trace id: 16 or 32 hex digits (either case), not zero. Returns the
/// id and whether it was 64 bits wide.
fn b3_trace_id(s: &str) -> Option<(u128, bool)> {
    if s.len() != 16 && s.len() != 32 {
        return None;
    }
    let id = hex_any(s.as_bytes())?;
    (id != 0).then_some((id, s.len() == 16))
}

fn b3_span_id(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    let id = hex_any(s.as_bytes())? as u64;
    (id != 0).then_some(id)
}

fn ids(trace_id: u128, span_id: u64) -> Parent {
    Parent {
        trace_id: TraceId::from_bytes(trace_id.to_be_bytes()),
        span_id: SpanId::from_bytes(span_id.to_be_bytes()),
    }
}

/// Lowercase hex only (W3C), at most 32 digits.
fn hex_lower(s: &[u8]) -> Option<u128> {
    s.iter().try_fold(0u128, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u128::from(d))
    })
}

/// Hex in either case (B3 senders are not all strict), at most 32 digits.
fn hex_any(s: &[u8]) -> Option<u128> {
    s.iter().try_fold(0u128, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some((acc << 4) | u128::from(d))
    })
}

/// The context this hop sends on: its own span as the parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    /// The caller's span id, written as `x-b3-parentspanid`.
    pub(crate) parent_span_id: Option<SpanId>,
    pub(crate) sampled: bool,
    pub(crate) debug: bool,
}

impl Outgoing {
    /// Writes `traceparent` always and the B3 headers in the format that
    /// arrived. `tracestate` is left as it came: this hop adds no entry.
    pub(crate) fn inject(&self, headers: &mut HeaderMap, b3: Option<B3Format>) {
        let trace = self.trace_id.to_bytes();
        let span = self.span_id.to_bytes();
        let mut buf = [0u8; 55];
        buf[..3].copy_from_slice(b"00-");
        hex_into(&trace, &mut buf[3..35]);
        buf[35] = b'-';
        hex_into(&span, &mut buf[36..52]);
        buf[52..54].copy_from_slice(b"-0");
        buf[54] = if self.sampled { b'1' } else { b'0' };
        headers.insert(TRACEPARENT, header_value(&buf));
        match b3 {
            None => {}
            Some(B3Format::Single { trace_id_64 }) => self.inject_b3_single(headers, trace_id_64),
            Some(B3Format::Multi { trace_id_64 }) => self.inject_b3_multi(headers, trace_id_64),
        }
    }

    fn inject_b3_single(&self, headers: &mut HeaderMap, trace_id_64: bool) {
        let mut trace = [0u8; 32];
        let t = b3_trace_hex(self.trace_id, trace_id_64, &mut trace);
        let mut buf = [0u8; 32 + 1 + 16 + 2];
        buf[..t].copy_from_slice(&trace[..t]);
        buf[t] = b'-';
        hex_into(&self.span_id.to_bytes(), &mut buf[t + 1..t + 17]);
        buf[t + 17] = b'-';
        buf[t + 18] = self.b3_sampled_char();
        headers.insert(B3, header_value(&buf[..t + 19]));
    }

    fn inject_b3_multi(&self, headers: &mut HeaderMap, trace_id_64: bool) {
        let mut trace = [0u8; 32];
        let t = b3_trace_hex(self.trace_id, trace_id_64, &mut trace);
        headers.insert(X_B3_TRACEID, header_value(&trace[..t]));
        headers.insert(X_B3_SPANID, hex_value(&self.span_id.to_bytes()));
        match self.parent_span_id {
            Some(parent) => {
                headers.insert(X_B3_PARENTSPANID, hex_value(&parent.to_bytes()));
            }
            None => {
                headers.remove(X_B3_PARENTSPANID);
            }
        }
        if self.debug {
            // Debug implies sampled; B3 asks not to send both.
            headers.insert(X_B3_FLAGS, HeaderValue::from_static("1"));
            headers.remove(X_B3_SAMPLED);
        } else {
            headers.remove(X_B3_FLAGS);
            let sampled = if self.sampled { "1" } else { "0" };
            headers.insert(X_B3_SAMPLED, HeaderValue::from_static(sampled));
        }
    }

    fn b3_sampled_char(&self) -> u8 {
        match (self.debug, self.sampled) {
            (true, _) => b'd',
            (false, true) => b'1',
            (false, false) => b'0',
        }
    }
}

/// Writes the trace id as B3 sends it into `out`, returning the length:
/// its low 64 bits when it arrived that wide (and its high bits are zero:
/// a 128-bit `traceparent` id is never cut).
fn b3_trace_hex(trace_id: TraceId, trace_id_64: bool, out: &mut [u8; 32]) -> usize {
    let bytes = trace_id.to_bytes();
    let narrow = trace_id_64 && bytes[..8].iter().all(|&b| b == 0);
    let src = if narrow { &bytes[8..] } else { &bytes[..] };
    hex_into(src, &mut out[..src.len() * 2]);
    src.len() * 2
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

fn hex_value(bytes: &[u8]) -> HeaderValue {
    let mut buf = [0u8; 32];
    let n = bytes.len() * 2;
    hex_into(bytes, &mut buf[..n]);
    header_value(&buf[..n])
}

/// Hex digits and dashes are always a valid header value.
fn header_value(ascii: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(ascii).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Keeps the request's `x-request-id`, or adds a new UUID v4 one, and
/// returns it.
pub(crate) fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(X_REQUEST_ID).filter(|v| !v.is_empty()) {
        return id.clone();
    }
    let mut id = new_request_id();
    // Unique to this request: over HTTP/2, HPACK sends it as a literal that
    // is never indexed, rather than searching the dynamic table for it and
    // then evicting a reusable entry to make room.
    id.set_sensitive(true);
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// A random UUID v4 (RFC 9562), lowercase with dashes.
pub(crate) fn new_request_id() -> HeaderValue {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, chunk) in [&b[0..4], &b[4..6], &b[6..8], &b[8..10], &b[10..16]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out[at] = b'-';
            at += 1;
        }
        hex_into(chunk, &mut out[at..at + chunk.len() * 2]);
        at += chunk.len() * 2;
    }
    header_value(&out)
}

#[cfg(test)]
mod tests;
