//! Bounds on what a peer may send: the size and number of request and
//! response headers, as Envoy's `max_request_headers_kb` (60 KiB),
//! `max_response_headers_kb` (60 KiB) and `max_headers_count` (100).
//!
//! Set once at start from the command line ([`set_headers`]), read by the
//! listeners (hyper's buffer caps), by both request paths (the checks
//! below) and by the upstream pool (what it advertises to its peers).
//!
//! # Why both sides of a hop are aligned
//!
//! Requests are checked where they enter the mesh: at the client sidecar's
//! outbound listener, with a 431 and a reason. Responses are checked where
//! they enter it: at the server sidecar, from the app, with a 502 and a
//! reason. What passes is carried between sidecars over one shared HTTP/2
//! connection, whose receivers advertise (SETTINGS_MAX_HEADER_LIST_SIZE)
//! and enforce a cap well above the limit ([`HeaderLimits::h2_list_size`]),
//! so that a header block that passed the check never makes the h2 layer
//! refuse a stream or, far worse, end the connection with every other
//! request on it: h2 sends GOAWAY for a header block over four times the
//! advertised size. The second sidecar checks again with
//! [`HOP_ALLOWANCE`] on top, for the headers the first one added.
//!
//! The same goes for time and numbers: [`Timeouts`] bound how long a
//! downstream connection may stay in each state, and [`ConnectionLimits`]
//! how many connections a listener holds (both enforced by
//! [`crate::listener`]).

use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderMap;
use http::request;

/// Envoy's default `max_request_headers_kb` and `max_response_headers_kb`.
pub const DEFAULT_HEADERS_KB: u32 = 60;
/// Envoy's default `max_headers_count` (hyper's HTTP/1.1 parser's too).
pub const DEFAULT_HEADERS_COUNT: usize = 100;
/// What a sidecar may add to a message on its way to the next one (trace
/// context, `x-request-id`, `remora-orig-proto`, the authority moved into
/// the URI): the second sidecar checks the limit plus this.
pub(crate) const HOP_ALLOWANCE: usize = 1024;
/// Headers a sidecar may add, in number, as [`HOP_ALLOWANCE`] in bytes.
const HOP_ALLOWANCE_COUNT: usize = 16;
/// RFC 9113 §6.5.2: each field costs its name, its value and 32 octets.
const H2_FIELD_OVERHEAD: usize = 32;
/// hyper's smallest HTTP/1.1 read buffer.
const H1_MIN_BUF: usize = 8192;

/// The header limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Request line (method, URI) and headers, names and values, in bytes.
    pub request_bytes: usize,
    /// Response headers, names and values, in bytes.
    pub response_bytes: usize,
    /// Headers per message.
    pub count: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self::new(
            DEFAULT_HEADERS_KB,
            DEFAULT_HEADERS_KB,
            DEFAULT_HEADERS_COUNT,
        )
    }
}

/// Which limit a message broke, and by how much: the reason a 431 or 502
/// gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TooLarge {
    /// The headers, in bytes.
    #[error("{what} headers are {size} bytes, over the limit of {limit} bytes ({flag})")]
    Bytes {
        /// `request` or `response`.
        what: &'static str,
        /// Their size.
        size: usize,
        /// The limit.
        limit: usize,
        /// The flag that sets it.
        flag: &'static str,
    },
    /// The headers, in number.
    #[error("{what} has {count} headers, over the limit of {limit} (--max-headers-count)")]
    Count {
        /// `request` or `response`.
        what: &'static str,
        /// How many.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl HeaderLimits {
    /// Limits of `request_kb` and `response_kb` KiB and `count` headers.
    pub fn new(request_kb: u32, response_kb: u32, count: usize) -> Self {
        Self {
            request_bytes: request_kb as usize * 1024,
            response_bytes: response_kb as usize * 1024,
            count,
        }
    }

    /// Checks a request head. `from_proxy`: it came from another sidecar,
    /// which may have added [`HOP_ALLOWANCE`].
    pub(crate) fn check_request(
        &self,
        parts: &request::Parts,
        from_proxy: bool,
    ) -> Result<(), TooLarge> {
        let uri = &parts.uri;
        let line = parts.method.as_str().len()
            + uri.scheme_str().map_or(0, str::len)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        check(
            "request",
            "--max-request-headers-kb",
            line,
            &parts.headers,
            self.request_bytes,
            self.count,
            from_proxy,
        )
    }

    /// Checks response headers. `from_proxy` as in [`Self::check_request`].
    pub(crate) fn check_response(
        &self,
        headers: &HeaderMap,
        from_proxy: bool,
    ) -> Result<(), TooLarge> {
        check(
            "response",
            "--max-response-headers-kb",
            0,
            headers,
            self.response_bytes,
            self.count,
            from_proxy,
        )
    }

    /// hyper's HTTP/1.1 read buffer cap for messages limited to `bytes`:
    /// twice the limit, so that a head over the limit is still read whole
    /// and answered by our check, with a reason; beyond the cap hyper
    /// itself answers 431 (or fails the upstream response) and closes.
    pub(crate) fn h1_buf_size(bytes: usize) -> usize {
        (bytes * 2).max(H1_MIN_BUF)
    }

    /// SETTINGS_MAX_HEADER_LIST_SIZE for messages limited to `bytes`: twice
    /// the limit plus h2's per-field overhead, so that every message that
    /// passed a sidecar's check is accepted by the next one's h2 layer.
    pub(crate) fn h2_list_size(&self, bytes: usize) -> u32 {
        let size = bytes * 2 + (self.count + HOP_ALLOWANCE_COUNT) * H2_FIELD_OVERHEAD;
        u32::try_from(size).unwrap_or(u32::MAX)
    }

    /// hyper's HTTP/1.1 header count cap: ours plus what a sidecar adds, so
    /// that our check answers first. `None` keeps hyper's default (100,
    /// parsed on the stack), which suffices for the default count.
    pub(crate) fn h1_max_headers(&self) -> Option<usize> {
        (self.count > DEFAULT_HEADERS_COUNT).then_some(self.count + HOP_ALLOWANCE_COUNT)
    }
}

fn check(
    what: &'static str,
    flag: &'static str,
    start: usize,
    headers: &HeaderMap,
    limit: usize,
    count_limit: usize,
    from_proxy: bool,
) -> Result<(), TooLarge> {
    let (limit, count_limit) = if from_proxy {
        (limit + HOP_ALLOWANCE, count_limit + HOP_ALLOWANCE_COUNT)
    } else {
        (limit, count_limit)
    };
    let count = headers.len();
    if count > count_limit {
        return Err(TooLarge::Count {
            what,
            count,
            limit: count_limit,
        });
    }
    let size = headers
        .iter()
        .fold(start, |n, (k, v)| n + k.as_str().len() + v.len());
    if size > limit {
        return Err(TooLarge::Bytes {
            what,
            size,
            limit,
            flag,
        });
    }
    Ok(())
}

static HEADERS: OnceLock<HeaderLimits> = OnceLock::new();
/// Sets the header limits for this process; the first call wins (the
/// binary calls it once, before any listener starts).
pub fn set_headers(limits: HeaderLimits) {
    let _ = HEADERS.set(limits);
}

/// The header limits in force: as set, else the defaults.
pub fn headers() -> &'static HeaderLimits {
    HEADERS.get_or_init(HeaderLimits::default)
}

/// How long a downstream connection may stay in each state, with Envoy's
/// names and defaults. [`Duration::ZERO`] turns a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept until the protocol is known (TLS handshake, HTTP/1 or
    /// HTTP/2, or opaque TCP): Envoy's `listener_filters_timeout`, 15 s.
    pub listener_filters: Duration,
    /// From the first byte of an HTTP/1 request head to its end: Envoy's
    /// `request_headers_timeout`, which Envoy leaves off; 10 s here.
    pub request_headers: Duration,
    /// Requests in flight and no byte either way: Envoy's
    /// `stream_idle_timeout`, 5 min.
    pub stream_idle: Duration,
    /// No request in flight and no byte either way: Envoy's HTTP
    /// connection manager `idle_timeout`, 1 h.
    pub idle: Duration,
    /// An opaque TCP connection with no byte either way: Envoy's tcp_proxy
    /// `idle_timeout`, 1 h.
    pub tcp_idle: Duration,
}

/// Envoy's `listener_filters_timeout`.
pub(crate) const DEFAULT_LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);
/// Finite where Envoy's is off: a request head is a few KiB that a client
/// sends at once; 10 s allows a slow link and ends a slowloris.
pub(crate) const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Envoy's `stream_idle_timeout`.
pub(crate) const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's `idle_timeout`, of the HTTP connection manager and tcp_proxy.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            listener_filters: DEFAULT_LISTENER_FILTERS_TIMEOUT,
            request_headers: DEFAULT_REQUEST_HEADERS_TIMEOUT,
            stream_idle: DEFAULT_STREAM_IDLE_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
            tcp_idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// How many connections each listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections per listener (Envoy's listener `max_connections`).
    pub max: usize,
    /// Percent of `max` on the inbound listener that only mTLS peers with
    /// an identity may use: plaintext connections hold at most the rest.
    pub mtls_reserve_percent: u8,
}

/// The default `--mtls-reserve-percent`.
pub const DEFAULT_MTLS_RESERVE_PERCENT: u8 = 25;
/// The most connections a listener holds by default, whatever the
/// open-file limit.
pub(crate) const DEFAULT_MAX_CONNECTIONS_CAP: usize = 16_384;

impl ConnectionLimits {
    /// The default for a process that may open `open_files` files: a
    /// quarter of them per listener, at most [`DEFAULT_MAX_CONNECTIONS_CAP`]
    /// and at least 16. The limit applies to every listener (inbound,
    /// outbound, admin, stats, health); the two that face clients are the
    /// ones a flood fills, so together they can take half the files and
    /// leave the rest for their upstream connections.
    pub fn for_open_files(open_files: u64) -> Self {
        let quarter = usize::try_from(open_files / 4).unwrap_or(usize::MAX);
        Self {
            max: quarter.clamp(16, DEFAULT_MAX_CONNECTIONS_CAP),
            mtls_reserve_percent: DEFAULT_MTLS_RESERVE_PERCENT,
        }
    }

    /// How many connections without a proven identity a listener holds:
    /// all of `max`, less the mTLS reserve when `reserve` applies.
    pub(crate) fn plaintext_max(&self, reserve: bool) -> usize {
        if !reserve {
            return self.max;
        }
        let reserved = self.max * usize::from(self.mtls_reserve_percent.min(100)) / 100;
        self.max - reserved
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::for_open_files(4096)
    }
}

/// Raises this process's soft open-file limit to its hard limit, as Go's
/// runtime does at start (a sidecar's sockets are its files), and returns
/// the limit then in force.
pub fn raise_open_files() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return u64::MAX; // unlimited
    };
    if limit.maximum.is_none_or(|max| max > current) {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum.unwrap_or(u64::MAX);
        }
    }
    current
}

static TIMEOUTS: OnceLock<Timeouts> = OnceLock::new();
static CONNECTIONS: OnceLock<ConnectionLimits> = OnceLock::new();

/// Sets the downstream timeouts for this process; the first call wins.
pub fn set_timeouts(timeouts: Timeouts) {
    let _ = TIMEOUTS.set(timeouts);
}

/// The downstream timeouts in force: as set, else the defaults.
pub(crate) fn timeouts() -> &'static Timeouts {
    TIMEOUTS.get_or_init(Timeouts::default)
}

/// Sets the connection limits for this process; the first call wins.
pub fn set_connections(limits: ConnectionLimits) {
    let _ = CONNECTIONS.set(limits);
}

/// The connection limits in force: as set, else the defaults.
pub fn connections() -> &'static ConnectionLimits {
    CONNECTIONS.get_or_init(ConnectionLimits::default)
}

#[cfg(test)]
mod tests;
