//! Making a request body replayable: a body known to fit the bound is read
//! whole before the first try and sent again, as a cheap `Bytes` clone, on
//! each retry. Anything else is streamed through once and never retried.
//!
//! What counts as "known to fit": an empty body, or a `Content-Length` at
//! most the bound. A body of unknown length (chunked HTTP/1.1, h2 without
//! `content-length`, such as most gRPC calls) is streamed: waiting for its
//! end could deadlock a bidirectional stream, and the upstream body type
//! ([`RequestBody`]) has no variant yet for "buffered prefix, then the
//! rest". Request trailers are not kept on a buffered body (HTTP clients
//! and gRPC do not send request trailers in practice); a body that carries
//! them is rejected with 400 rather than forwarded without them.

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use crate::upstream::RequestBody;

/// A request body as the attempt loop holds it.
#[derive(Debug)]
pub enum ReplayableBody {
    /// Read whole: every try gets a copy.
    Buffered(Bytes),
    /// Streamed through on the first try only.
    Streaming(Option<Incoming>),
}

impl ReplayableBody {
    /// Whether a second try can have the body.
    pub fn is_replayable(&self) -> bool {
        matches!(self, Self::Buffered(_))
    }

    /// The body for the next try; `None` once a streaming body was sent.
    pub fn for_attempt(&mut self) -> Option<RequestBody> {
        match self {
            Self::Buffered(bytes) => Some(Either::Right(Full::new(bytes.clone()))),
            Self::Streaming(body) => body.take().map(Either::Left),
        }
    }
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

/// Reads `body` whole if its headers promise at most `limit` bytes, else
/// leaves it to stream.
pub async fn buffer_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<ReplayableBody, BufferError> {
    if body.is_end_stream() {
        return Ok(ReplayableBody::Buffered(Bytes::new()));
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
            Ok(ReplayableBody::Buffered(collected.to_bytes()))
        }
        _ => Ok(ReplayableBody::Streaming(Some(body))),
    }
}
