//! Following one request from arrival to the end of its response: the
//! [`Record`] is filled along the request path, and [`Observed`] wraps the
//! response body so the record is finished — access log line written —
//! when the last byte has gone to the client, or the client went away.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::request::Parts;
use http::{Response, Version};
use http_body::{Body, Frame, SizeHint};

use super::access_log::{AccessLog, Entry, rfc3339};
use crate::http::ProxyBody;

/// The request id header, created when the client sent none.
pub const REQUEST_ID: &str = "x-request-id";

/// What the proxy's observers share.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Where access log lines go.
    pub access_log: AccessLog,
}

impl Telemetry {
    /// No access log (tests, and `--access-log off`).
    pub fn off() -> Self {
        Self {
            access_log: AccessLog::off(),
        }
    }
}

/// Which way a request goes through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the app to a service.
    Outbound,
    /// From a peer to the app.
    Inbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// One request as the path learns about it.
#[derive(Debug)]
pub struct Record {
    telemetry: Arc<Telemetry>,
    start: Instant,
    entry: Entry,
}

impl Record {
    /// Starts the record of a request that just arrived, and gives it an
    /// `x-request-id` if it has none.
    pub fn start(telemetry: Arc<Telemetry>, direction: Direction, parts: &mut Parts) -> Self {
        let request_id = match parts.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => {
                let id = new_request_id();
                if let Ok(v) = HeaderValue::from_str(&id) {
                    parts.headers.insert(REQUEST_ID, v);
                }
                id
            }
        };
        let entry = Entry {
            start_time: rfc3339(SystemTime::now()),
            direction: direction.as_str(),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
            protocol: match parts.version {
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            authority: crate::http::authority(parts).unwrap_or("-").to_owned(),
            response_code: 0,
            response_flags: String::new(),
            bytes_sent: 0,
            duration_ms: 0,
            upstream_host: None,
            upstream_cluster: None,
            retries: 0,
            request_id,
            trace_id: None,
            peer_identity: None,
            user_agent: parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        Self {
            telemetry,
            start: Instant::now(),
            entry,
        }
    }

    /// The endpoint of the latest try.
    pub fn set_upstream(&mut self, host: &str) {
        self.entry.upstream_host = Some(host.to_owned());
    }

    /// The cluster the request was sent to.
    pub fn set_cluster(&mut self, name: &str) {
        self.entry.upstream_cluster = Some(name.to_owned());
    }

    /// Counts a retry.
    pub fn add_retry(&mut self) {
        self.entry.retries += 1;
    }

    /// The trace the request belongs to.
    pub fn set_trace_id(&mut self, id: String) {
        self.entry.trace_id = Some(id);
    }

    /// Adds an Envoy-style response flag (`UO`, `NR`, ...).
    pub fn flag(&mut self, flag: &str) {
        if !self.entry.response_flags.split(',').any(|f| f == flag) {
            if !self.entry.response_flags.is_empty() {
                self.entry.response_flags.push(',');
            }
            self.entry.response_flags.push_str(flag);
        }
    }

    /// Wraps the response: the record finishes when its body has been sent.
    pub fn observe(mut self, resp: Response<ProxyBody>) -> Response<Observed> {
        self.entry.response_code = resp.status().as_u16();
        resp.map(|inner| {
            let done = inner.is_end_stream();
            let mut body = Observed {
                inner,
                record: Some(self),
            };
            if done {
                body.finish(false);
            }
            body
        })
    }

    fn finish(mut self, bytes_sent: u64, client_gone: bool) {
        if client_gone {
            self.flag("DC");
        }
        if self.entry.response_flags.is_empty() {
            self.entry.response_flags.push('-');
        }
        self.entry.bytes_sent = bytes_sent;
        self.entry.duration_ms = self.start.elapsed().as_millis() as u64;
        let log = &self.telemetry.access_log;
        if log.is_on() {
            log.log(&self.entry);
        }
    }
}

/// A fresh request id: 128 random bits as 32 hex digits.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A response body that finishes its request's [`Record`] at its end.
#[derive(Debug)]
pub struct Observed {
    inner: ProxyBody,
    record: Option<Record>,
}

impl Observed {
    fn finish(&mut self, client_gone: bool) {
        if let Some(record) = self.record.take() {
            let sent = record.entry.bytes_sent;
            record.finish(sent, client_gone);
        }
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some(r)) = (f.data_ref(), this.record.as_mut()) {
                    r.entry.bytes_sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(false);
                }
            }
            Some(Err(_)) => {
                if let Some(r) = this.record.as_mut() {
                    r.flag("UPE");
                }
                this.finish(false);
            }
            None => this.finish(false),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // Dropped before its end: the client went away mid-response.
        self.finish(true);
    }
}
