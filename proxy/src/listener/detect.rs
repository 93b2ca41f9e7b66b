//! Protocol detection on a captured connection: HTTP/1.x, HTTP/2 (prior
//! knowledge) or anything else, which is forwarded as opaque TCP.
//!
//! The listener reads the connection's first bytes (at most
//! [`MAX_DETECT_BYTES`]) and keeps them: [`Prefixed`] hands them to
//! whoever serves the connection next, HTTP server or TCP forwarder.
//!
//! Two bounds keep a connection from stalling here:
//!
//! - **silence** (`--protocol-detection-timeout`, [`DEFAULT_SILENCE`]): a
//!   client that sends nothing within it is taken for the client of a
//!   server-first protocol (SMTP, MySQL, a banner) and forwarded as TCP
//!   at once, so the server's greeting reaches it after this delay and not
//!   after linkerd2-proxy's 10 s (linkerd2 #5922, #7768). A client-first
//!   protocol writes right after `connect`, far within it; a slow HTTP
//!   client that misses it still works, as TCP (without L7 routing);
//! - **first line** ([`FIRST_LINE_TIMEOUT`]): once bytes came, the rest
//!   of an HTTP request line must follow within it, or what came is
//!   forwarded as TCP.
//!
//! HTTP/1 is recognised by a whole request line, `token SP target SP
//! HTTP/1.x CR`: a Redis inline command (`GET key\r\n`) has no version and
//! stays TCP; TLS (0x16), PostgreSQL (a length) and RESP (`*1\r\n`) are
//! refused at their first bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a captured connection may stay silent before it is forwarded
/// as TCP: the delay a server-first protocol's greeting takes.
pub(crate) const DEFAULT_SILENCE: Duration = Duration::from_millis(100);

/// How long the rest of the first line may take once bytes came.
pub(crate) const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many bytes are read to decide; a longer request line that
/// is still plausible HTTP is left to the HTTP server (and its limits).
pub(crate) const MAX_DETECT_BYTES: usize = 8 * 1024;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a captured connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// An HTTP/1.0 or HTTP/1.1 request line came first.
    Http1,
    /// The HTTP/2 preface came first.
    Http2,
    /// Anything else, or nothing within the silence bound.
    Tcp,
}

impl Protocol {}

/// Reads the first bytes of `io` and decides. The bytes read are returned
/// with the verdict; nothing is lost. An I/O error ends the connection.
pub(crate) async fn detect<T>(io: &mut T, silence: Duration) -> io::Result<(Protocol, Bytes)>
where
    T: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    match tokio::time::timeout(silence, io.read_buf(&mut buf)).await {
        Err(_) | Ok(Ok(0)) => return Ok((Protocol::Tcp, buf.freeze())),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
    }
    let deadline = tokio::time::Instant::now() + FIRST_LINE_TIMEOUT;
    loop {
        if let Some(protocol) = classify(&buf) {
            return Ok((protocol, buf.freeze()));
        }
        if buf.len() >= MAX_DETECT_BYTES {
            // Still a plausible request line, just a long one.
            return Ok((Protocol::Http1, buf.freeze()));
        }
        buf.reserve(1024.min(MAX_DETECT_BYTES - buf.len()));
        let mut limited = (&mut *io).take((MAX_DETECT_BYTES - buf.len()) as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Err(_) | Ok(Ok(0)) => return Ok((Protocol::Tcp, buf.freeze())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Reads until the bytes are the HTTP/2 preface or cannot be, as hyper's
/// own sniffing does, but with the bytes kept and the time bounded by the
/// caller's watchdog: which HTTP version the client speaks
/// ([`Protocol::Http1`] or [`Protocol::Http2`]) and the bytes read (at
/// most the preface's 24). `None` when the client closes first.
pub(crate) async fn http_version<T>(io: &mut T) -> io::Result<Option<(Protocol, Bytes)>>
where
    T: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(H2_PREFACE.len());
    loop {
        let n = buf.len();
        if buf[..] != H2_PREFACE[..n] {
            return Ok(Some((Protocol::Http1, buf.freeze())));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some((Protocol::Http2, buf.freeze())));
        }
        let mut limited = (&mut *io).take((H2_PREFACE.len() - n) as u64);
        if limited.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// The verdict on the bytes so far, or `None` when more are needed.
pub(crate) fn classify(buf: &[u8]) -> Option<Protocol> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    http1_request_line(buf)
}

/// The longest method Remora waits for (WebDAV's are under 20).
const MAX_METHOD: usize = 24;

/// `token SP target SP HTTP/1.x CR`: `Some(Http1)` when it is one,
/// `Some(Tcp)` as soon as it cannot be, `None` while it may still be.
fn http1_request_line(buf: &[u8]) -> Option<Protocol> {
    let method_len = buf.iter().position(|&b| !is_tchar(b));
    let method_len = match method_len {
        None if buf.len() > MAX_METHOD => return Some(Protocol::Tcp),
        None => return None,
        Some(0) => return Some(Protocol::Tcp),
        Some(n) if n > MAX_METHOD || buf[n] != b' ' => return Some(Protocol::Tcp),
        Some(n) => n,
    };
    let rest = &buf[method_len + 1..];
    let target_len = match rest.iter().position(|&b| !(0x21..=0x7e).contains(&b)) {
        None => return None,
        Some(0) => return Some(Protocol::Tcp),
        Some(n) if rest[n] != b' ' => return Some(Protocol::Tcp),
        Some(n) => n,
    };
    let version = &rest[target_len + 1..];
    let expected = b"HTTP/1.";
    let head = version.len().min(expected.len());
    if version[..head] != expected[..head] {
        return Some(Protocol::Tcp);
    }
    match version.get(7..9) {
        None if version.len() <= 8 => match version.get(7) {
            None | Some(b'0' | b'1') => None,
            Some(_) => Some(Protocol::Tcp),
        },
        Some([b'0' | b'1', b'\r']) => Some(Protocol::Http1),
        _ => Some(Protocol::Tcp),
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A connection whose first bytes were already read: reads give them
/// back first, then read the connection; writes go straight to it.
#[derive(Debug)]
pub(crate) struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    /// `inner`, with `prefix` read again first.
    pub(crate) fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
