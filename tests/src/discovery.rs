//! A scripted discovery server: the server side of
//! `remora.discovery.v1.Discovery`, driven step by step by a test instead of
//! by config files, plus builders for the snapshots it sends.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use remora_proto::pb;
use remora_proto::pb::discovery_server::{Discovery, DiscoveryServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// A discovery server on `127.0.0.1:0` that hands every stream a proxy
/// opens to the test, which then sends snapshots and reads ACKs/NACKs.
#[derive(Debug)]
pub struct ScriptedDiscovery {
    /// Where it listens.
    pub addr: SocketAddr,
    streams: mpsc::Receiver<Pending>,
    server: JoinHandle<()>,
}

/// One proxy's stream, as the test sees it.
#[derive(Debug)]
pub struct DiscoveryStream {
    /// The node the proxy announced in its first request.
    pub node: pb::Node,
    /// That first request whole (its `version_info` is the proxy's current
    /// version: empty on a fresh start).
    pub hello: pb::DiscoveryRequest,
    requests: mpsc::Receiver<pb::DiscoveryRequest>,
    snapshots: mpsc::Sender<Result<pb::Snapshot, Status>>,
}

impl ScriptedDiscovery {
    /// Starts the server.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let (tx, streams) = mpsc::channel(16);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(DiscoveryServer::new(Script { streams: tx }))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Self {
            addr,
            streams,
            server,
        }
    }

    /// The URL to pass as a proxy's `--control-plane`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next stream a proxy opens, once its first request has arrived.
    /// Panics after `timeout`.
    pub async fn accept(&mut self, timeout: Duration) -> DiscoveryStream {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut requests, snapshots) = tokio::time::timeout_at(deadline, self.streams.recv())
            .await
            .unwrap_or_else(|_| panic!("no proxy opened a discovery stream within {timeout:?}"))
            .expect("discovery server is running")
            .into_parts();
        let hello = tokio::time::timeout_at(deadline, requests.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("no first request on the discovery stream within {timeout:?}")
            })
            .expect("the proxy sends a first request");
        DiscoveryStream {
            node: hello
                .node
                .clone()
                .expect("the first request carries the node"),
            hello,
            requests,
            snapshots,
        }
    }
}

impl Drop for ScriptedDiscovery {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl DiscoveryStream {
    /// Sends `snapshot` to the proxy.
    pub async fn send(&self, snapshot: pb::Snapshot) {
        self.snapshots
            .send(Ok(snapshot))
            .await
            .expect("the proxy's stream is open");
    }

    /// The proxy's next request (an ACK or NACK), waiting up to `timeout`.
    pub async fn next_request(&mut self, timeout: Duration) -> pb::DiscoveryRequest {
        tokio::time::timeout(timeout, self.requests.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: no ACK/NACK within {timeout:?}", self.node.id))
            .unwrap_or_else(|| panic!("{}: the discovery stream ended", self.node.id))
    }
}

/// What the server hands the test per stream, before the first request is read.
struct Pending {
    requests: mpsc::Receiver<pb::DiscoveryRequest>,
    snapshots: mpsc::Sender<Result<pb::Snapshot, Status>>,
}

impl Pending {
    fn into_parts(
        self,
    ) -> (
        mpsc::Receiver<pb::DiscoveryRequest>,
        mpsc::Sender<Result<pb::Snapshot, Status>>,
    ) {
        (self.requests, self.snapshots)
    }
}

struct Script {
    streams: mpsc::Sender<Pending>,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl Discovery for Script {
    type StreamStream = SnapshotStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (req_tx, requests) = mpsc::channel(64);
        let (snapshots, snap_rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                if req_tx.send(req).await.is_err() {
                    break;
                }
            }
        });
        self.streams
            .send(Pending {
                requests,
                snapshots,
            })
            .await
            .map_err(|_| Status::unavailable("test is gone"))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(snap_rx))))
    }
}

/// `<name>.<namespace>.svc.cluster.local`.
pub fn fqdn(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc.cluster.local")
}

/// `<subset>|<fqdn>`, the cluster naming the control plane uses.
pub fn cluster_name(service: &str, namespace: &str, subset: &str) -> String {
    format!("{subset}|{}", fqdn(service, namespace))
}

/// A cluster for `service`'s `subset` (may be empty) with these endpoints,
/// default load balancer and pool.
pub fn cluster(
    service: &str,
    namespace: &str,
    subset: &str,
    endpoints: &[SocketAddr],
) -> pb::Cluster {
    pb::Cluster {
        name: cluster_name(service, namespace, subset),
        service: fqdn(service, namespace),
        subset: subset.to_owned(),
        endpoints: endpoints
            .iter()
            .map(|a| pb::Endpoint {
                address: a.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A virtual host for `service`, reachable as `service`, `service.namespace`
/// and the FQDN, with `routes` in order.
pub fn virtual_host(service: &str, namespace: &str, routes: Vec<pb::Route>) -> pb::VirtualHost {
    pb::VirtualHost {
        name: fqdn(service, namespace),
        domains: vec![
            service.to_owned(),
            format!("{service}.{namespace}"),
            fqdn(service, namespace),
        ],
        routes,
        ports: Vec::new(),
    }
}

/// A route named `name` sending everything matching `matches` (all traffic
/// if empty) to the weighted clusters.
pub fn route(name: &str, matches: Vec<pb::RouteMatch>, destinations: &[(&str, u32)]) -> pb::Route {
    pb::Route {
        name: name.to_owned(),
        matches,
        destinations: destinations
            .iter()
            .map(|(cluster, weight)| pb::WeightedCluster {
                cluster: (*cluster).to_owned(),
                weight: *weight,
            })
            .collect(),
        ..Default::default()
    }
}

/// A snapshot with the given version; the nonce is `<version>-nonce`.
pub fn snapshot(
    version: &str,
    virtual_hosts: Vec<pb::VirtualHost>,
    clusters: Vec<pb::Cluster>,
) -> pb::Snapshot {
    pb::Snapshot {
        version: version.to_owned(),
        nonce: format!("{version}-nonce"),
        virtual_hosts,
        clusters,
        ..Default::default()
    }
}
