//! Listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 (prior
//! knowledge) on each with hyper-util's auto builder. The inbound listener
//! adds TLS per PeerAuthentication ([`serve_inbound`]).

mod accept;
pub(crate) mod activity;
pub(crate) mod admit;
pub mod capture;
pub mod captured;
pub(crate) mod detect;
pub mod inbound;
mod inbound_http;
pub(crate) mod observe;
pub(crate) mod orig_dst;
pub mod orig_proto;
pub mod outbound;
pub mod tcp;
pub mod tunnel;
pub(crate) mod watchdog;

pub use accept::serve_inbound;
pub use capture::serve_outbound;
pub use captured::CaptureSettings;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use bytes::Bytes;
use http_body::Body;

use crate::error::ProxyError;
use crate::limits::HeaderLimits;
use activity::ConnectionLimit;
use activity::{Activity, Phase};
use detect::{Prefixed, Protocol};

/// How long a new connection may take to send its first byte, and then to
/// finish the TLS handshake; and how long the capturing listener waits to
/// connect to a TCP destination.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the request target unambiguous before anything reads it: exactly
/// one authority ([`check_host`](crate::http::host::check_host)) and the path normalised per `paths`
/// ([`PathNormalization::apply`](crate::http::path::PathNormalization::apply)). Routing, AuthorizationPolicy and the
/// upstream all see the result; on error the request gets 400.
pub(crate) fn check_request_target(
    parts: &mut http::request::Parts,
    paths: crate::http::path::PathNormalization,
) -> Result<(), ProxyError> {
    crate::http::host::check_host(parts)?;
    paths.apply(&mut parts.uri)?;
    Ok(())
}

/// Serves `handler` on every connection accepted from `listener` until
/// `shutdown` turns true, then closes the listener (new connections are
/// refused) and drains the open ones: idle ones close, HTTP/1.1 ones close
/// after the response in flight (`Connection: close`), HTTP/2 ones get a
/// GOAWAY. Resolves once all are closed; the caller bounds the wait
/// (`--drain-duration`, [`crate::lifecycle`]). `name` is the listener's
/// in the `remora_downstream_cx_*` metrics (`admin`, `stats`, `health`);
/// its connections are limited and timed as every listener's
/// ([`admit`], [`watchdog`]).
pub async fn serve<S, F, B>(
    name: &'static str,
    listener: TcpListener,
    state: Arc<S>,
    handler: fn(Arc<S>, Request<Incoming>) -> F,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builders = Arc::new(Builders::new());
    let limit = ConnectionLimit::new(name, false);
    let graceful = GracefulShutdown::new();
    while let Some(stream) = next_connection(&listener, &mut shutdown).await {
        let Some(slot) = limit.admit() else {
            continue;
        };
        let state = Arc::clone(&state);
        let builders = Arc::clone(&builders);
        let watcher = graceful.watcher();
        let io = slot.watch(stream);
        let activity = Arc::clone(slot.activity());
        tokio::spawn(slot.guard(async move {
            let Some((io, builder)) = sniff_http(io, &activity, &builders, false).await else {
                return;
            };
            let service = service_fn(move |req| {
                let stream = activity.stream();
                // Boxed once here rather than moved whole into hyper's slot:
                // the request path's future is a few KiB.
                let fut = Box::pin(handler(Arc::clone(&state), req));
                async move {
                    let resp = fut.await;
                    drop(stream);
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = builder.serve_connection(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// HTTP servers per protocol: one that sniffs (for what ALPN or
/// detection did not decide) and one per version.
pub(crate) struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    pub(crate) fn new() -> Self {
        let auto = http_builder();
        Self {
            h1: auto.clone().http1_only(),
            h2: auto.clone().http2_only(),
            auto,
        }
    }

    /// The server for a detected protocol (opaque TCP is not served here).
    pub(crate) fn for_protocol(&self, protocol: Protocol) -> &auto::Builder<TokioExecutor> {
        match protocol {
            Protocol::Http1 => &self.h1,
            Protocol::Http2 => &self.h2,
            Protocol::Tcp => &self.auto,
        }
    }
}

/// Reads which HTTP version a connection speaks ([`detect::http_version`],
/// bounded by the connection's watchdog: a client that stops inside the
/// HTTP/2 preface is closed at `listener_filters_timeout`), marks the
/// connection established, and returns it with the server for that
/// version. `None` when the client closed, or the listener has no room
/// for it ([`Activity::established`]).
pub(crate) async fn sniff_http<'b, I>(
    mut io: I,
    activity: &Activity,
    builders: &'b Builders,
    authenticated: bool,
) -> Option<(Prefixed<I>, &'b auto::Builder<TokioExecutor>)>
where
    I: tokio::io::AsyncRead + Unpin,
{
    let (protocol, prefix) = match detect::http_version(&mut io).await {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "connection failed before its first request");
            return None;
        }
    };
    let phase = match protocol {
        Protocol::Http2 => Phase::Http2,
        _ => Phase::Http1,
    };
    if !activity.established(phase, authenticated) {
        return None;
    }
    Some((Prefixed::new(prefix, io), builders.for_protocol(protocol)))
}

/// The HTTP server every listener uses: HTTP/1.1 with keep-alive and
/// HTTP/2, told apart by the HTTP/2 preface.
///
/// Request heads are capped per [`crate::limits::headers`] with room to
/// spare: a head over the limit but under the cap reaches the handler,
/// which refuses it with 431 and a reason; hyper refuses what is over the
/// cap (431 without a body over HTTP/1.1, a 431 or a reset on the h2
/// stream), and never ends an h2 connection for a head the check would
/// have let through.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let limits = crate::limits::headers();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut h1 = builder.http1();
    // hyper's own header timer (30 s) also runs on an idle keep-alive
    // connection; the watchdog's `request_headers` starts at a head's
    // first byte instead, as Envoy's does.
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(HeaderLimits::h1_buf_size(limits.request_bytes));
    if let Some(max) = limits.h1_max_headers() {
        h1.max_headers(max);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.h2_list_size(limits.request_bytes));
    builder
}

/// The next accepted connection (no Nagle), or `None` once `shutdown`
/// turns true.
async fn next_connection(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<TcpStream> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(shutdown) => return None,
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
