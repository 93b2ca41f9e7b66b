//! The discovery service: one bidirectional stream per proxy.
//!
//! The proxy's first request says who it is; the control plane admits it
//! ([`crate::admission`]: its namespace and service account are those of the
//! TLS client certificate, its fields are checked as the proxies would check
//! them, and a refusal is a status on this stream only), registers it (so it
//! becomes an endpoint of its service) and answers with its snapshot. The
//! snapshot is not translated here: the stream subscribes to its view (the
//! proxies of its namespace and labels) at the [`Publisher`], which
//! translates once per change for every view, encodes each view's snapshot
//! once, and wakes only the streams whose view changed. A stream pushes its
//! view's snapshot only if its version differs from the last one pushed —
//! so a change reaches exactly the proxies whose view it changes — and, to a
//! proxy that accepts them, only the parts that differ from what it last
//! ACKed (an incremental snapshot, per resource to a proxy that takes that
//! form); one push at a time, so a slow proxy gets
//! the latest version next, never a queue. The proxy answers
//! each snapshot with an ACK (the version it applied) or a NACK (the
//! reason, while it keeps its last good config). When the stream ends, the
//! workload is deregistered.
//!
//! Translation runs off the async workers ([`crate::publish`]). A snapshot larger
//! than a proxy accepts ([`MAX_SNAPSHOT_BYTES`]) is not sent: the refusal is
//! logged once per version, and the proxy keeps the config it has.
//!
//! Every push, ACK, NACK and refusal is also recorded in the
//! [`ProxyTracker`], which serves `/debug/proxies` and keeps the push
//! metrics.

mod wire;

use std::sync::Arc;

use remora_certs::{SpiffeId, not_after_of, spiffe_id_of};
use remora_proto::encoded::EncodedSnapshot;
use remora_proto::{MAX_SNAPSHOT_BYTES, pb};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, sleep_until};
use tonic::{Request, Status, Streaming};
pub use wire::DiscoveryServer;

use crate::admission::{AdmissionPolicy, Caller, admit};
use crate::events::emit;
use crate::mesh::{MAX_HEALTH_REASON_BYTES, Mesh, Registration, bounded};
use crate::metrics::Metrics;
use crate::publish::{Debounce, Publisher, ViewReceiver};
use crate::status::{ProxyTracker, TrackedProxy};
use crate::translate::{Form, MeshSettings, TooLarge, ViewKey, ViewSnapshot};

/// Serves discovery of `mesh` on `listener`, plaintext, until `shutdown`
/// completes, tracking proxies in a table of its own. Plaintext admits nodes
/// without a proven identity: development and tests only.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mesh: Arc<Mesh>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let service = DiscoveryService::new(mesh).with_admission(AdmissionPolicy {
        allow_plaintext: true,
        ..AdmissionPolicy::default()
    });
    serve_service(listener, service, shutdown).await
}

/// Serves `service` on `listener` until `shutdown` completes.
pub async fn serve_service(
    listener: tokio::net::TcpListener,
    service: DiscoveryService,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .add_service(DiscoveryServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

/// The gRPC `remora.discovery.v1.Discovery` service.
#[derive(Debug, Clone)]
pub struct DiscoveryService {
    mesh: Arc<Mesh>,
    proxies: ProxyTracker,
    settings: Arc<MeshSettings>,
    admission: Arc<AdmissionPolicy>,
    publisher: Publisher,
    debounce: Debounce,
    throttle: Arc<Semaphore>,
}

/// Pushes in flight at once, over every stream (istiod's
/// `PILOT_PUSH_THROTTLE`, 100). A stream holds its slot from sending a
/// snapshot until its proxy answers it, or [`ACK_WAIT`] passes. The bytes
/// in flight are the views' shared parts (`discovery/wire.rs`), so the bound is on the
/// work in progress, not on copies; the sockets, not the slots, set the rate.
pub const PUSH_CONCURRENCY: usize = 100;

/// How long a push may hold its slot without an answer.
pub const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl DiscoveryService {
    /// A service pushing the state of `mesh`, tracking proxies in a table
    /// (and metrics) of its own.
    pub fn new(mesh: Arc<Mesh>) -> Self {
        Self::with_tracker(mesh, ProxyTracker::new(Metrics::new()))
    }

    /// A service pushing the state of `mesh` and recording every stream in
    /// `proxies` (share a clone with the monitoring endpoints).
    pub fn with_tracker(mesh: Arc<Mesh>, proxies: ProxyTracker) -> Self {
        let settings = Arc::new(MeshSettings::default());
        let debounce = Debounce::default();
        DiscoveryService {
            publisher: Publisher::new(
                Arc::clone(&mesh),
                Arc::clone(&settings),
                proxies.metrics().clone(),
                debounce,
            ),
            mesh,
            proxies,
            settings,
            admission: Arc::new(AdmissionPolicy::default()),
            debounce,
            throttle: Arc::new(Semaphore::new(PUSH_CONCURRENCY)),
        }
    }

    /// Waits for bursts of changes to end as `debounce` says instead of
    /// the default (100 ms quiet, 10 s at most).
    pub fn with_debounce(mut self, debounce: Debounce) -> Self {
        self.debounce = debounce;
        self.publisher = self.new_publisher();
        self
    }

    fn new_publisher(&self) -> Publisher {
        Publisher::new(
            Arc::clone(&self.mesh),
            Arc::clone(&self.settings),
            self.proxies.metrics().clone(),
            self.debounce,
        )
    }

    /// Admits registrations under `policy` instead of the default (proven
    /// identities only, addresses bound to the connection).
    pub fn with_admission(mut self, policy: AdmissionPolicy) -> Self {
        self.admission = Arc::new(policy);
        self
    }

    /// Translates with `settings` (trust domain, root namespace) instead of
    /// Istio's defaults.
    pub fn with_settings(mut self, settings: MeshSettings) -> Self {
        self.settings = Arc::new(settings);
        self.publisher = self.new_publisher();
        self
    }
}

impl DiscoveryService {
    /// Opens one proxy's stream: admits and registers it, and starts its
    /// session, which sends what the returned channel carries.
    async fn open(
        &self,
        request: Request<Streaming<pb::DiscoveryRequest>>,
    ) -> Result<wire::Pushes, Status> {
        let caller = caller_of(&request)?;
        let expires = certificate_expiry(&request);
        let mut requests = request.into_inner();
        let hello = requests.message().await?.ok_or_else(|| {
            Status::invalid_argument("the stream ended before the first DiscoveryRequest")
        })?;
        let claimed = hello.node.ok_or_else(|| {
            Status::invalid_argument("the first DiscoveryRequest must carry `node`")
        })?;
        let resources = Arc::clone(&self.mesh.config().borrow());
        let node = admit(
            &claimed,
            &caller,
            &resources,
            &self.settings,
            &self.admission,
        )
        .map_err(|refusal| {
            tracing::warn!(remote = ?caller.remote, %refusal, "refused a registration");
            emit(
                "refused",
                json!({
                    "node": claimed.id, "service": claimed.service,
                    "identity": caller.identity.as_ref().map(SpiffeId::as_str),
                    "code": format!("{:?}", refusal.code()), "reason": refusal.to_string(),
                }),
            );
            Status::from(refusal)
        })?;
        // A proxy that already has a config waits out the warm-up.
        let hold_until = (!hello.version_info.is_empty()).then(|| self.mesh.warm_until());
        let tracked = self.proxies.track(&node, &hello.version_info);
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(session(
            Arc::clone(&self.mesh),
            self.publisher.clone(),
            Arc::clone(&self.throttle),
            Arc::clone(&self.settings),
            Admitted {
                claimed,
                caller,
                policy: Arc::clone(&self.admission),
                node,
                expires,
            },
            tracked,
            hold_until,
            requests,
            tx,
        ));
        Ok(rx)
    }
}

/// The identity of the TLS client certificate (already verified against the
/// bundle and the trust domain by the handshake) and the source address.
fn caller_of<T>(request: &Request<T>) -> Result<Caller, Status> {
    let identity = match request.peer_certs() {
        Some(certs) => match certs.first() {
            Some(leaf) => Some(spiffe_id_of(leaf).map_err(|e| {
                Status::permission_denied(format!("the client certificate is not an SVID: {e}"))
            })?),
            None => None,
        },
        None => None,
    };
    Ok(Caller {
        identity,
        remote: request.remote_addr(),
    })
}

/// When the TLS client certificate that authenticated the stream expires;
/// `None` without one.
fn certificate_expiry<T>(request: &Request<T>) -> Option<std::time::SystemTime> {
    let certs = request.peer_certs()?;
    not_after_of(certs.first()?).ok()
}

/// A registration as admitted, with what is needed to check it again when
/// the config changes (a ServiceEntry may stop allowing its identity).
struct Admitted {
    claimed: pb::Node,
    caller: Caller,
    policy: Arc<AdmissionPolicy>,
    /// The node as registered.
    node: pb::Node,
    /// When the client certificate that proved the identity expires: the
    /// stream ends then, and the proxy reconnects with its renewed one.
    expires: Option<std::time::SystemTime>,
}

#[allow(clippy::too_many_arguments)] // one stream's whole context, passed once
async fn session(
    mesh: Arc<Mesh>,
    publisher: Publisher,
    throttle: Arc<Semaphore>,
    settings: Arc<MeshSettings>,
    admitted: Admitted,
    tracked: TrackedProxy,
    hold_until: Option<Instant>,
    mut requests: Streaming<pb::DiscoveryRequest>,
    tx: mpsc::Sender<Result<EncodedSnapshot, Status>>,
) {
    let node = admitted.node.clone();
    let mut admitted_under = Arc::clone(&mesh.config().borrow());
    let registration = mesh.register(node.clone());
    let mut rounds = publisher.rounds();
    let mut view: ViewReceiver = publisher.subscribe(ViewKey::of(&node));
    emit(
        "connected",
        json!({
            "node": node.id, "service": node.service, "namespace": node.namespace,
            "inbound": node.inbound_address,
        }),
    );
    tracing::info!(node = node.id, "proxy connected");

    let mut last_sent: Option<String> = None;
    let mut last_refused: Option<String> = None;
    let mut nonce: u64 = 0;
    // The last push, until its proxy answers it (or `ACK_WAIT` passes): no
    // other is sent meanwhile, so a slow proxy gets the latest snapshot
    // next, never a queue of old ones.
    let mut in_flight: Option<InFlight> = None;
    // What the proxy runs, as far as this stream knows: the last snapshot it
    // ACKed here. Incremental pushes go from it; `None` sends a complete one.
    let mut runs: Option<Arc<ViewSnapshot>> = None;
    // The identity holds only as long as the certificate that proved it.
    let expiry = admitted.expires.map(|at| {
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        (Instant::now() + left, at)
    });
    'session: loop {
        let held = hold_until.filter(|t| Instant::now() < *t);
        // A proxy's first snapshot is one built with it registered: its
        // view's snapshot may predate it (the publisher builds another at once).
        let mine = |p: &Arc<ViewSnapshot>| nonce > 0 || p.nodes.contains_key(&registration.id());
        let mut current = view.borrow_and_update().clone().filter(mine);
        let to_send = current.as_ref().is_some_and(|p| {
            last_sent.as_deref() != Some(p.version.as_str())
                && held.is_none()
                && in_flight.is_none()
                && p.refusal(&node, MAX_SNAPSHOT_BYTES).is_none()
        });
        let mut permit = None;
        if to_send {
            permit = tokio::select! {
                permit = Arc::clone(&throttle).acquire_owned() => permit.ok(),
                () = tx.closed() => break 'session,
            };
            // The view may have moved on while this stream waited.
            current = view.borrow_and_update().clone().filter(mine).or(current);
        }
        if let Some(prepared) = current {
            // A new config may no longer allow this identity to serve its service.
            let config_changed = !Arc::ptr_eq(&prepared.resources, &admitted_under);
            admitted_under = Arc::clone(&prepared.resources);
            if config_changed
                && let Err(refusal) = admit(
                    &admitted.claimed,
                    &admitted.caller,
                    &prepared.resources,
                    &settings,
                    &admitted.policy,
                )
            {
                tracing::warn!(node = node.id, %refusal, "registration no longer admitted");
                emit(
                    "refused",
                    json!({ "node": node.id, "reason": refusal.to_string() }),
                );
                let _ = tx.send(Err(Status::from(refusal))).await;
                break;
            }
            let version = prepared.version.clone();
            if last_sent.as_deref() == Some(version.as_str()) {
                // Back to what the proxy runs: nothing to send, nothing refused.
                if last_refused.take().is_some() {
                    tracked.refusal_withdrawn();
                }
            } else if held.is_none() && in_flight.is_none() {
                if let Some(refusal) = prepared.refusal(&node, MAX_SNAPSHOT_BYTES) {
                    if last_refused.as_deref() != Some(version.as_str()) {
                        refuse(&tracked, &refusal);
                        last_refused = Some(version);
                    }
                } else {
                    nonce += 1;
                    let incremental =
                        runs.as_ref().zip(Form::of(&node)).and_then(|(base, form)| {
                            prepared.incremental_from(base, form, nonce.to_string())
                        });
                    let is_incremental = incremental.is_some();
                    let snapshot =
                        incremental.unwrap_or_else(|| prepared.encoded(nonce.to_string()));
                    tracing::debug!(
                        node = node.id,
                        version,
                        incremental = is_incremental,
                        bytes = snapshot.parts_len(),
                        "pushing snapshot"
                    );
                    let sent_at = Instant::now();
                    if tx.send(Ok(snapshot)).await.is_err() {
                        break;
                    }
                    tracked.sent(&version, sent_at);
                    in_flight = Some(InFlight {
                        _permit: permit.take(),
                        until: sent_at + ACK_WAIT,
                        snapshot: Arc::clone(&prepared),
                        incremental: is_incremental,
                    });
                    last_sent = Some(version);
                    last_refused = None;
                }
            }
        }

        // Wait for a change of this view; meanwhile take the proxy's ACKs and NACKs.
        loop {
            tokio::select! {
                changed = view.changed() => {
                    if changed.is_err() { break 'session; }
                    continue 'session;
                }
                // Before the first push, every translation may be the one with this proxy.
                changed = rounds.changed(), if nonce == 0 => {
                    if changed.is_err() { break 'session; }
                    continue 'session;
                }
                message = requests.message() => match message {
                    Ok(Some(reply)) => {
                        if let Some(health) = &reply.app_health {
                            app_health_reported(&node, &registration, health);
                        }
                        answer(&node, &tracked, &reply, nonce);
                        let answered = (reply.response_nonce == nonce.to_string())
                            .then(|| in_flight.take())
                            .flatten();
                        if let Some(push) = answered {
                            // Its push slot is free; the view may have moved on meanwhile.
                            let acked = reply.error_detail.is_empty()
                                && reply.version_info == push.snapshot.version;
                            if acked {
                                runs = Some(push.snapshot);
                            } else if push.incremental
                                || (!reply.error_detail.is_empty()
                                    && runs.as_ref().is_none_or(|r| r.version != reply.version_info))
                            {
                                // An incremental push NACKed (or a proxy that runs what this
                                // stream did not send): the complete snapshot goes next.
                                runs = None;
                                if push.incremental {
                                    last_sent = None;
                                }
                            }
                            continue 'session;
                        }
                    }
                    Ok(None) => break 'session,
                    Err(status) => {
                        tracing::info!(node = node.id, error = %status, "discovery stream failed");
                        // The proxy learns why (an oversized or undecodable request),
                        // unless a push fills its one slot: then it only sees the end.
                        let _ = tx.try_send(Err(status));
                        break 'session;
                    }
                },
                () = tx.closed() => break 'session,
                () = sleep_until(in_flight.as_ref().map_or_else(Instant::now, |f| f.until)),
                    if in_flight.is_some() => {
                    // A proxy that does not answer keeps no slot, and what it runs is
                    // not known any more: the next push is complete.
                    in_flight = None;
                    runs = None;
                    continue 'session;
                }
                () = sleep_until(held.unwrap_or_else(Instant::now)), if held.is_some() => {
                    continue 'session;
                }
                () = sleep_until(expiry.map_or_else(Instant::now, |e| e.0)), if expiry.is_some() => {
                    let at = expiry.map_or(0, |e| unix_secs(e.1));
                    let reason = format!(
                        "the client certificate that authenticated this stream expired at {at} \
                         (Unix time); reconnect with the renewed certificate"
                    );
                    tracing::info!(node = node.id, "{reason}");
                    emit("expired", json!({ "node": node.id, "reason": reason }));
                    let _ = tx.send(Err(Status::unauthenticated(reason))).await;
                    break 'session;
                }
            }
        }
    }
    drop(view);
    drop(registration);
    drop(tracked);
    emit("disconnected", json!({ "node": node.id }));
    tracing::info!(node = node.id, "proxy disconnected");
}

/// A push sent and not answered yet.
struct InFlight {
    /// Its slot among [`PUSH_CONCURRENCY`].
    _permit: Option<OwnedSemaphorePermit>,
    /// When the slot is freed without an answer.
    until: Instant,
    /// What was sent.
    snapshot: Arc<ViewSnapshot>,
    /// Sent as changes from what the proxy ran.
    incremental: bool,
}

/// Takes a proxy's report on its app: a change of readiness reaches the
/// registry (its endpoint leaves or rejoins every snapshot) and the log.
fn app_health_reported(node: &pb::Node, registration: &Registration, health: &pb::AppHealth) {
    if !registration.set_app_health(health) {
        return;
    }
    let reason = bounded(&health.reason, MAX_HEALTH_REASON_BYTES);
    if health.ready {
        tracing::info!(node = node.id, "app ready: endpoint back in snapshots");
    } else {
        tracing::warn!(
            node = node.id,
            reason,
            "app not ready: endpoint out of snapshots"
        );
    }
    emit(
        "app_health",
        json!({ "node": node.id, "ready": health.ready, "reason": reason }),
    );
}

fn unix_secs(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Says, once per version, why a proxy's snapshot is not sent.
fn refuse(tracked: &TrackedProxy, refusal: &TooLarge) {
    tracing::error!(node = refusal.node, "{refusal}");
    tracked.refused(&refusal.to_string());
    emit(
        "snapshot_refused",
        json!({
            "node": refusal.node, "version": refusal.version,
            "bytes": refusal.bytes, "limit": refusal.limit,
        }),
    );
}

/// Records an ACK or NACK. Replies to an older nonce are stale: a newer
/// snapshot is already on its way.
fn answer(node: &pb::Node, tracked: &TrackedProxy, reply: &pb::DiscoveryRequest, nonce: u64) {
    if reply.response_nonce != nonce.to_string() {
        return;
    }
    if reply.error_detail.is_empty() {
        tracked.acked(&reply.version_info, Instant::now());
        emit(
            "ack",
            json!({ "node": node.id, "version": reply.version_info }),
        );
    } else {
        // The proxy's words, kept and logged within a bound.
        let error = remora_proto::truncate_detail(&reply.error_detail);
        tracing::warn!(
            node = node.id,
            kept = reply.version_info,
            error = %error,
            "proxy rejected its snapshot"
        );
        tracked.nacked(&reply.version_info, &error);
        emit(
            "nack",
            json!({
                "node": node.id, "version": reply.version_info, "error": error,
            }),
        );
    }
}
