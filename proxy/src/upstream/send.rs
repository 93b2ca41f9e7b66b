//! Sending a request to an endpoint: a pooled or new connection, HTTP/1.1
//! or HTTP/2, plaintext or mTLS to a peer sidecar, within the endpoint's
//! circuit-breaker limits. The endpoint's state is [`super::endpoint`];
//! the pool's types are [`super::pool`], the mTLS client's
//! [`super::tls`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use remora_certs::{AllowedPeers, SpiffeId, peer_identity};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::body::UpstreamBody;
use super::endpoint::{ActiveRequest, Endpoint};
use super::limits::ConnectionSlot;
use super::pool::{IdleH1, PoolSettings, UpstreamError, closed_early};
use super::replay::RequestBody;
use super::tls::{AlertWatch, MtlsClient, MtlsH2, PeerAlert, TlsFailure, Transport, classify};
use crate::limits::HeaderLimits;
use crate::telemetry::Direction;
use crate::telemetry::stats::tls_handshake_failed;

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
        Err(UpstreamError::ClosedBeforeSend {
            address: self.address().to_owned(),
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

    /// The shared mTLS connection, (re)connected when absent, closed, or
    /// `fresh` is asked. A connection opened for a cluster with another
    /// allowed set is reused only if its peer is in `allowed` too;
    /// otherwise a new handshake decides (and, if it succeeds, its
    /// connection replaces the pooled one).
    pub(super) async fn mtls_sender(
        &self,
        settings: &PoolSettings,
        client: &MtlsClient,
        fresh: bool,
    ) -> Result<(http2::SendRequest<RequestBody>, PeerAlert), UpstreamError> {
        let MtlsClient::Ready { config, allowed } = client else {
            return Err(self.tls_error(TlsFailure::NoIdentity));
        };
        let mut slot = self.connections.h2_mtls.lock().await;
        if let Some(conn) = slot
            .as_ref()
            .filter(|c| !fresh && !c.sender.is_closed() && allowed.check(&c.peer).is_ok())
        {
            return Ok(conn.for_request());
        }
        // Boxed: the handshakes' state is large, and most requests find a
        // connection; every request's future is moved whole, so it stays small.
        let conn = Box::pin(self.open_mtls(settings, config, allowed)).await?;
        let for_request = conn.for_request();
        *slot = Some(conn);
        Ok(for_request)
    }

    /// A new mTLS connection: a connection slot, TCP, TLS, then the h2
    /// handshake.
    async fn open_mtls(
        &self,
        settings: &PoolSettings,
        config: &Arc<ClientConfig>,
        allowed: &AllowedPeers,
    ) -> Result<MtlsH2, UpstreamError> {
        let conn_slot = self.new_slot(settings).await?;
        let (io, peer) = self.connect_mtls(settings, config, allowed).await?;
        let io = AlertWatch::new(io);
        let alert = Arc::clone(&io.alert);
        let sender = match self.h2_handshake(TokioIo::new(io), conn_slot).await {
            Ok(sender) => sender,
            Err(e) => return Err(self.refused_by_peer(&alert).unwrap_or(e)),
        };
        Ok(MtlsH2 {
            sender,
            peer,
            alert,
        })
    }

    /// TCP connect, TLS handshake bounded by the connect timeout, then the
    /// checks rustls leaves to us: ALPN h2 and a peer identity.
    async fn connect_mtls(
        &self,
        settings: &PoolSettings,
        config: &Arc<ClientConfig>,
        allowed: &AllowedPeers,
    ) -> Result<(TlsStream<TcpStream>, SpiffeId), UpstreamError> {
        let tcp = self.connect_tcp(settings).await?.into_inner();
        let ip = tcp.peer_addr().map_err(|source| UpstreamError::Connect {
            address: self.address().to_owned(),
            source,
        })?;
        // The verifier ignores the name; an IP keeps SNI off the wire.
        let name = ServerName::IpAddress(ip.ip().into());
        let handshake = TlsConnector::from(Arc::clone(config)).connect(name, tcp);
        let stream = match tokio::time::timeout(settings.connect_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(self.handshake_failed(classify(&e, allowed))),
            Err(_) => {
                return Err(self.handshake_failed(TlsFailure::Timeout(settings.connect_timeout)));
            }
        };
        let conn = stream.get_ref().1;
        match conn.alpn_protocol() {
            Some(b"h2") => {}
            other => {
                let got = other.map_or_else(
                    || "(none)".to_owned(),
                    |p| String::from_utf8_lossy(p).into_owned(),
                );
                return Err(self.handshake_failed(TlsFailure::Alpn(got)));
            }
        }
        let Some(peer) = peer_identity(conn) else {
            return Err(self.handshake_failed(TlsFailure::Handshake {
                reason: "the peer presented no SPIFFE identity".to_owned(),
                expected: allowed.clone(),
            }));
        };
        Ok((stream, peer))
    }

    /// What a request failing on an mTLS connection comes to when the
    /// peer's `alert` ended that connection:
    /// [`TlsFailure::RefusedOurCertificate`]; `None` if no alert came.
    pub(super) fn refused_by_peer(&self, alert: &PeerAlert) -> Option<UpstreamError> {
        let alert = *alert.get()?;
        Some(self.handshake_failed(TlsFailure::RefusedOurCertificate(alert)))
    }

    fn handshake_failed(&self, failure: TlsFailure) -> UpstreamError {
        tls_handshake_failed(Direction::Outbound);
        tracing::debug!(endpoint = self.address(), error = %failure, "mTLS handshake failed");
        self.tls_error(failure)
    }

    fn tls_error(&self, failure: TlsFailure) -> UpstreamError {
        UpstreamError::Tls {
            address: self.address().to_owned(),
            failure,
        }
    }
}
