//! One watchdog per downstream connection: it closes a connection that
//! stays too long in one state ([`crate::limits::Timeouts`]), as Envoy's
//! timers do, without costing the request path a timer.
//!
//! The connection's socket is wrapped in [`Watched`], which counts the
//! bytes read and written (one relaxed atomic add per read or write that
//! moved bytes); each request holds a [`Stream`] while its handler runs
//! (two atomic adds). The watchdog runs beside the connection, in the same
//! task ([`super::admit::Slot::guard`]), and wakes on its own coarse
//! schedule (a quarter of the shortest bound that applies) to compare
//! the counters with what it saw last: a bound fires between its value
//! and one and a quarter times it after the last sign of life. Nothing is
//! reset per byte or per request.
//!
//! What it enforces, per phase ([`Phase`]):
//!
//! - `Detecting` (from accept until the listener knows the protocol: TLS
//!   handshake, HTTP version, opaque TCP): `listener_filters` from accept;
//! - HTTP: `stream_idle` while requests are in flight and no byte moves
//!   either way; `idle` while none is in flight and no byte moves; over
//!   HTTP/1, `request_headers` from the first byte of a request head until
//!   hyper hands the request over;
//! - TCP: `tcp_idle` while no byte moves either way.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::activity::{Activity, Phase};
use crate::limits::Timeouts;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The protocol was not known within `listener_filters_timeout`.
    ListenerFilters,
    /// An HTTP/1 request head did not arrive whole within
    /// `request_headers_timeout`.
    RequestHeaders,
    /// Requests in flight, nothing moved within `stream_idle_timeout`.
    StreamIdle,
    /// No request, nothing moved within `idle_timeout`.
    Idle,
    /// Opaque TCP, nothing moved within `tcp_idle_timeout`.
    TcpIdle,
    /// Still detecting when the listener was full: closed for a newer one.
    Evicted,
}

impl Ended {
    /// The position in [`DOWNSTREAM_TIMEOUTS`] (the `timeout` label of
    /// `remora_downstream_cx_timeout_total`); `None` for an eviction.
    ///
    /// [`DOWNSTREAM_TIMEOUTS`]: crate::telemetry::stats::DOWNSTREAM_TIMEOUTS
    pub(crate) fn index(self) -> Option<usize> {
        match self {
            Self::ListenerFilters => Some(0),
            Self::RequestHeaders => Some(1),
            Self::StreamIdle => Some(2),
            Self::Idle => Some(3),
            Self::TcpIdle => Some(4),
            Self::Evicted => None,
        }
    }
}

/// A connection whose reads and writes are counted for its watchdog.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    /// The connection underneath.
    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.activity.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            self.activity.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
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

/// `d`, or `None` when it is zero (the bound is off).
fn on(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// How long the watchdog sleeps in `phase`: a quarter of the shortest
/// bound that applies, so each fires at most a quarter late.
fn tick(phase: Phase, t: &Timeouts) -> Option<Duration> {
    let bounds: &[Duration] = match phase {
        Phase::Detecting => return on(t.listener_filters),
        Phase::Http1 => &[t.request_headers, t.stream_idle, t.idle],
        Phase::Http2 => &[t.stream_idle, t.idle],
        Phase::Tcp => &[t.tcp_idle],
    };
    let shortest = bounds.iter().copied().filter_map(on).min()?;
    Some((shortest / 4).max(Duration::from_millis(10)))
}

/// Resolves when `activity`'s connection has overstayed one of `t`, or
/// was evicted while detecting; runs as long as the connection otherwise.
pub(crate) async fn watch(activity: &Activity, t: &Timeouts) -> Ended {
    let accepted = Instant::now();
    let mut moved = (activity.moved(), accepted);
    // An HTTP/1 request head in progress: since when, and how many
    // requests had started then.
    let mut head: Option<(Instant, u64)> = None;
    loop {
        let phase = activity.phase();
        let sleep = match (phase, tick(phase, t)) {
            (Phase::Detecting, Some(bound)) => Some(accepted + bound),
            (_, Some(every)) => Some(Instant::now() + every),
            (_, None) => None,
        };
        let evicted = async {
            activity.evict.notified().await;
        };
        tokio::select! {
            () = async { match sleep {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            } } => {}
            () = evicted => {
                if activity.phase() == Phase::Detecting
                    && activity.evicted.load(Ordering::Relaxed)
                {
                    return Ended::Evicted;
                }
                continue;
            }
        }
        let now = Instant::now();
        let phase = activity.phase();
        let total = activity.moved();
        if total != moved.0 {
            moved = (total, now);
        }
        let still = now - moved.1;
        let over = |bound: Duration| !bound.is_zero() && still >= bound;
        match phase {
            Phase::Detecting => {
                if on(t.listener_filters).is_some_and(|b| now - accepted >= b) {
                    return Ended::ListenerFilters;
                }
            }
            Phase::Tcp => {
                if over(t.tcp_idle) {
                    return Ended::TcpIdle;
                }
            }
            Phase::Http1 | Phase::Http2 => {
                let streams = activity.streams.load(Ordering::Relaxed);
                if streams > 0 && over(t.stream_idle) {
                    return Ended::StreamIdle;
                }
                if streams == 0 && over(t.idle) {
                    return Ended::Idle;
                }
                if phase == Phase::Http1 && !t.request_headers.is_zero() {
                    let started = activity.started.load(Ordering::Relaxed);
                    let partial = streams == 0
                        && activity.read.load(Ordering::Relaxed)
                            > activity.idle_mark.load(Ordering::Relaxed);
                    head = match head {
                        Some((since, n)) if partial && n == started => {
                            if now - since >= t.request_headers {
                                return Ended::RequestHeaders;
                            }
                            Some((since, n))
                        }
                        _ if partial => Some((now, started)),
                        _ => None,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
