//! The response body from an upstream: ends the active request when done,
//! gives a clean HTTP/1.1 connection back to its pool, and is cut off when
//! the route's timeout passes before it ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::endpoint::ActiveRequest;
use super::pool::IdleH1;

pin_project_lite::pin_project! {
    /// An upstream response body.
    #[derive(Debug)]
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        done: Option<Done>,
        // Boxed: most routes have no timeout, and the body moves with its
        // response through every layer, where each byte is copied again.
        deadline: Option<Pin<Box<Deadline>>>,
    }
}

pin_project_lite::pin_project! {
    /// The route timeout: when it passes, and its length for the error.
    #[derive(Debug)]
    struct Deadline {
        #[pin]
        sleep: Sleep,
        after: Duration,
    }
}

/// The route `timeout` passed while the response body was still coming.
/// As in Envoy, whose route timeout covers the whole response, the
/// response is cut off: the client sees its connection closed (HTTP/1.1)
/// or its stream reset (HTTP/2) before the body ends, and the access log
/// flags it `UT`.
#[derive(Debug, thiserror::Error)]
#[error("the route timeout of {after:?} passed while the response body was coming")]
pub(crate) struct BodyTimeout {
    /// The route timeout.
    pub after: Duration,
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
            return Self {
                inner,
                done: None,
                deadline: None,
            };
        }
        Self {
            inner,
            done: Some(done),
            deadline: None,
        }
    }

    /// Cuts the body off with [`BodyTimeout`] if it has not ended by
    /// `deadline`, the end of the route timeout `after`.
    pub(crate) fn expire_at(&mut self, deadline: Instant, after: Duration) {
        if !self.inner.is_end_stream() {
            self.deadline = Some(Box::pin(Deadline {
                sleep: tokio::time::sleep_until(deadline),
                after,
            }));
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        if let Some(deadline) = this.deadline
            && deadline.as_mut().project().sleep.poll(cx).is_ready()
        {
            let after = deadline.after;
            *this.deadline = None;
            // Mid-response: the connection is closed, never pooled.
            this.done.take();
            crate::telemetry::stats::UPSTREAM_TIMEOUT.inc();
            return Poll::Ready(Some(Err(Box::new(BodyTimeout { after }))));
        }
        let frame = ready!(this.inner.as_mut().poll_frame(cx)).map(|f| f.map_err(Into::into));
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
                *this.deadline = None;
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
