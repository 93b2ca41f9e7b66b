//! The response body from an upstream: ends the active request when done and
//! gives a clean HTTP/1.1 connection back to its pool.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::endpoint::ActiveRequest;
use super::pool::IdleH1;

/// A request body on its way upstream: the client's body streamed through
/// as it arrives, or a buffered copy that can be sent again on a retry.
pub type RequestBody = http_body_util::Either<Incoming, http_body_util::Full<Bytes>>;

pin_project_lite::pin_project! {
    /// An upstream response body.
    #[derive(Debug)]
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        done: Option<Done>,
    }
}

#[derive(Debug)]
struct Done {
    active: ActiveRequest,
    conn: Option<IdleH1>,
}

impl Done {
    /// The body ended cleanly: the connection may carry another request.
    fn finish(self) {
        if let Some(conn) = self.conn {
            let endpoint = self.active.endpoint();
            if endpoint.pool_idle(conn) {
                endpoint.limits.notify_idle();
            }
        }
    }
}

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, active: ActiveRequest, conn: Option<IdleH1>) -> Self {
        let done = Done { active, conn };
        if inner.is_end_stream() {
            // hyper may never poll an empty body; finish now.
            done.finish();
            return Self { inner, done: None };
        }
        Self {
            inner,
            done: Some(done),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            None => {
                if let Some(done) = this.done.take() {
                    done.finish();
                }
            }
            Some(Ok(_)) if this.inner.is_end_stream() => {
                if let Some(done) = this.done.take() {
                    done.finish();
                }
            }
            // An error or an early drop closes the connection with `Done`.
            Some(_) => {}
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
