//! Connections to one endpoint: a stack of idle HTTP/1.1 connections and one
//! shared, multiplexed HTTP/2 connection.
//!
//! The protocol towards the endpoint is the protocol the request came in
//! with, so gRPC (h2, trailers) passes through unchanged.

use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response, Version};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::{RequestBody, UpstreamBody};
use super::endpoint::{ActiveRequest, Endpoint};

/// Idle HTTP/1.1 connections kept per endpoint; more are closed.
const MAX_IDLE_H1: usize = 64;

/// Pool behaviour from the DestinationRule's `connectionPool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `tcp.connectTimeout` (Istio's default: 10 s).
    pub connect_timeout: Duration,
    /// `http.maxRequestsPerConnection`; 0 means unlimited, 1 disables keep-alive.
    pub max_requests_per_connection: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_requests_per_connection: 0,
        }
    }
}

/// Why a request could not be sent or answered by the upstream.
#[derive(Debug, thiserror::Error)]
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
}

impl UpstreamError {
    /// No TCP connection was made (Envoy's `connect-failure`).
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::ConnectTimeout { .. })
    }

    /// The request certainly never reached the app: a connect failure, an
    /// h2 stream the server refused, or a request hyper never wrote. Such
    /// failures are safe to retry for any method.
    pub fn never_reached_app(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::ConnectTimeout { .. } | Self::Overflow { .. } => true,
            Self::Request { source, .. } => {
                source.is_canceled() // hyper: the request was not sent
                    || is_refused(source)
            }
        }
    }

    /// The h2 stream was refused by the server (Envoy's `refused-stream`).
    pub fn is_refused_stream(&self) -> bool {
        matches!(self, Self::Request { source, .. } if is_refused(source))
    }

    /// The connection broke after the request may have been sent (Envoy's
    /// `reset`).
    pub fn is_reset(&self) -> bool {
        matches!(self, Self::Request { .. })
    }

    /// A circuit-breaker overflow.
    pub fn is_overflow(&self) -> bool {
        matches!(self, Self::Overflow { .. })
    }
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
}

/// The connections of one endpoint.
#[derive(Debug, Default)]
pub(super) struct Connections {
    idle_h1: Mutex<Vec<IdleH1>>,
    h2: tokio::sync::Mutex<Option<http2::SendRequest<RequestBody>>>,
}

impl Connections {
    /// Returns a connection whose response finished cleanly.
    pub(super) fn put_idle(&self, conn: IdleH1) {
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_H1 {
            idle.push(conn);
        }
    }

    fn take_idle(&self) -> Option<IdleH1> {
        let mut idle = self.idle_h1.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }
}

impl Endpoint {
    /// Sends `req` to this endpoint over a pooled or new connection.
    ///
    /// A pooled connection that turns out to be closed before the request was
    /// written (the idle race) is replaced by a new one transparently; the
    /// request never reached the upstream, so this is safe for any method.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
        active: ActiveRequest,
        settings: &PoolSettings,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if req.version() == Version::HTTP_2 {
            self.send_h2(req, active, settings).await
        } else {
            self.send_h1(req, active, settings).await
        }
    }

    async fn send_h1(
        &self,
        mut req: Request<RequestBody>,
        active: ActiveRequest,
        settings: &PoolSettings,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        loop {
            let (mut conn, reused) = match self.connections.take_idle() {
                Some(mut conn) => match conn.sender.ready().await {
                    Ok(()) => (conn, true),
                    Err(_) => continue,
                },
                None => (
                    IdleH1 {
                        sender: self.connect_h1(settings).await?,
                        uses: 0,
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
                    _ => return Err(self.request_error(e.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        &self,
        mut req: Request<RequestBody>,
        active: ActiveRequest,
        settings: &PoolSettings,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        for attempt in 0..2 {
            let mut sender = self.h2_sender(settings, attempt > 0).await?;
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp.map(|body| UpstreamBody::new(body, active, None))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if attempt == 0 => req = unsent,
                    _ => return Err(self.request_error(e.into_error())),
                },
            }
        }
        Err(UpstreamError::Connect {
            address: self.address().to_owned(),
            source: std::io::Error::other(
                "HTTP/2 connection closed twice before the request was sent",
            ),
        })
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
        let io = self.connect_tcp(settings).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(|e| self.request_error(e))?;
        tokio::spawn(conn);
        *slot = Some(sender.clone());
        Ok(sender)
    }

    async fn connect_h1(
        &self,
        settings: &PoolSettings,
    ) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
        let io = self.connect_tcp(settings).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| self.request_error(e))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn connect_tcp(
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
        Ok(TokioIo::new(stream))
    }

    fn request_error(&self, source: hyper::Error) -> UpstreamError {
        UpstreamError::Request {
            address: self.address().to_owned(),
            source,
        }
    }
}
