//! The gRPC echo app (`proto/echo.proto`): an in-process tonic server used as
//! the workload behind a sidecar in the gRPC tests.

use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

/// The generated messages, client and server.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all)] // generated code
    tonic::include_proto!("remora.e2e.echo");
}

use pb::echo_server::{Echo, EchoServer};
use pb::{EchoReply, EchoRequest, Failure};

/// A running echo server; stops when dropped.
#[derive(Debug)]
pub struct EchoApp {
    /// Where it listens (h2c only, as gRPC servers do).
    pub addr: SocketAddr,
    server: JoinHandle<()>,
}

impl EchoApp {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(EchoServer::new(EchoService))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Self { addr, server }
    }
}

impl Drop for EchoApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The status a [`Failure`] describes, details included.
pub fn failure_status(f: &Failure) -> Status {
    Status::with_details(
        Code::from(f.code),
        f.message.clone(),
        Bytes::from(f.details.clone()),
    )
}

struct EchoService;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let req = request.into_inner();
        if let Some(f) = &req.fail {
            return Err(failure_status(f));
        }
        Ok(Response::new(EchoReply {
            message: req.message,
            index: 0,
        }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let EchoRequest {
            message,
            count,
            fail,
        } = request.into_inner();
        let mut items: Vec<Result<EchoReply, Status>> = (0..count)
            .map(|index| {
                Ok(EchoReply {
                    message: format!("{message} #{index}"),
                    index,
                })
            })
            .collect();
        if let Some(f) = &fail {
            items.push(Err(failure_status(f)));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }
}
