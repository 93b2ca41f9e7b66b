//! Following one request from arrival to the end of its response: the
//! [`Record`] is filled along the request path, and [`Observed`] wraps the
//! response body so the record is finished — request metrics counted,
//! access log line written, span ended — when the last byte has gone to the
//! client, or the client went away.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::USER_AGENT;
use http::request::Parts;
use http::{Response, Version};
use http_body::{Body, Frame, SizeHint};

use crate::config::Cluster;
use crate::http::ProxyBody;
use crate::peer::Peer;
use crate::telemetry::access_log::{Entry, rfc3339};
use crate::telemetry::metrics::{self, RequestLabels};
use crate::telemetry::trace::{RequestInfo, RequestSpan};
use crate::telemetry::{Direction, Telemetry};

/// One request as the path learns about it.
#[derive(Debug)]
pub(crate) struct Record {
    telemetry: Arc<Telemetry>,
    start: Instant,
    span: RequestSpan,
    /// Why the proxy failed the request, for the span's `error.type`.
    error: Option<&'static str>,
    /// The status sent to the client.
    code: u16,
    /// Envoy-style response flags, comma-separated; empty for none.
    flags: String,
    /// Response body bytes sent to the client.
    bytes_sent: u64,
    /// The access log line's own fields, gathered only while the log is
    /// on: formatting a time and copying the request line are most of a
    /// record's cost.
    log: Option<Box<Entry>>,
    /// The metric labels known so far; the code and flags come at the end.
    direction: Direction,
    source: Arc<str>,
    destination: Option<Arc<str>>,
    subset: Option<Arc<str>>,
    mtls: bool,
}

impl Record {
    /// Starts the record of a request that just arrived: starts its span
    /// (continuing the caller's trace, and rewriting the trace headers for
    /// the next hop) and gives it an `x-request-id` if it has none.
    pub(crate) fn start(
        telemetry: Arc<Telemetry>,
        direction: Direction,
        parts: &mut Parts,
    ) -> Self {
        let info = RequestInfo::new(&parts.method, &parts.uri).version(parts.version);
        let mut span = match direction {
            Direction::Inbound => telemetry.tracer.start_server(&mut parts.headers, &info),
            Direction::Outbound => telemetry.tracer.start_client(&mut parts.headers, &info),
        };
        let workload = &telemetry.workload;
        let m = metrics::global();
        let (source, destination, subset, mtls, peer_identity) = match direction {
            Direction::Outbound => (workload.service_label(), None, None, false, None),
            Direction::Inbound => {
                let peer = parts.extensions.get::<Peer>();
                let identity = peer.and_then(|p| p.identity.as_ref());
                let source = identity
                    .and_then(|id| id.path().rsplit_once("/sa/"))
                    .map_or_else(metrics::unknown, |(_, sa)| m.intern(sa));
                (
                    source,
                    Some(workload.fqdn_label()),
                    Some(workload.version_label()),
                    peer.is_some_and(Peer::is_mtls),
                    identity,
                )
            }
        };
        if let Some(id) = peer_identity {
            span.set_peer_identity(id.as_str());
        }
        let log = telemetry.access_log.is_on().then(|| {
            Box::new(Entry {
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
                bytes_received: 0,
                duration_ms: 0,
                upstream_host: None,
                upstream_cluster: None,
                retries: 0,
                request_id: span.request_id().to_owned(),
                trace_id: span.trace_id(),
                peer_identity: peer_identity.map(|id| id.as_str().to_owned()),
                user_agent: parts
                    .headers
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            })
        });
        Self {
            telemetry,
            start: Instant::now(),
            span,
            error: None,
            code: 0,
            flags: String::new(),
            bytes_sent: 0,
            log,
            direction,
            source,
            destination,
            subset,
            mtls,
        }
    }

    /// The route that matched (its name, never the raw path).
    pub(crate) fn set_route(&mut self, route: &str) {
        self.span.set_route(route);
    }

    /// The endpoint of the latest try.
    pub(crate) fn set_upstream(&mut self, host: &str) {
        if let Some(entry) = &mut self.log {
            entry.upstream_host = Some(host.to_owned());
        }
        self.span.set_upstream(host);
    }

    /// The cluster the request was sent to: its service and subset are the
    /// destination in the request metrics.
    pub(crate) fn set_cluster(&mut self, cluster: &Cluster) {
        if let Some(entry) = &mut self.log {
            entry.upstream_cluster = Some(cluster.name().to_owned());
        }
        self.span
            .set_destination(cluster.service(), cluster.subset());
        self.destination = Some(Arc::clone(cluster.service_label()));
        self.subset = Some(Arc::clone(cluster.subset_label()));
    }

    /// A destination that is no cluster of the config (`PassthroughCluster`
    /// or `BlackHoleCluster`, Istio's names): the name stands for the
    /// service in the metrics, so that a host outside the mesh never
    /// becomes a label value.
    pub(crate) fn set_outside_mesh(&mut self, name: &'static str) {
        if let Some(entry) = &mut self.log {
            entry.upstream_cluster = Some(name.to_owned());
        }
        self.destination = Some(metrics::global().intern(name));
        self.subset = Some(metrics::unknown());
    }

    /// Whether the upstream connection of the latest try was mTLS
    /// (outbound; inbound requests take it from their [`Peer`]).
    pub(crate) fn set_mtls(&mut self, mtls: bool) {
        self.mtls = mtls;
    }

    /// Whether the latest try went over mTLS, i.e. to another sidecar.
    pub(crate) fn mtls(&self) -> bool {
        self.mtls
    }

    /// Counts retry number `attempt`, made because of `reason`.
    pub(crate) fn add_retry(&mut self, attempt: u32, reason: &str) {
        if let Some(entry) = &mut self.log {
            entry.retries += 1;
        }
        self.span.add_retry(attempt, reason);
    }

    /// The proxy failed the request: its response flag, also the span's
    /// `error.type`.
    pub(crate) fn fail(&mut self, flag: &'static str) {
        self.error = Some(flag);
        self.flag(flag);
    }

    /// Adds an Envoy-style response flag (`UO`, `NR`, ...).
    pub(crate) fn flag(&mut self, flag: &str) {
        if !self.flags.split(',').any(|f| f == flag) {
            if !self.flags.is_empty() {
                self.flags.push(',');
            }
            self.flags.push_str(flag);
        }
    }

    /// Wraps the response: the record finishes when its body has been sent.
    pub(crate) fn observe(mut self, resp: Response<ProxyBody>) -> Response<Observed> {
        self.code = resp.status().as_u16();
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

    fn finish(mut self, client_gone: bool) {
        if client_gone {
            self.flag("DC");
            self.error.get_or_insert("DC");
        }
        self.span.finish(
            self.code,
            self.error
                .or_else(|| self.flags.contains("UPE").then_some("UPE")),
        );
        let elapsed = self.start.elapsed();
        self.count(elapsed.as_secs_f64() * 1000.0);
        if let Some(mut entry) = self.log.take() {
            entry.response_code = self.code;
            entry.response_flags = if self.flags.is_empty() {
                "-".to_owned()
            } else {
                std::mem::take(&mut self.flags)
            };
            entry.bytes_sent = self.bytes_sent;
            entry.duration_ms = elapsed.as_millis() as u64;
            self.telemetry.access_log.log(&entry);
        }
    }

    /// Counts the finished request in `remora_requests_total` and its
    /// duration histogram.
    fn count(&mut self, duration_ms: f64) {
        let m = metrics::global();
        let labels = RequestLabels {
            direction: self.direction.as_str(),
            source_service: Arc::clone(&self.source),
            destination_service: self.destination.take().unwrap_or_else(metrics::unknown),
            destination_subset: self.subset.take().unwrap_or_else(metrics::unknown),
            response_code: self.code,
            mtls: self.mtls,
            response_flags: if self.flags.is_empty() {
                metrics::no_flags()
            } else {
                m.intern(&self.flags)
            },
        };
        m.record_request(labels, duration_ms);
    }
}

/// A response body that finishes its request's [`Record`] at its end.
#[derive(Debug)]
pub struct Observed {
    inner: ProxyBody,
    record: Option<Record>,
}

impl Observed {
    /// A response that is no request's: a CONNECT tunnel's answer, whose
    /// connection is recorded as TCP instead.
    pub(crate) fn unrecorded(inner: ProxyBody) -> Self {
        Self {
            inner,
            record: None,
        }
    }

    fn finish(&mut self, client_gone: bool) {
        if let Some(record) = self.record.take() {
            record.finish(client_gone);
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
                    r.bytes_sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(false);
                }
            }
            Some(Err(e)) => {
                if let Some(r) = this.record.as_mut() {
                    // Cut off by the route timeout, or failed upstream.
                    let timed_out = e.downcast_ref::<crate::upstream::BodyTimeout>().is_some();
                    r.flag(if timed_out { "UT" } else { "UPE" });
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
