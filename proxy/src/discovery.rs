//! The discovery client: one stream to the control plane, snapshots in,
//! ACK/NACK out, reconnecting with backoff and jitter when the stream ends.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use remora_certs::AllowedPeers;
use remora_proto::pb;
use remora_proto::pb::discovery_client::DiscoveryClient;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::rustls::ClientConfig;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint as GrpcEndpoint};

use crate::app_health::AppStatus;
use crate::events;
use crate::identity::{CaAddress, control_plane_id, tls_channel};
use crate::state::ConfigState;
use remora_proto::error_chain;

/// First and longest wait between reconnects (before jitter).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how the discovery stream connects.
#[derive(Debug, Clone)]
pub enum ControlPlane {
    /// Plaintext gRPC to `--control-plane` (a proxy without an identity; the
    /// control plane admits it only with `--allow-plaintext-discovery`).
    Plaintext(String),
    /// gRPC over mTLS to the control plane's TLS port: the server must be
    /// `spiffe://<td>/ns/remora-system/sa/remora`, and the proxy presents its
    /// current SVID, which is the identity the control plane registers it as.
    /// Every reconnect handshakes again, with the certificate current then.
    Tls {
        /// `host:port` of the TLS port.
        address: CaAddress,
        /// Verifies the control plane, presents the SVID.
        config: Arc<ClientConfig>,
    },
}

impl std::fmt::Display for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plaintext(url) => f.write_str(url),
            Self::Tls { address, .. } => write!(f, "{address} (mTLS)"),
        }
    }
}

impl ControlPlane {
    /// mTLS to `address` with `mesh`'s SVID, verifying the control plane of
    /// `trust_domain`.
    pub fn tls(
        address: CaAddress,
        mesh: &remora_certs::MeshTls,
        trust_domain: &remora_certs::TrustDomain,
    ) -> Result<Self, remora_certs::TlsError> {
        let config = mesh.client_config(AllowedPeers::ids([control_plane_id(trust_domain)]))?;
        Ok(Self::Tls { address, config })
    }

    async fn connect(&self) -> Result<Channel, tonic::Status> {
        let endpoint = |uri: String| {
            GrpcEndpoint::from_shared(uri).map(|e| {
                e.connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5))
            })
        };
        let unavailable = |e: tonic::transport::Error| {
            tonic::Status::unavailable(format!("cannot connect: {}", error_chain(&e)))
        };
        match self {
            Self::Plaintext(url) => endpoint(url.clone())
                .map_err(|e| {
                    tonic::Status::invalid_argument(format!("bad control plane address: {e}"))
                })?
                .connect()
                .await
                .map_err(unavailable),
            Self::Tls { address, config } => {
                let endpoint = endpoint("http://discovery.remora.invalid".to_owned())
                    .map_err(|e| tonic::Status::internal(e.to_string()))?;
                let connect = tls_channel(endpoint, address, Arc::clone(config));
                tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| {
                        tonic::Status::unavailable(format!(
                            "cannot connect: no TLS connection to {address} within {CONNECT_TIMEOUT:?}"
                        ))
                    })?
                    .map_err(unavailable)
            }
        }
    }
}

/// Runs the discovery client forever: connect, stream, and on any end of
/// the stream wait (exponential backoff, full jitter) and connect again.
/// The last good config keeps serving throughout. A registration the control
/// plane refuses (its status and reason) is printed as a `refused` event, and
/// retried like any other failure: the config that refused it may change.
pub async fn run(control_plane: ControlPlane, node: pb::Node, state: Arc<ConfigState>) {
    let mut failures = 0u32;
    let name = control_plane.to_string();
    let mut renewals = state.identity.get().map(|i| i.subscribe());
    loop {
        match stream_renewing(&control_plane, &node, &state, &mut renewals).await {
            Ok(applied_any) => {
                tracing::warn!(control_plane = name, "discovery stream ended; reconnecting");
                if applied_any {
                    failures = 0;
                }
            }
            Err(status) if is_refusal(&status) => {
                let code = format!("{:?}", status.code());
                tracing::warn!(
                    control_plane = name,
                    code,
                    reason = status.message(),
                    "the control plane refused this proxy's registration; retrying"
                );
                events::emit("refused", &[("code", &code), ("reason", status.message())]);
            }
            Err(e) => {
                let error = error_chain(&e);
                tracing::warn!(
                    control_plane = name,
                    error,
                    "discovery stream failed; reconnecting"
                )
            }
        }
        failures = failures.saturating_add(1);
        let cap = BACKOFF_MIN
            .saturating_mul(1 << failures.min(6))
            .min(BACKOFF_MAX);
        let wait = rand::rng().random_range(BACKOFF_MIN / 2..=cap);
        tokio::time::sleep(wait).await;
    }
}

/// A stream that is replaced, make before break, each time the workload
/// certificate is renewed: the control plane ends a stream when the
/// certificate that opened it expires, and a stream that ended would take
/// this proxy's endpoint out of every client's config until it reconnects.
/// So a successor stream opens with the new certificate, and the current
/// one is dropped only once the successor has delivered a snapshot (it is
/// registered by then); if the successor fails, the current one carries on.
/// Returns as [`stream_once`] does, for the last stream.
async fn stream_renewing(
    control_plane: &ControlPlane,
    node: &pb::Node,
    state: &ConfigState,
    renewals: &mut Option<watch::Receiver<u64>>,
) -> Result<bool, tonic::Status> {
    let mut current = Box::pin(stream_once(control_plane, node, state, None));
    let mut applied_before = false;
    loop {
        tokio::select! {
            result = &mut current => return result.map(|applied| applied || applied_before),
            () = renewed(renewals) => {}
        }
        let (delivered_tx, mut delivered) = oneshot::channel();
        let mut next = Box::pin(stream_once(control_plane, node, state, Some(delivered_tx)));
        let switch = tokio::select! {
            Ok(()) = &mut delivered => true,
            result = &mut next => {
                let error = result.err().map(|e| error_chain(&e)).unwrap_or_default();
                tracing::warn!(
                    error,
                    "the discovery stream with the renewed certificate ended before its first \
                     snapshot; keeping the current one"
                );
                false
            }
            // The current stream ended first (its certificate expired, say): the
            // successor, already connecting, takes over.
            _ = &mut current => true,
        };
        if switch {
            tracing::debug!("discovery stream replaced by one with the renewed certificate");
            current = next;
            applied_before = true;
        }
    }
}

/// The next renewal of the workload certificate; never, without one.
async fn renewed(renewals: &mut Option<watch::Receiver<u64>>) {
    let Some(rx) = renewals else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *renewals = None;
        std::future::pending::<()>().await;
    }
}

/// The app's next change of readiness, as a report; never, without a probe
/// (or once the probe is gone).
async fn app_changed(app: &mut Option<watch::Receiver<AppStatus>>) -> Option<pb::AppHealth> {
    let Some(rx) = app else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *app = None;
        return std::future::pending().await;
    }
    Some(rx.borrow_and_update().report())
}

/// Whether the control plane answered and said no (as opposed to not being
/// reachable).
fn is_refusal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::InvalidArgument
            // This proxy is older than the control plane serves.
            | tonic::Code::FailedPrecondition
    )
}

/// One stream's life. Returns whether any snapshot was applied on it.
/// `delivered` (a successor's) is told when the first snapshot has arrived.
async fn stream_once(
    control_plane: &ControlPlane,
    node: &pb::Node,
    state: &ConfigState,
    mut delivered: Option<oneshot::Sender<()>>,
) -> Result<bool, tonic::Status> {
    let channel = control_plane.connect().await?;
    let (tx, rx) = mpsc::channel(8);
    // A successor asks for the snapshot whatever it holds: the control plane
    // sends nothing to a stream that already has the current version, and
    // the successor must see one to know it is registered.
    let mut version_info = match delivered {
        Some(_) => String::new(),
        None => state.current.load().version().to_owned(),
    };
    let mut app = state.app.get().map(|a| a.subscribe());
    let mut node = node.clone();
    if let Some(app) = &mut app {
        node.app_health = Some(app.borrow_and_update().report());
    }
    let hello = pb::DiscoveryRequest {
        node: Some(node),
        version_info: version_info.clone(),
        ..Default::default()
    };
    let _ = tx.send(hello).await;
    // The control plane never sends more (it refuses such a snapshot and
    // says so): both sides read the limit from the proto crate.
    let mut responses = DiscoveryClient::new(channel)
        .max_decoding_message_size(remora_proto::MAX_SNAPSHOT_BYTES)
        .stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut applied_any = false;
    loop {
        let snapshot = tokio::select! {
            message = responses.message() => match message? {
                Some(snapshot) => snapshot,
                None => break,
            },
            Some(report) = app_changed(&mut app) => {
                let report = pb::DiscoveryRequest {
                    version_info: version_info.clone(),
                    app_health: Some(report),
                    ..Default::default()
                };
                if tx.send(report).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let nonce = snapshot.nonce.clone();
        let version = snapshot.version.clone();
        let reply = match state.apply(snapshot) {
            Ok(()) => {
                applied_any = true;
                version_info = version.clone();
                let first = !*state.ready.borrow();
                state.ready.send_replace(true);
                crate::telemetry::metrics::config_applied();
                tracing::info!(version, "applied config");
                events::emit(
                    if first { "ready" } else { "applied" },
                    &[("version", &version)],
                );
                pb::DiscoveryRequest {
                    version_info: version_info.clone(),
                    response_nonce: nonce,
                    ..Default::default()
                }
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(version, error, "rejected config; keeping the last good one");
                events::emit("rejected", &[("version", &version), ("error", &error)]);
                pb::DiscoveryRequest {
                    version_info: version_info.clone(),
                    response_nonce: nonce,
                    // Within what the control plane accepts and keeps.
                    error_detail: remora_proto::truncate_detail(&error).into_owned(),
                    ..Default::default()
                }
            }
        };
        if tx.send(reply).await.is_err() {
            break;
        }
        if let Some(delivered) = delivered.take() {
            let _ = delivered.send(());
        }
    }
    Ok(applied_any)
}
