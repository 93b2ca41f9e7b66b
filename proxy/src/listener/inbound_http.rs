//! HTTP on one accepted inbound connection, whichever listener accepted it
//! (the inbound listener's, [`super::accept`], or a captured one,
//! [`super::capture`]): each request goes to [`inbound::handle`], or to a
//! TCP tunnel for a `CONNECT`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use super::activity::Activity;
use super::inbound::{self, Dialled, Inbound};
use super::tunnel;
use crate::peer::Peer;

/// Serves HTTP on one connection, putting `peer` and where the client
/// `dialled` into each request. A `CONNECT` is a TCP tunnel
/// ([`tunnel::accept`]). Each request is in flight for the watchdog
/// ([`Activity::stream`]) while its handler runs.
pub(super) async fn serve<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    peer: Peer,
    inbound: Arc<Inbound>,
    watcher: Watcher,
    dialled: Dialled,
    activity: Arc<Activity>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut req: Request<Incoming>| {
        let stream = activity.stream();
        let fut = if req.method() == http::Method::CONNECT {
            Box::pin(tunnel::accept(
                Arc::clone(&inbound),
                req,
                peer.clone(),
                dialled,
            )) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
        } else {
            req.extensions_mut().insert(peer.clone());
            req.extensions_mut().insert(dialled);
            // Boxed, as in `listener::serve`: the future is a few KiB.
            Box::pin(inbound::handle(Arc::clone(&inbound), req))
        };
        async move {
            let resp = fut.await;
            drop(stream);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "inbound connection ended with an error");
    }
}
