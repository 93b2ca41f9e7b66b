//! The inbound path: a peer proxy's request, authorized and forwarded to
//! the app on localhost in the protocol the app was called in.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use remora_certs::{AllowedPeers, ClientAuth, MeshTls, SpiffeId, Svid, TlsError};
use rustls::ServerConfig;

use super::captured::CaptureSettings;
use super::outbound::{into_downstream_response, prepare_upstream_request};
use super::{check_request_target, orig_proto};
use crate::app_health::AppHealth;
use crate::authz::{Denied, RequestAttributes};
use crate::config::{RuntimeConfig, app_version};
use crate::error::ProxyError;
use crate::http::dst_port;
use crate::http::{APP_UNREACHED, authority, host_of, strip_hop_by_hop};
use crate::listener::observe::{Observed, Record};
use crate::peer::Peer;
use crate::telemetry::{Direction, Telemetry};
use crate::upstream::{Endpoint, PoolSettings, Transport};

/// The header that tells the app who called (Envoy's format).
pub(crate) const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// What the inbound path reads: the app, the config (PeerAuthentication
/// mode and AuthorizationPolicies) and the TLS state.
#[derive(Debug)]
pub struct Inbound {
    /// The app beside this proxy.
    pub app: Arc<Endpoint>,
    /// The app's port, which `portLevelMtls` and AuthorizationPolicy
    /// `ports` name.
    pub app_port: u16,
    /// `--app` as a socket address, for TCP (`127.0.0.1:<app_port>` when
    /// `--app` names a host).
    app_socket: SocketAddr,
    /// Pool settings towards the app.
    pub pool: PoolSettings,
    /// Access log (and, with them, the other observers).
    pub telemetry: Arc<Telemetry>,
    /// Swapped whole by discovery; read per connection (mode) and per
    /// request (authorization).
    pub config: Arc<ArcSwap<RuntimeConfig>>,
    /// `None` without an identity: plaintext only.
    pub tls: Option<InboundTls>,
    /// How captured connections are told apart.
    pub capture: CaptureSettings,
    /// The proxy's own listening ports, which a tunnel may not reach.
    own_ports: Vec<u16>,
    /// The app at other addresses than `--app` (captured connections,
    /// tunnels and peer sidecars name theirs), made on first use, at most
    /// [`MAX_OTHER_APPS`] kept.
    other_apps: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    warned_strict: AtomicBool,
    /// The app's probe, started at once when the app's port refuses.
    app_health: Option<Arc<AppHealth>>,
}

/// The most app endpoints (other than `--app`) kept with their pools: a
/// peer that names a new port for every request makes a new connection
/// each time beyond this, and costs no memory.
const MAX_OTHER_APPS: usize = 64;

/// Where an inbound connection was going, in each of its requests'
/// extensions: the address its client dialled (a captured connection's
/// original destination, else the listener's own local address: the pod's
/// address for a peer sidecar), and whether it was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dialled {
    /// The pod address and port the client connected to.
    pub addr: SocketAddr,
    /// Redirected here by the capture rules: `addr`'s port is the app's.
    pub captured: bool,
}

impl Dialled {
    /// For a connection that arrived at `local`, captured from `original`
    /// when there is one. An IPv4 client of a dual-stack listener is seen
    /// at `::ffff:a.b.c.d`; the app is dialled at `a.b.c.d`.
    pub(crate) fn new(local: SocketAddr, original: Option<SocketAddr>) -> Self {
        let addr = original.unwrap_or(local);
        Self {
            addr: SocketAddr::new(addr.ip().to_canonical(), addr.port()),
            captured: original.is_some(),
        }
    }
}

/// The inbound listener's TLS: one server config per client-auth policy,
/// built once; they read the current SVID and bundle at each handshake.
#[derive(Debug)]
pub struct InboundTls {
    mesh: MeshTls,
    /// STRICT: a client certificate is required.
    pub(super) required: Arc<ServerConfig>,
    /// PERMISSIVE: a client certificate is verified if sent.
    pub(super) optional: Arc<ServerConfig>,
}

impl InboundTls {
    /// The server configs over `mesh`, which must hold this proxy's SVID already: a client
    /// certificate is accepted only from a workload of the SVID's trust domain (a chain to the
    /// bundle does not prove the trust domain: a CA shared between trust domains signs both).
    pub fn new(mesh: MeshTls) -> Result<Self, InboundError> {
        let svid = mesh.svid().load().ok_or(InboundError::NoSvid)?;
        let clients = AllowedPeers::trust_domain(svid.id().trust_domain());
        Ok(Self {
            required: mesh.server_config(ClientAuth::Required, clients.clone())?,
            optional: mesh.server_config(ClientAuth::Optional, clients)?,
            mesh,
        })
    }
}

/// Why the inbound path cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// The app address has no port.
    #[error("app address `{0}` is not host:port")]
    BadAppAddress(String),
    /// The TLS server configs could not be built.
    #[error("inbound TLS: {0}")]
    Tls(#[from] TlsError),
    /// mTLS without a certificate yet: the trust domain of the peers is not known.
    #[error("inbound TLS: the proxy has no certificate yet")]
    NoSvid,
}

impl Inbound {
    /// The inbound path to the app at `app` (`host:port`), reading `config`;
    /// with `mesh_tls` it serves mTLS per PeerAuthentication.
    pub fn new(
        app: &str,
        config: Arc<ArcSwap<RuntimeConfig>>,
        telemetry: Arc<Telemetry>,
        mesh_tls: Option<MeshTls>,
    ) -> Result<Self, InboundError> {
        let app_port = app
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .ok_or_else(|| InboundError::BadAppAddress(app.to_owned()))?;
        Ok(Self {
            app: Arc::new(Endpoint::app(app.to_owned())),
            app_port,
            app_socket: app
                .parse()
                .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, app_port))),
            pool: PoolSettings::default(),
            telemetry,
            config,
            tls: mesh_tls.map(InboundTls::new).transpose()?,
            capture: CaptureSettings::default(),
            own_ports: Vec::new(),
            other_apps: Mutex::new(HashMap::new()),
            warned_strict: AtomicBool::new(false),
            app_health: None,
        })
    }

    /// With `capture` settings, and the proxy's own ports (never reached
    /// through a tunnel).
    pub fn with_capture(mut self, capture: CaptureSettings, own_ports: Vec<u16>) -> Self {
        self.capture = capture;
        self.own_ports = own_ports;
        self
    }

    /// With the app's probe, which a refused connect to the app starts.
    pub fn with_app_health(mut self, app_health: Option<Arc<AppHealth>>) -> Self {
        self.app_health = app_health;
        self
    }

    /// Whether `port` is one of the proxy's own listeners.
    pub(super) fn is_own_port(&self, port: u16) -> bool {
        self.own_ports.contains(&port)
    }

    /// Where the app is reached for `port` on a connection the client
    /// dialled at `pod`: `--app` for its port; otherwise `pod`'s address
    /// with that port, never loopback for a pod address. What a client
    /// reaches through the sidecar is thus what it would reach without one:
    /// a listener the app keeps on 127.0.0.1 stays private to the pod, as
    /// in Istio since 1.10 (docs/security.md).
    pub(super) fn app_address(&self, pod: IpAddr, port: u16) -> Option<SocketAddr> {
        (port != self.app_port).then(|| SocketAddr::new(pod, port))
    }

    /// [`Self::app_address`], `--app` included, for TCP.
    pub(super) fn app_socket(&self, pod: IpAddr, port: u16) -> SocketAddr {
        self.app_address(pod, port).unwrap_or(self.app_socket)
    }

    /// The app endpoint for `port` dialled at `pod` ([`Self::app_address`]).
    pub(super) fn app_at(&self, pod: IpAddr, port: u16) -> Arc<Endpoint> {
        let Some(addr) = self.app_address(pod, port) else {
            return Arc::clone(&self.app);
        };
        let mut apps = self.other_apps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(app) = apps.get(&addr) {
            return Arc::clone(app);
        }
        let app = Arc::new(Endpoint::app(addr.to_string()));
        if apps.len() >= MAX_OTHER_APPS {
            // Those no request holds go (their pooled connections close).
            apps.retain(|_, app| Arc::strong_count(app) > 1);
        }
        if apps.len() < MAX_OTHER_APPS {
            apps.insert(addr, Arc::clone(&app));
        }
        app
    }

    /// AuthorizationPolicy for a TCP connection to `port` from `peer`:
    /// `principals`, `namespaces` and `ports` apply, HTTP-only fields
    /// cannot match (Istio's rule: an ALLOW rule with them is skipped, a
    /// DENY rule ignores them).
    pub(super) fn authorize_tcp(&self, port: u16, peer: &Peer) -> Result<(), Denied> {
        let config = self.config.load();
        let authz = config.inbound().authz();
        if authz.is_empty() {
            return Ok(());
        }
        let attrs = RequestAttributes {
            port,
            tcp: true,
            ..Default::default()
        }
        .with_peer(peer.identity.as_ref());
        authz.check(&attrs)
    }

    /// Logs, once per process, that STRICT cannot be honoured.
    pub(super) fn warn_strict_without_identity(&self) {
        if !self.warned_strict.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "PeerAuthentication is STRICT but this proxy has no identity: \
                 serving plaintext"
            );
        }
    }

    /// This proxy's SPIFFE ID, once it has an SVID.
    /// This proxy's current SVID (the ID is read from it only for mTLS
    /// peers, without a copy).
    fn own_svid(&self) -> Option<Arc<Svid>> {
        self.tls.as_ref()?.mesh.svid().load()
    }

    /// Makes the request target unambiguous (one Host, the path
    /// normalised per the mesh), then authorizes the request as it now is:
    /// what AuthorizationPolicy checks is what the app gets. Then sets the
    /// HTTP version the app gets: its port's declared protocol, else the
    /// version the request reached this sidecar in.
    fn check(&self, parts: &mut Parts, peer: &Peer, port: u16) -> Result<(), ProxyError> {
        let config = self.config.load();
        check_request_target(parts, config.path_normalization())?;
        authorize(&config, parts, peer, port)?;
        let protocol =
            config.app_protocol(self.telemetry.workload.fqdn(), port, port == self.app_port);
        parts.version = app_version(protocol, parts.version);
        Ok(())
    }
}

/// AuthorizationPolicy for this request, per `config`.
fn authorize(config: &RuntimeConfig, parts: &Parts, peer: &Peer, port: u16) -> Result<(), Denied> {
    let authz = config.inbound().authz();
    if authz.is_empty() {
        return Ok(());
    }
    let attrs = RequestAttributes {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        host: authority(parts).map_or("", host_of),
        port,
        ..Default::default()
    }
    .with_peer(peer.identity.as_ref());
    authz.check(&attrs)
}

/// Handles one request: the whole inbound path, outermost first:
///
/// 1. (the listener has done TLS per PeerAuthentication and put the
///    [`Peer`] into the request); request headers over the limit are
///    refused with 431 ([`crate::limits`], with the allowance for what a
///    peer sidecar added);
/// 2. hop-by-hop headers go, before the proxy reads or sets any header, so
///    a `Connection` header can remove only what the client sent (and never
///    `Host`);
/// 3. an HTTP/1.1 request carried over h2 between proxies becomes HTTP/1.1
///    again ([`orig_proto::decode`]);
/// 4. `x-forwarded-client-cert` is replaced: `By=<own ID>;URI=<peer ID>`
///    for an mTLS peer, removed otherwise (a client cannot forge it);
/// 5. the request target is made unambiguous: one `Host` that agrees with
///    the target's authority, the path normalised per the mesh's
///    `pathNormalization` (400 otherwise; [`check_request_target`]);
/// 6. AuthorizationPolicy on that Host and path: 403 and never forwarded
///    when denied;
/// 7. the HTTP version the app gets: its port's declared protocol (the
///    proxy's own service's ports, [`RuntimeConfig::app_protocol`]), else
///    the one the request came in (the client sidecar's choice, step 3);
/// 8. forward that same request to the app over a pooled connection (503
///    if it is down): to `--app` for its port; for a captured connection to
///    its original destination ([`Dialled`]); for a peer sidecar's request
///    to the port its app called ([`dst_port`], believed from an mTLS peer
///    only, 400 if malformed) at the pod address the peer dialled — never
///    to loopback for another port ([`Inbound::app_address`]);
/// 9. response headers over the limit are refused with 502, here where
///    they enter the mesh, before they reach the connection between
///    sidecars;
/// 10. the app's answer loses any [`APP_UNREACHED`]; this proxy's own 503
///     for a connect failure to the app carries it (nothing reached the
///     app: the client sidecar retries elsewhere), and starts a probe of
///     the app at once ([`crate::app_health`]).
///
/// A `CONNECT` from an mTLS peer is a TCP tunnel instead
/// ([`super::tunnel::accept`]), served before this function.
pub async fn handle(inbound: Arc<Inbound>, req: Request<Incoming>) -> Response<Observed> {
    let (mut parts, body) = req.into_parts();
    let limits = crate::limits::headers();
    let checked = limits.check_request(&parts, true);
    strip_hop_by_hop(&mut parts.headers);
    let mut record = Record::start(
        Arc::clone(&inbound.telemetry),
        Direction::Inbound,
        &mut parts,
    );
    let peer = parts.extensions.get::<Peer>().cloned().unwrap_or_default();
    // A captured connection's port, else the one a peer sidecar carried
    // (from its app's original destination), else `--app`'s.
    let carried = dst_port::take(&mut parts.headers, &peer).and_then(|carried| match carried {
        Some(port) if inbound.is_own_port(port) => Err(dst_port::BadDstPort {
            value: port.to_string(),
            reason: "one of the proxy's own ports",
        }),
        other => Ok(other),
    });
    let dialled = parts.extensions.get::<Dialled>().copied();
    let port = match (dialled.filter(|d| d.captured), &carried) {
        (Some(d), _) => d.addr.port(),
        (None, Ok(Some(p))) => *p,
        (None, _) => inbound.app_port,
    };
    let pod = dialled.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |d| d.addr.ip());
    let app = inbound.app_at(pod, port);
    record.set_upstream(app.address());
    orig_proto::decode(&mut parts);
    // Our SVID is read only for mTLS peers, and its ID borrowed, not copied.
    let own = peer.identity.as_ref().and_then(|_| inbound.own_svid());
    set_client_cert(&mut parts.headers, &peer, own.as_deref().map(Svid::id));
    let result = async {
        checked.map_err(ProxyError::RequestHeadersTooLarge)?;
        carried?;
        inbound.check(&mut parts, &peer, port)?;
        prepare_upstream_request(&mut parts)?;
        let active = app.start_request();
        let resp = app
            .send(
                Request::from_parts(parts, Either::Left(body)),
                active,
                &inbound.pool,
                Transport::Plaintext,
            )
            .await?;
        limits
            .check_response(resp.headers(), false)
            .map_err(ProxyError::ResponseHeadersTooLarge)?;
        Ok::<_, ProxyError>(resp)
    }
    .await;
    let resp = match result {
        // Only this proxy may say that the app was not reached: the app's
        // answer loses any such mark there.
        Ok(resp) => into_downstream_response(resp),
        Err(e) => {
            tracing::debug!(error = %e, peer = ?peer.identity, "inbound request failed");
            record.fail(e.flag());
            let unreached = matches!(&e, ProxyError::Upstream(u) if u.is_connect_failure());
            let mut resp = e.into_response();
            if unreached {
                mark_unreached(&mut resp);
                if let Some(probe) = &inbound.app_health {
                    probe.poke();
                }
            }
            resp
        }
    };
    record.observe(resp)
}

/// Marks this proxy's answer to a request it could not connect to the app
/// for ([`APP_UNREACHED`]): the client's sidecar may try another endpoint,
/// whatever the method.
fn mark_unreached<B>(resp: &mut Response<B>) {
    resp.headers_mut()
        .insert(APP_UNREACHED, HeaderValue::from_static("connect-failure"));
}

/// Replaces any `x-forwarded-client-cert` with what this proxy verified.
fn set_client_cert(headers: &mut HeaderMap, peer: &Peer, own: Option<&SpiffeId>) {
    headers.remove(&XFCC);
    let Some(client) = &peer.identity else {
        return;
    };
    let value = match own {
        Some(own) => format!("By={own};URI={client}"),
        None => format!("URI={client}"),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(XFCC, value);
    }
}

#[cfg(test)]
mod tests;
