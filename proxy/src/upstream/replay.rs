//! Making a request body replayable, the two ways Envoy does:
//!
//! - A body known to fit the bound (empty, or a `Content-Length` at most
//!   the bound) is read whole before the first try and sent again, as a
//!   cheap `Bytes` clone, on each retry.
//! - Any other body (chunked HTTP/1.1, h2 without `content-length` such as
//!   most gRPC calls, or a length over the bound) is *teed*: streamed to the
//!   first try as it arrives, never waited for, while a copy of what has
//!   passed is kept up to the bound. A retry replays the copy and then goes
//!   on reading the client where the earlier try stopped. Once more than
//!   the bound has passed, the copy is dropped and the request can no longer
//!   be retried; a connect failure or a refused stream, where nothing was
//!   sent, is still retried whatever the body's size.
//!
//! Request trailers are not kept on a body read whole (HTTP clients and
//! gRPC do not send request trailers in practice); such a body is rejected
//! with 400 rather than forwarded without them. A teed body keeps them.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

/// The error type of the bodies here, as hyper takes it.
type BoxError = Box<dyn StdError + Send + Sync>;

/// A request body as the attempt loop holds it, for the tries after the
/// first (which gets its body from [`replayable`]).
#[derive(Debug)]
pub(crate) enum ReplayableBody<B = Incoming> {
    /// Read whole: every try gets a copy.
    Buffered(Bytes),
    /// Streamed through on the first try only (no retries configured).
    Streamed,
    /// Streamed, with a copy kept for retries while it fits the bound.
    Teed(Tee<B>),
}

impl<B> ReplayableBody<B> {
    /// Whether another try can have the body (for a teed body: now, as
    /// far as it has been read).
    pub(crate) fn is_replayable(&self) -> bool {
        match self {
            Self::Buffered(_) => true,
            Self::Streamed => false,
            Self::Teed(tee) => tee.is_replayable(),
        }
    }

    /// The body for another try; `None` for a body streamed to the first
    /// try, or a teed one that outgrew its copy.
    pub(crate) fn for_retry(&self) -> Option<AttemptBody<B>> {
        match self {
            Self::Buffered(bytes) => Some(Either::Right(Either::Left(Full::new(bytes.clone())))),
            Self::Streamed => None,
            Self::Teed(tee) => tee
                .reader()
                .map(|r| Either::Right(Either::Right(Box::new(r)))),
        }
    }
}

/// A request body a retry can send again: read whole, or teed. The teed
/// reader is boxed: every request's body moves with it, and most are read
/// whole.
pub(crate) type Replay<B = Incoming> = Either<Full<Bytes>, Box<TeeReader<B>>>;

/// The body of one try: the client's `B` streamed through, or a replay.
pub(crate) type AttemptBody<B = Incoming> = Either<B, Replay<B>>;

/// A request body on its way upstream: the client's body streamed through
/// as it arrives, or one a retry can send again (read whole, or teed).
pub(crate) type RequestBody = AttemptBody<Incoming>;

/// A client's body streamed to one try at a time, with a copy of what has
/// passed kept up to a bound so that a later try can start over.
#[derive(Debug)]
pub(crate) struct Tee<B> {
    shared: Arc<Mutex<TeeState<B>>>,
    /// The body's size as the client announced it (exact with a length).
    hint: SizeHint,
}

#[derive(Debug)]
struct TeeState<B> {
    /// The part of the client's body not read yet; `None` at its end.
    rest: Option<B>,
    /// A copy of what has passed, while it fits `limit`. Copied rather
    /// than holding the client's chunks, which share hyper's read buffers:
    /// a trickle of tiny chunks would pin a buffer each.
    kept: BytesMut,
    limit: usize,
    /// More than `limit` passed: `kept` was dropped, no try can follow.
    overflowed: bool,
    trailers: Option<HeaderMap>,
    /// The client's body failed: every later reader fails with this.
    failed: Option<String>,
    /// Which reader may read: the newest. An earlier try's connection
    /// still pulling its body gets an error, which ends that try.
    reader: u64,
}

impl<B: Body> Tee<B> {
    /// Tees `body`, keeping up to `limit` bytes.
    pub(crate) fn new(body: B, limit: usize) -> Self {
        let hint = body.size_hint();
        Self {
            shared: Arc::new(Mutex::new(TeeState {
                rest: Some(body),
                kept: BytesMut::new(),
                limit,
                overflowed: false,
                trailers: None,
                failed: None,
                reader: 0,
            })),
            hint,
        }
    }

    /// Tees `body` and gives the first reader, which a fresh tee always
    /// has.
    pub(crate) fn start(body: B, limit: usize) -> (Self, TeeReader<B>) {
        let tee = Self::new(body, limit);
        let first = tee.next_reader(&mut lock(&tee.shared));
        (tee, first)
    }
}

impl<B> Tee<B> {
    /// Whether a new reader would get the whole body.
    pub(crate) fn is_replayable(&self) -> bool {
        !lock(&self.shared).overflowed
    }

    /// A reader from the start of the body, which supersedes every earlier
    /// one; `None` once the copy was dropped.
    pub(crate) fn reader(&self) -> Option<TeeReader<B>> {
        let mut state = lock(&self.shared);
        if state.overflowed {
            return None;
        }
        Some(self.next_reader(&mut state))
    }

    fn next_reader(&self, state: &mut TeeState<B>) -> TeeReader<B> {
        state.reader += 1;
        TeeReader {
            shared: Arc::clone(&self.shared),
            id: state.reader,
            replayed: 0,
            sent: 0,
            trailers_sent: false,
            hint: self.hint,
        }
    }
}

/// One try's view of a [`Tee`]: the kept copy, then the client's body.
#[derive(Debug)]
pub struct TeeReader<B> {
    shared: Arc<Mutex<TeeState<B>>>,
    id: u64,
    /// How much of the kept copy this reader has sent.
    replayed: usize,
    /// Bytes sent by this reader, for its size hint.
    sent: u64,
    trailers_sent: bool,
    hint: SizeHint,
}

/// A reader of an earlier try, after a retry started.
#[derive(Debug, thiserror::Error)]
#[error("the request body was handed to a newer try")]
pub(crate) struct Superseded;

impl<B> Body for TeeReader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut state = lock(&this.shared);
        if state.reader != this.id {
            return Poll::Ready(Some(Err(Superseded.into())));
        }
        if this.replayed < state.kept.len() {
            let copy = Bytes::copy_from_slice(&state.kept[this.replayed..]);
            this.replayed = state.kept.len();
            this.sent += copy.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(copy))));
        }
        let polled = match state.rest.as_mut() {
            Some(rest) => match Pin::new(rest).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(polled) => Some(polled),
            },
            None => None,
        };
        match polled {
            Some(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        state.keep(&data);
                        this.replayed = state.kept.len();
                        this.sent += data.len() as u64;
                        Frame::data(data)
                    }
                    Err(frame) => frame,
                };
                if let Some(trailers) = frame.trailers_ref() {
                    state.trailers = Some(trailers.clone());
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Some(Err(e))) => {
                let e: BoxError = e.into();
                state.failed = Some(e.to_string());
                state.rest = None;
                Poll::Ready(Some(Err(e)))
            }
            Some(None) => {
                state.rest = None;
                Poll::Ready(None)
            }
            // The client's body ended under an earlier reader (or failed):
            // what it left is all there is.
            None => {
                if let Some(failed) = &state.failed {
                    return Poll::Ready(Some(Err(failed.clone().into())));
                }
                match state.trailers.clone().filter(|_| !this.trailers_sent) {
                    Some(trailers) => {
                        this.trailers_sent = true;
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint.exact() {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.sent)),
            None => SizeHint::default(),
        }
    }
}

impl<B> TeeState<B> {
    /// Keeps a copy of `data` if it fits; else drops the whole copy.
    fn keep(&mut self, data: &Bytes) {
        if self.overflowed {
            return;
        }
        if self.kept.len() + data.len() > self.limit {
            self.overflowed = true;
            self.kept = BytesMut::new();
            return;
        }
        self.kept.extend_from_slice(data);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the client's body could not be read for buffering.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The body failed or was longer than its `Content-Length`.
    #[error("reading the request body failed: {0}")]
    Read(String),
    /// The client sent request trailers on a body small enough to buffer.
    #[error("request trailers are not supported on a retriable request body")]
    Trailers,
}

/// The client's body ready for the tries: streamed through untouched when
/// no retry can follow (`replay` false); else read whole if its headers
/// promise at most `limit` bytes, or teed. Returns what later tries replay
/// and the first try's body.
pub(crate) async fn replayable<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    replay: bool,
) -> Result<(ReplayableBody<B>, AttemptBody<B>), BufferError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if !replay {
        return Ok((ReplayableBody::Streamed, Either::Left(body)));
    }
    let buffered = |bytes: Bytes| {
        let first = Either::Right(Either::Left(Full::new(bytes.clone())));
        (ReplayableBody::Buffered(bytes), first)
    };
    if body.is_end_stream() {
        return Ok(buffered(Bytes::new()));
    }
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) if n <= limit as u64 => {
            let collected = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| BufferError::Read(e.to_string()))?;
            if collected.trailers().is_some() {
                return Err(BufferError::Trailers);
            }
            Ok(buffered(collected.to_bytes()))
        }
        _ => {
            let (tee, first) = Tee::start(body, limit);
            Ok((
                ReplayableBody::Teed(tee),
                Either::Right(Either::Right(Box::new(first))),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
