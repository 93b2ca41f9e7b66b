//! Opaque TCP: a captured connection that is not HTTP is forwarded as
//! bytes, both ways, until both sides have closed. Each connection is
//! counted (`remora_tcp_connections_opened_total` when forwarding starts,
//! `..._closed_total` with its bytes when it ends) and gets one access log
//! line when it ends.
//!
//! Opaque TCP has no request boundary to drain at: a connection open when
//! the drain begins keeps carrying bytes until the drain ends
//! ([`crate::lifecycle`]), and then [`end_all`] closes it in order (a FIN
//! each way) and records it, before the process exits.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use crate::config::Cluster;
use crate::telemetry::access_log::{Entry, rfc3339};
use crate::telemetry::metrics::{self, TcpLabels};
use crate::telemetry::{Direction, Telemetry};

/// Istio's name for a destination outside the mesh, let through.
pub(crate) const PASSTHROUGH: &str = "PassthroughCluster";
/// Istio's name for a destination outside the mesh, refused
/// (`REGISTRY_ONLY`).
pub(crate) const BLACKHOLE: &str = "BlackHoleCluster";

/// One TCP connection as the proxy learns about it.
#[derive(Debug)]
pub(crate) struct TcpRecord {
    telemetry: Arc<Telemetry>,
    start: Instant,
    start_time: SystemTime,
    labels: TcpLabels,
    flags: String,
    /// The original destination (outbound) or the app port (inbound).
    authority: String,
    upstream_host: Option<String>,
    upstream_cluster: Option<String>,
    peer_identity: Option<String>,
    opened: bool,
}

impl TcpRecord {
    /// The record of a connection that just arrived, for `authority`
    /// (`ip:port` the client meant).
    pub(crate) fn start(
        telemetry: Arc<Telemetry>,
        direction: Direction,
        authority: String,
    ) -> Self {
        let workload = &telemetry.workload;
        let labels = match direction {
            Direction::Outbound => TcpLabels {
                direction: direction.as_str(),
                source_service: workload.service_label(),
                destination_service: metrics::unknown(),
                destination_subset: metrics::unknown(),
                mtls: false,
                response_flags: metrics::no_flags(),
            },
            Direction::Inbound => TcpLabels {
                direction: direction.as_str(),
                source_service: metrics::unknown(),
                destination_service: workload.fqdn_label(),
                destination_subset: workload.version_label(),
                mtls: false,
                response_flags: metrics::no_flags(),
            },
        };
        Self {
            telemetry,
            start: Instant::now(),
            start_time: SystemTime::now(),
            labels,
            flags: String::new(),
            authority,
            upstream_host: None,
            upstream_cluster: None,
            peer_identity: None,
            opened: false,
        }
    }

    /// Outbound: the destination service.
    pub(crate) fn set_cluster(&mut self, cluster: &Cluster) {
        self.labels.destination_service = Arc::clone(cluster.service_label());
        self.labels.destination_subset = Arc::clone(cluster.subset_label());
        self.upstream_cluster = Some(cluster.name().to_owned());
    }

    /// Outbound: a destination outside the mesh ([`PASSTHROUGH`] or
    /// [`BLACKHOLE`]).
    pub(crate) fn set_outside_mesh(&mut self, name: &'static str) {
        self.labels.destination_service = metrics::global().intern(name);
        self.upstream_cluster = Some(name.to_owned());
    }

    /// Inbound: the peer's verified SPIFFE ID (mTLS), whose service
    /// account is the source service.
    pub(crate) fn set_peer(&mut self, identity: &remora_certs::SpiffeId) {
        if let Some((_, sa)) = identity.path().rsplit_once("/sa/") {
            self.labels.source_service = metrics::global().intern(sa);
        }
        self.labels.mtls = true;
        self.peer_identity = Some(identity.as_str().to_owned());
    }

    /// The address forwarded to, and whether the hop is mTLS.
    pub(crate) fn set_upstream(&mut self, host: String, mtls: bool) {
        self.upstream_host = Some(host);
        if self.labels.direction == Direction::Outbound.as_str() {
            self.labels.mtls = mtls;
        }
    }

    /// Adds an Envoy-style flag (`UF` connect failure, `NR` no route,
    /// `UAEX` denied, ...).
    pub(crate) fn flag(&mut self, flag: &str) {
        if !self.flags.split(',').any(|f| f == flag) {
            if !self.flags.is_empty() {
                self.flags.push(',');
            }
            self.flags.push_str(flag);
        }
    }

    /// Counts the connection as opened (once).
    fn open(&mut self) {
        if !self.opened {
            self.opened = true;
            metrics::global().tcp_opened(&self.labels);
        }
    }

    /// Ends the record: `sent` bytes to the client, `received` from it.
    pub(crate) fn finish(mut self, sent: u64, received: u64) {
        self.open();
        if !self.flags.is_empty() {
            self.labels.response_flags = metrics::global().intern(&self.flags);
        }
        metrics::global().tcp_closed(&self.labels, sent, received);
        let log = &self.telemetry.access_log;
        if !log.is_on() {
            return;
        }
        log.log(&Entry {
            start_time: rfc3339(self.start_time),
            direction: self.labels.direction,
            method: "-".to_owned(),
            path: "-".to_owned(),
            protocol: "TCP",
            authority: self.authority,
            response_code: 0,
            response_flags: if self.flags.is_empty() {
                "-".to_owned()
            } else {
                self.flags
            },
            bytes_sent: sent,
            bytes_received: received,
            duration_ms: self.start.elapsed().as_millis() as u64,
            upstream_host: self.upstream_host,
            upstream_cluster: self.upstream_cluster,
            retries: 0,
            request_id: "-".to_owned(),
            trace_id: None,
            peer_identity: self.peer_identity,
            user_agent: None,
        });
    }
}

/// Turns true when the drain is over: every forwarded connection ends.
static DRAIN_OVER: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Connections being forwarded now.
static FORWARDING: AtomicUsize = AtomicUsize::new(0);

/// Ends every TCP connection being forwarded (the drain is over) and waits,
/// at most `within`, until each has closed its sockets and been recorded.
pub async fn end_all(within: Duration) {
    DRAIN_OVER.send_replace(true);
    let deadline = tokio::time::Instant::now() + within;
    while FORWARDING.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long ending a connection at the drain's end may take to send its
/// FINs.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Forwards bytes between `client` and `upstream` until both directions
/// have ended (each side's end of stream is passed on as a half-close),
/// or until the drain is over ([`end_all`]: both sides are shut down),
/// then finishes `record` with the byte counts. An error on either side
/// ends both.
pub(crate) async fn forward<C, U>(client: C, upstream: U, mut record: TcpRecord)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    record.open();
    let _counted = Forwarding::new();
    let mut client = Counted::new(client);
    let mut upstream = Counted::new(upstream);
    let mut over = DRAIN_OVER.subscribe();
    let drained = {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::select! {
            result = copy => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "TCP connection ended with an error");
                }
                false
            }
            _ = over.wait_for(|over| *over) => true,
        }
    };
    if drained {
        tracing::debug!("TCP connection closed: the drain is over");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = tokio::join!(client.shutdown(), upstream.shutdown());
        })
        .await;
    }
    record.finish(upstream.read, client.read);
}

/// One connection in [`FORWARDING`], for as long as it lives.
struct Forwarding;

impl Forwarding {
    fn new() -> Self {
        FORWARDING.fetch_add(1, Ordering::AcqRel);
        Self
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        FORWARDING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts the bytes read through it.
#[derive(Debug)]
struct Counted<T> {
    inner: T,
    read: u64,
}

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        Self { inner, read: 0 }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
