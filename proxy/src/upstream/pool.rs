//! Connections to one endpoint: a stack of idle HTTP/1.1 connections and one
//! shared, multiplexed HTTP/2 connection.
//!
//! The protocol towards the endpoint is the protocol the request came in
//! with, so gRPC (h2, trailers) passes through unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::UpstreamBody;
use super::replay::RequestBody;
use super::endpoint::{ActiveRequest, Endpoint};
use super::limits::ConnectionSlot;
use super::tls::{MtlsClient, MtlsH2, TlsFailure, Transport, tls_message};
use crate::limits::HeaderLimits;

/// Idle HTTP/1.1 connections kept per endpoint; more are closed.
const MAX_IDLE_H1: usize = 64;

/// Pool behaviour and circuit-breaker limits from the DestinationRule's
/// `connectionPool`, per destination host. 0 means unlimited throughout
/// (Istio's defaults are 2^32−1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `tcp.connectTimeout` (Istio's default: 10 s).
    pub connect_timeout: Duration,
    /// `http.maxRequestsPerConnection`; 0 means unlimited, 1 disables keep-alive.
    pub max_requests_per_connection: u32,
    /// `tcp.maxConnections`: open connections (HTTP/1.1 and HTTP/2).
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection
    /// while `max_connections` are open; one more overflows at once.
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests`: requests in flight, for any HTTP version.
    pub max_requests: u32,
    /// The shorter of `tcp.idleTimeout` and `http.idleTimeout` (Istio's
    /// default: 1 h): a pooled HTTP/1.1 connection idle this long is
    /// closed instead of reused.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_requests_per_connection: 0,
            max_connections: 0,
            max_pending_requests: 0,
            max_requests: 0,
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// Why a request could not be sent or answered by the upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("connect to {address} failed: {source}")]
    Connect {
        /// The endpoint.
        address: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The TCP connection was not made in time.
    #[error("connect to {address} timed out after {after:?}")]
    ConnectTimeout {
        /// The endpoint.
        address: String,
        /// The connect timeout in force.
        after: Duration,
    },
    /// The connection failed before or while the response headers came.
    #[error("upstream {address} failed: {source}")]
    Request {
        /// The endpoint.
        address: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// A pooled HTTP/1.1 connection failed before any byte of the response
    /// came: the upstream had closed it while idle, and the request was
    /// written into a closing socket (the race behind Istio's "503 UC").
    /// The upstream did not process it, but the proxy cannot prove that, so
    /// only idempotent methods are retried on it by default.
    #[error(
        "pooled connection to {address} was closed by the upstream before it answered: {source}"
    )]
    Stale {
        /// The endpoint.
        address: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// A circuit-breaker limit of the destination host was reached: the
    /// request was not sent. Answered 503 with `x-remora-overloaded: true`,
    /// never retried, never counted against the host's health.
    #[error("upstream {address} overloaded: {limit} reached")]
    Overflow {
        /// The endpoint.
        address: String,
        /// Which limit, e.g. `maxConnections (1)`.
        limit: String,
    },
    /// The peer sidecar answered that it could not connect to its app
    /// ([`crate::http::APP_UNREACHED`], from an mTLS peer): a connect
    /// failure of that endpoint, and the request never reached an app.
    #[error("upstream {address}: its sidecar could not connect to its app")]
    AppUnreached {
        /// The endpoint (the peer sidecar).
        address: String,
    },
    /// No usable mTLS connection: the handshake failed (the peer's chain or
    /// SPIFFE ID was refused, or it refused ours), ALPN did not give h2, or
    /// this proxy has no identity. The request never reached the app.
    #[error("{}", tls_message(.address, .failure))]
    Tls {
        /// The endpoint.
        address: String,
        /// What went wrong.
        failure: TlsFailure,
    },
}

impl UpstreamError {
    /// No connection was made (Envoy's `connect-failure`): TCP failed, or
    /// the mTLS handshake did. A missing identity of our own is not one: it
    /// says nothing about the endpoint.
    pub(crate) fn is_connect_failure(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::ConnectTimeout { .. } | Self::AppUnreached { .. } => true,
            Self::Tls { failure, .. } => *failure != TlsFailure::NoIdentity,
            _ => false,
        }
    }

    /// The endpoint needs mTLS and this proxy has no identity: a local
    /// problem, never counted against the endpoint's health.
    pub(crate) fn is_missing_identity(&self) -> bool {
        matches!(
            self,
            Self::Tls {
                failure: TlsFailure::NoIdentity,
                ..
            }
        )
    }

    /// The request certainly never reached the app: a connect failure, an
    /// h2 stream the server refused, or a request hyper never wrote. Such
    /// failures are safe to retry for any method.
    pub(crate) fn never_reached_app(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::AppUnreached { .. }
            | Self::Overflow { .. }
            | Self::Tls { .. } => true,
            Self::Request { source, .. } => {
                source.is_canceled() // hyper: the request was not sent
                    || is_refused(source)
            }
            Self::Stale { .. } => false,
        }
    }

    /// The h2 stream was refused by the server (Envoy's `refused-stream`).
    pub(crate) fn is_refused_stream(&self) -> bool {
        matches!(self, Self::Request { source, .. } if is_refused(source))
    }

    /// The connection broke after the request may have been sent (Envoy's
    /// `reset`).
    pub(crate) fn is_reset(&self) -> bool {
        matches!(self, Self::Request { .. } | Self::Stale { .. })
    }

    /// A reused connection that the upstream had closed while idle.
    pub(crate) fn is_stale(&self) -> bool {
        matches!(self, Self::Stale { .. })
    }

    /// A circuit-breaker overflow.
    pub(crate) fn is_overflow(&self) -> bool {
        matches!(self, Self::Overflow { .. })
    }
}

/// Whether hyper's error on a reused connection says the peer had closed
/// it: end of stream or a reset before the response began.
fn closed_early(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_closed() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = err.source();
    }
    false
}

/// Whether hyper's error is an h2 stream the server refused (RST_STREAM or
/// GOAWAY with REFUSED_STREAM: RFC 9113 says it was not processed).
fn is_refused(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = err.source();
    }
    false
}

/// An idle HTTP/1.1 connection and how many requests it has carried.
#[derive(Debug)]
pub(super) struct IdleH1 {
    pub(super) sender: http1::SendRequest<RequestBody>,
    pub(super) uses: u32,
    /// When it went idle, for the idle timeout.
    pub(super) since: Instant,
    /// When it goes idle past this, it is closed rather than reused.
    pub(super) idle_timeout: Duration,
}

impl IdleH1 {
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < self.idle_timeout
    }
}

/// The connections of one endpoint.
#[derive(Debug, Default)]
pub(super) struct Connections {
    idle_h1: Mutex<Vec<IdleH1>>,
    h2: tokio::sync::Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// The mTLS connection to a peer proxy (always HTTP/2).
    pub(super) h2_mtls: tokio::sync::Mutex<Option<MtlsH2>>,
    /// A [`reap`] task is watching the idle connections.
    reaper: AtomicBool,
}

impl Endpoint {
    /// Pools a connection whose response finished cleanly, and makes sure
    /// a task closes it once it has been idle past its timeout (Istio:
    /// "the connection will be closed"), rather than only skipping it when
    /// it is next wanted. Returns whether it was kept.
    pub(super) fn pool_idle(self: &Arc<Self>, conn: IdleH1) -> bool {
        let kept = self.connections.put_idle(conn);
        if kept && !self.connections.reaper.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
        kept
    }
}

/// Closes an endpoint's idle HTTP/1.1 connections as their idle timeouts
/// pass; ends when none is left idle (or the endpoint is gone). One task
/// per endpoint at most, and none while nothing is pooled.
async fn reap(endpoint: Weak<Endpoint>) {
    loop {
        let next = match endpoint.upgrade() {
            Some(e) => e.connections.close_expired(Instant::now()),
            None => return,
        };
        match next {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => {
                let Some(e) = endpoint.upgrade() else { return };
                e.connections.reaper.store(false, Ordering::Release);
                // A connection pooled between the check and the store saw
                // the flag still set: look once more before leaving.
                if e.connections.idle_count() == 0
                    || e.connections.reaper.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        }
    }
}

impl Connections {
    /// Keeps a connection whose response finished cleanly, closing those
    /// past their idle timeout or closed by the upstream meanwhile.
    /// Returns whether it was kept.
    pub(super) fn put_idle(&self, mut conn: IdleH1) -> bool {
        let now = Instant::now();
        conn.since = now;
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.usable(now));
        if idle.len() < MAX_IDLE_H1 {
            idle.push(conn);
            true
        } else {
            false
        }
    }

    /// Closes (drops) the idle connections past their timeout or closed by
    /// the upstream; returns when the next one expires, if any is left.
    fn close_expired(&self, now: Instant) -> Option<Instant> {
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.usable(now));
        idle.iter().map(|c| c.since + c.idle_timeout).min()
    }

    fn idle_count(&self) -> usize {
        self.idle_h1.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The most recently used idle connection that is still open and within
    /// its idle timeout; the others on the way are closed (dropped).
    fn take_idle(&self) -> Option<IdleH1> {
        let now = Instant::now();
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.usable(now) {
                return Some(conn);
            }
        }
        None
    }
}

/// Where an HTTP/1.1 request's connection comes from.
enum H1Slot {
    Idle(IdleH1),
    New(ConnectionSlot),
}

impl Endpoint {
    /// Sends `req` to this endpoint over a pooled or new connection, by
    /// `transport`. Over [`Transport::Mtls`] the request must be HTTP/2
    /// (`listener::orig_proto::encode` converts HTTP/1.1 requests).
    ///
    /// A pooled connection that turns out to be closed before the request was
    /// written (the idle race) is replaced by a new one transparently; the
    /// request never reached the upstream, so this is safe for any method.
    ///
    /// Circuit breaking: over `http2MaxRequests` in flight, or with
    /// `maxConnections` open and `http1MaxPendingRequests` already waiting,
    /// the request fails at once with [`UpstreamError::Overflow`]. Below
    /// that, a request that finds all connections busy waits for one.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
        mut active: ActiveRequest,
        settings: &PoolSettings,
        transport: Transport<'_>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if active.admitted.is_none() {
            let slot = self
                .limits
                .try_admit(settings.max_requests)
                .ok_or_else(|| {
                    self.overflow(format!("http2MaxRequests ({})", settings.max_requests))
                })?;
            active.admitted = Some(slot);
        }
        match transport {
            Transport::Mtls(client) => self.send_h2(req, active, settings, Some(client)).await,
            Transport::Plaintext if req.version() == Version::HTTP_2 => {
                self.send_h2(req, active, settings, None).await
            }
            Transport::Plaintext => self.send_h1(req, active, settings).await,
        }
    }

    async fn send_h1(
        &self,
        mut req: Request<RequestBody>,
        active: ActiveRequest,
        settings: &PoolSettings,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        loop {
            let slot = self.h1_slot(settings).await?;
            let (mut conn, reused) = match slot {
                H1Slot::Idle(mut conn) => match conn.sender.ready().await {
                    Ok(()) => (conn, true),
                    Err(_) => continue,
                },
                H1Slot::New(slot) => (
                    IdleH1 {
                        sender: Box::pin(self.connect_h1(settings, slot)).await?,
                        uses: 0,
                        since: Instant::now(),
                        idle_timeout: settings.idle_timeout,
                    },
                    false,
                ),
            };
            match conn.sender.try_send_request(req).await {
                Ok(resp) => {
                    conn.uses += 1;
                    let max = settings.max_requests_per_connection;
                    let keep = (max == 0 || conn.uses < max).then_some(conn);
                    return Ok(resp.map(|body| UpstreamBody::new(body, active, keep)));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ if reused && closed_early(e.error()) => {
                        return Err(UpstreamError::Stale {
                            address: self.address().to_owned(),
                            source: e.into_error(),
                        });
                    }
                    _ => return Err(self.request_error(e.into_error())),
                },
            }
        }
    }

    /// Over the shared h2 connection: plaintext, or mTLS with `tls`.
    async fn send_h2(
        &self,
        mut req: Request<RequestBody>,
        active: ActiveRequest,
        settings: &PoolSettings,
        tls: Option<&MtlsClient>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        for attempt in 0..2 {
            let (mut sender, alert) = match tls {
                Some(client) => {
                    let (sender, alert) = self.mtls_sender(settings, client, attempt > 0).await?;
                    (sender, Some(alert))
                }
                None => (self.h2_sender(settings, attempt > 0).await?, None),
            };
            // A peer refusing our certificate ends the connection with an
            // alert that arrives after the handshake: name it rather than
            // retry into the same refusal.
            let refused = || alert.as_ref().and_then(|a| self.refused_by_peer(a));
            if sender.ready().await.is_err() {
                match refused() {
                    Some(err) => return Err(err),
                    None => continue,
                }
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp.map(|body| UpstreamBody::new(body, active, None))),
                Err(mut e) => {
                    if let Some(err) = refused() {
                        return Err(err);
                    }
                    match e.take_message() {
                        Some(unsent) if attempt == 0 => req = unsent,
                        _ => return Err(self.request_error(e.into_error())),
                    }
                }
            }
        }
        Err(UpstreamError::Connect {
            address: self.address().to_owned(),
            source: std::io::Error::other(
                "HTTP/2 connection closed twice before the request was sent",
            ),
        })
    }

    /// An idle pooled connection, or a slot to open one; waits (queued
    /// under `http1MaxPendingRequests`) while `maxConnections` are busy.
    async fn h1_slot(&self, settings: &PoolSettings) -> Result<H1Slot, UpstreamError> {
        let attempt = || {
            if let Some(conn) = self.connections.take_idle() {
                return Some(H1Slot::Idle(conn));
            }
            self.limits
                .try_open(settings.max_connections)
                .map(H1Slot::New)
        };
        self.limits
            .wait(settings.max_pending_requests, attempt)
            .await
            .ok_or_else(|| self.pending_overflow(settings))
    }

    /// A slot for a new connection, waiting like [`Self::h1_slot`]; idle
    /// HTTP/1.1 connections are closed to make room.
    pub(super) async fn new_slot(
        &self,
        settings: &PoolSettings,
    ) -> Result<ConnectionSlot, UpstreamError> {
        let attempt = || {
            let slot = self.limits.try_open(settings.max_connections);
            if slot.is_none() {
                // Its slot comes back when its task ends.
                drop(self.connections.take_idle());
            }
            slot
        };
        self.limits
            .wait(settings.max_pending_requests, attempt)
            .await
            .ok_or_else(|| self.pending_overflow(settings))
    }

    fn pending_overflow(&self, settings: &PoolSettings) -> UpstreamError {
        self.overflow(format!(
            "maxConnections ({}) and http1MaxPendingRequests ({})",
            settings.max_connections, settings.max_pending_requests
        ))
    }

    fn overflow(&self, limit: String) -> UpstreamError {
        UpstreamError::Overflow {
            address: self.address().to_owned(),
            limit,
        }
    }

    /// The shared h2 connection, (re)connected when absent or closed.
    async fn h2_sender(
        &self,
        settings: &PoolSettings,
        fresh: bool,
    ) -> Result<http2::SendRequest<RequestBody>, UpstreamError> {
        let mut slot = self.connections.h2.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !fresh && !s.is_closed()) {
            return Ok(sender.clone());
        }
        // The old connection, if any, closes once its streams end.
        slot.take();
        // Boxed, as in `mtls_sender`: most requests find a connection.
        let sender = Box::pin(self.open_h2(settings)).await?;
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// A new plaintext h2 connection, driven by its own task, which frees
    /// the connection slot at its end.
    async fn open_h2(
        &self,
        settings: &PoolSettings,
    ) -> Result<http2::SendRequest<RequestBody>, UpstreamError> {
        let conn_slot = self.new_slot(settings).await?;
        let io = self.connect_tcp(settings).await?;
        self.h2_handshake(io, conn_slot).await
    }

    /// The HTTP/2 handshake over `io` (plaintext or TLS); a task drives the
    /// connection and frees `conn_slot` when it closes.
    pub(super) async fn h2_handshake<T>(
        &self,
        io: T,
        conn_slot: ConnectionSlot,
    ) -> Result<http2::SendRequest<RequestBody>, UpstreamError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        // Response heads: as the listeners' request heads, capped above
        // the limit that the handlers check with a reason.
        let limits = crate::limits::headers();
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .max_header_list_size(limits.h2_list_size(limits.response_bytes))
            .handshake(io)
            .await
            .map_err(|e| self.request_error(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
            drop(conn_slot);
        });
        Ok(sender)
    }

    /// Opens a connection that holds `slot` until it closes.
    async fn connect_h1(
        &self,
        settings: &PoolSettings,
        slot: ConnectionSlot,
    ) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
        let io = self.connect_tcp(settings).await?;
        let limits = crate::limits::headers();
        let mut builder = http1::Builder::new();
        builder.max_buf_size(HeaderLimits::h1_buf_size(limits.response_bytes));
        if let Some(max) = limits.h1_max_headers() {
            builder.max_headers(max);
        }
        let (sender, conn) = builder
            .handshake(io)
            .await
            .map_err(|e| self.request_error(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
        Ok(sender)
    }

    pub(super) async fn connect_tcp(
        &self,
        settings: &PoolSettings,
    ) -> Result<TokioIo<TcpStream>, UpstreamError> {
        let address = self.address();
        let stream = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                address: address.to_owned(),
                after: settings.connect_timeout,
            })?
            .map_err(|source| UpstreamError::Connect {
                address: address.to_owned(),
                source,
            })?;
        // Latency matters more than packet count on a sidecar hop.
        let _ = stream.set_nodelay(true);
        crate::telemetry::metrics::upstream_connection_opened(self.direction());
        Ok(TokioIo::new(stream))
    }

    pub(super) fn request_error(&self, source: hyper::Error) -> UpstreamError {
        UpstreamError::Request {
            address: self.address().to_owned(),
            source,
        }
    }
}
