//! The Discovery service on the wire: requests decoded by tonic, snapshots
//! written as gRPC frames that share the view's encoded bytes.
//!
//! tonic's generated server encodes each message into a per-stream buffer
//! and splits the frame off it; the buffer then keeps the whole allocation
//! as long as the stream lives, so every stream held a copy of the largest
//! snapshot it had ever sent (5,000 streams × 758 KB = 3.8 GB). Here the
//! response body hands hyper the frame's five-byte header and version, then
//! the view's parts themselves (`Bytes` shared with every other stream of
//! the view): nothing is copied or kept per stream once the socket has
//! taken the bytes, and the stream's channel holds at most one snapshot.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::Frame;
use remora_proto::encoded::EncodedSnapshot;
use remora_proto::pb;
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Streaming};
use tonic::server::NamedService;
use tonic::{Request, Status};
use tonic_prost::ProstDecoder;

use super::DiscoveryService;

/// The one method of `remora.discovery.v1.Discovery`.
const STREAM_PATH: &str = "/remora.discovery.v1.Discovery/Stream";

/// What a stream's session sends: snapshots, or the status that ends it.
pub(super) type Pushes = mpsc::Receiver<Result<EncodedSnapshot, Status>>;

/// The `remora.discovery.v1.Discovery` server (add it to a tonic `Server`).
#[derive(Debug, Clone)]
pub struct DiscoveryServer {
    service: DiscoveryService,
}

impl DiscoveryServer {
    /// Serves `service`.
    pub fn new(service: DiscoveryService) -> Self {
        Self { service }
    }
}

impl NamedService for DiscoveryServer {
    const NAME: &'static str = "remora.discovery.v1.Discovery";
}

impl tower_service::Service<http::Request<Body>> for DiscoveryServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move {
            if request.uri().path() != STREAM_PATH {
                return Ok(Status::unimplemented("").into_http());
            }
            let request = Request::from_http(request.map(|body| {
                Streaming::new_request(
                    ProstDecoder::<pb::DiscoveryRequest>::new(BufferSettings::default()),
                    body,
                    None,
                    Some(remora_proto::MAX_REQUEST_BYTES),
                )
            }));
            Ok(match service.open(request).await {
                Ok(pushes) => {
                    let mut response = http::Response::new(Body::new(PushBody::new(pushes)));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    response
                }
                Err(status) => status.into_http(),
            })
        })
    }
}

/// A stream's response body: each snapshot as one gRPC message, in chunks
/// that share the view's bytes; then the trailers with the status.
struct PushBody {
    pushes: Pushes,
    /// The chunks of the message being written.
    chunks: VecDeque<Bytes>,
    ended: bool,
}

impl PushBody {
    fn new(pushes: Pushes) -> Self {
        Self {
            pushes,
            chunks: VecDeque::new(),
            ended: false,
        }
    }
}

impl http_body::Body for PushBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let status = match self.pushes.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(snapshot))) => {
                self.chunks = snapshot.grpc_message().into();
                let first = self.chunks.pop_front().unwrap_or_default();
                return Poll::Ready(Some(Ok(Frame::data(first))));
            }
            Poll::Ready(Some(Err(status))) => status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.ended = true;
        let mut trailers = http::HeaderMap::new();
        if let Err(e) = status.add_header(&mut trailers) {
            tracing::warn!(error = %e, "cannot write a stream's status");
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.chunks.is_empty()
    }
}
