//! A small HTTP client for tests: one keep-alive connection to one address,
//! HTTP/1.1 or HTTP/2 with prior knowledge, reconnecting after an error.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// How long one request may take, connect included, before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which HTTP the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: origin-form URI and a `Host` header.
    Http1,
    /// HTTP/2 with prior knowledge (h2c): the host goes in `:authority`.
    Http2,
}

/// A response, body read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<ReqBody>),
    Http2(http2::SendRequest<ReqBody>),
}

/// A request body: with a length, or in chunks of unknown total length
/// (`transfer-encoding: chunked` over HTTP/1.1, no `content-length` over
/// h2, as gRPC calls go).
type ReqBody = Either<Full<Bytes>, Chunked>;

/// A body that announces no length and yields its chunks one at a time.
#[derive(Debug)]
pub struct Chunked(VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// One connection's worth of client, to `addr`. Requests are sequential
/// (take `&mut self`); use one client per concurrent loop.
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    protocol: Protocol,
    sender: Option<Sender>,
}

impl HttpClient {
    /// A client for `addr`; connects on the first request.
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Self {
        Self {
            addr,
            protocol,
            sender: None,
        }
    }

    /// `GET path` naming `host` (Host header or `:authority`), with extra
    /// `headers`.
    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        self.request(Method::GET, host, path, headers).await
    }

    /// Sends one request with an empty body, bounded by [`REQUEST_TIMEOUT`].
    pub async fn request(
        &mut self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        self.request_with_body(method, host, path, headers, Bytes::new())
            .await
    }

    /// Sends one request whose body is `chunks`, with no length announced,
    /// bounded by [`REQUEST_TIMEOUT`].
    pub async fn request_chunked(
        &mut self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        chunks: Vec<Bytes>,
    ) -> anyhow::Result<Reply> {
        let body = Either::Right(Chunked(chunks.into()));
        self.send_bounded(method, host, path, headers, body).await
    }

    /// Sends one request with `body` (sent with a `content-length`),
    /// bounded by [`REQUEST_TIMEOUT`].
    pub async fn request_with_body(
        &mut self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let body = Either::Left(Full::new(body));
        self.send_bounded(method, host, path, headers, body).await
    }

    async fn send_bounded(
        &mut self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
    ) -> anyhow::Result<Reply> {
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.send(method.clone(), host, path, headers, body),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {REQUEST_TIMEOUT:?}")));
        if result.is_err() {
            self.sender = None; // start afresh next time
        }
        result.with_context(|| format!("{method} {host}{path} via {}", self.addr))
    }

    async fn send(
        &mut self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
    ) -> anyhow::Result<Reply> {
        let mut builder = Request::builder().method(method);
        builder = match self.protocol {
            Protocol::Http1 => builder.uri(path).header(header::HOST, host),
            Protocol::Http2 => builder
                .version(Version::HTTP_2)
                .uri(format!("http://{host}{path}")),
        };
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(body)?;
        let resp = match self.sender().await? {
            Sender::Http1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::Http2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn sender(&mut self) -> anyhow::Result<&mut Sender> {
        let stale = match &self.sender {
            Some(Sender::Http1(s)) => s.is_closed(),
            Some(Sender::Http2(s)) => s.is_closed(),
            None => true,
        };
        if stale {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let io = TokioIo::new(stream);
            self.sender = Some(match self.protocol {
                Protocol::Http1 => {
                    let (s, conn) = http1::handshake(io).await?;
                    tokio::spawn(conn);
                    Sender::Http1(s)
                }
                Protocol::Http2 => {
                    let (s, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                    tokio::spawn(conn);
                    Sender::Http2(s)
                }
            });
        }
        Ok(self.sender.as_mut().expect("just set"))
    }
}
