//! The proxy's workload identity: an X509-SVID for
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` from the control plane's CA,
//! kept fresh for the mTLS data path.
//!
//! - [`args`]: the flags (`--token`, `--token-file`, `--ca-cert`, `--ca-address`,
//!   `--trust-domain`, `--cert-lifetime`) and the settings validated from them.
//! - [`renew::first_certificate`] runs before the proxy serves: key, CSR, `Sign`, and the
//!   [`Identity`] holding the result; the CA's refusal stops the proxy.
//! - [`renew::renew_forever`] renews half-way through the validity (with jitter), with a new
//!   key each time, retrying with backoff while the old certificate stays in use.
//! - [`schedule`]: the arithmetic of both, pure.
//!
//! The private key is made here and never leaves the process: only CSRs are sent.
//!
//! # Events
//! `certificate` (`spiffe_id`, `not_after_unix`, `serial` in hex, `renewal`: 0 for the first)
//! each time one is installed; `certificate_error` (`phase`, `attempt`, `error`, `expired`)
//! each time an attempt fails.

pub mod args;
pub mod client;
pub(crate) mod renew;
pub mod schedule;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use remora_certs::{MeshTls, SpiffeId, Svid, TrustBundle, WorkloadKey};
use remora_proto::pb::identity::SignResponse;
use tokio::sync::watch;
use tokio::time::Instant;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use args::{IdentityArgs, IdentitySettings};
pub(crate) use client::{SignError, Signer, control_plane_id, tls_channel};
pub use renew::start;

use crate::events;
pub use crate::identity::args::CaAddress;

/// The last error of the first certificate's attempts, while the proxy
/// still waits for it; the health, admin and metrics ports answer 503 with
/// it meanwhile.
static BOOTSTRAP_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Why the first certificate could not be had yet, if an attempt failed.
pub fn bootstrap_error() -> Option<String> {
    BOOTSTRAP_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Records the latest attempt's error (`None` once the certificate came).
pub(crate) fn set_bootstrap_error(error: Option<String>) {
    *BOOTSTRAP_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = error;
}

/// The workload's identity: its SPIFFE ID, the mTLS state the data path uses, and what is
/// known about the current certificate.
///
/// # Concurrency
/// The renewal task is the only writer; readers (`/certs`, readiness, metrics) load the
/// current [`Certificate`] lock-free.
#[derive(Debug)]
pub struct Identity {
    id: SpiffeId,
    mesh: MeshTls,
    current: ArcSwap<Certificate>,
    /// The number of renewals so far; changes each time a certificate is installed.
    changes: watch::Sender<u64>,
    /// The control plane's TLS port, as its first answer gave it.
    ca_tls_port: Option<u16>,
}

/// One certificate as received, with its renewal schedule.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// Leaf serial number, lowercase hex.
    pub serial: String,
    /// Start of the leaf's validity (the CA backdates it a minute).
    pub not_before: SystemTime,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
    /// When renewal is scheduled to start (wall clock, for display).
    pub renew_at: SystemTime,
    /// The leaf and intermediates, PEM, as the CA sent them.
    pub chain_pem: String,
    /// The trust bundle in force, PEM.
    pub trust_bundle_pem: String,
    /// 0 for the first certificate, then 1, 2…
    pub renewal: u64,
    /// When renewal is scheduled to start (monotonic, what the renewal task sleeps until).
    pub renew_deadline: Instant,
    /// When the leaf expires (monotonic).
    pub expires: Instant,
}

/// A `Sign` answer checked against the key and identity it was asked for.
#[derive(Debug)]
pub struct Issued {
    svid: Svid,
    bundle: Option<TrustBundle>,
    serial: String,
    chain_pem: String,
    /// When it arrived, on both clocks.
    received: (SystemTime, Instant),
    /// The control plane's TLS port, if it said.
    tls_port: Option<u16>,
}

impl Issued {
    /// Checks `response` against `key` and `expected`: the chain is for our key, the leaf is
    /// an SVID for exactly `expected`, the bundle (if sent) parses.
    pub fn check(
        response: SignResponse,
        key: &WorkloadKey,
        expected: &SpiffeId,
    ) -> Result<Self, SignError> {
        let received = (SystemTime::now(), Instant::now());
        let bad = |what: String| SignError::BadResponse(what);
        let svid = key
            .certify(&response.cert_chain_pem)
            .map_err(|e| bad(e.to_string()))?;
        if svid.id() != expected {
            return Err(bad(format!(
                "the certificate is for {}, not {expected}",
                svid.id()
            )));
        }
        let bundle = if response.trust_bundle_pem.trim().is_empty() {
            None
        } else {
            Some(
                TrustBundle::from_pem(&response.trust_bundle_pem)
                    .map_err(|e| bad(e.to_string()))?,
            )
        };
        let leaf = svid
            .cert_chain()
            .first()
            .ok_or_else(|| bad("no certificate in the chain".to_owned()))?;
        let serial = X509Certificate::from_der(leaf)
            .map(|(_, x509)| hex(x509.raw_serial()))
            .map_err(|e| bad(format!("the leaf does not parse: {e}")))?;
        Ok(Self {
            svid,
            bundle,
            serial,
            chain_pem: response.cert_chain_pem,
            received,
            tls_port: u16::try_from(response.tls_port).ok().filter(|p| *p != 0),
        })
    }

    /// The schedule of this certificate: validity left on arrival, renewal `jitter` in
    /// `[-1, 1]` (see [`schedule::renew_delay`]).
    fn certificate(&self, renewal: u64, trust_bundle_pem: String, jitter: f64) -> Certificate {
        let (wall, mono) = self.received;
        let remaining = self
            .svid
            .not_after()
            .duration_since(wall)
            .unwrap_or(Duration::ZERO);
        let delay = schedule::renew_delay(remaining, jitter);
        Certificate {
            serial: self.serial.clone(),
            not_before: self.svid.not_before(),
            not_after: self.svid.not_after(),
            renew_at: wall + delay,
            chain_pem: self.chain_pem.clone(),
            trust_bundle_pem,
            renewal,
            renew_deadline: mono + delay,
            expires: mono + remaining,
        }
    }
}

impl Identity {
    /// The identity with its first certificate: stores the SVID (and the CA's bundle, if it
    /// sent one) into `mesh` and prints the `certificate` event.
    pub fn new(id: SpiffeId, mesh: MeshTls, first: Issued, jitter: f64) -> Self {
        let ca_tls_port = first.tls_port;
        let certificate = install(&mesh, first, 0, jitter);
        announce(&id, &certificate);
        Self {
            id,
            mesh,
            current: ArcSwap::from_pointee(certificate),
            changes: watch::Sender::new(0),
            ca_tls_port,
        }
    }

    /// The control plane's TLS port, as the answer with the first certificate gave it.
    pub(crate) fn ca_tls_port(&self) -> Option<u16> {
        self.ca_tls_port
    }

    /// Makes `next` the certificate presented by new connections (open ones keep theirs), and
    /// prints the `certificate` event.
    pub fn renewed(&self, next: Issued, jitter: f64) {
        let renewal = self.current.load().renewal + 1;
        let certificate = Arc::new(install(&self.mesh, next, renewal, jitter));
        self.current.store(Arc::clone(&certificate));
        self.changes.send_replace(renewal);
        announce(&self.id, &certificate);
    }

    /// The SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The mTLS state: the current SVID and trust bundle, for the data path's configs.
    pub fn mesh_tls(&self) -> &MeshTls {
        &self.mesh
    }

    /// The current certificate.
    pub fn current(&self) -> Arc<Certificate> {
        self.current.load_full()
    }

    /// Follows renewals: the value is the number of renewals so far.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the current certificate is still valid: readiness requires it.
    pub(crate) fn has_valid_certificate(&self) -> bool {
        Instant::now() < self.current.load().expires
    }

    /// What admin `/certs` shows: the identity, the leaf's serial and validity, when renewal
    /// starts, the chain and the trust bundle (all public; the key is never shown).
    pub(crate) fn certs_json(&self) -> serde_json::Value {
        let c = self.current.load();
        serde_json::json!({
            "identity": self.id.as_str(),
            "serial": c.serial,
            "not_before_unix": unix(c.not_before),
            "not_after_unix": unix(c.not_after),
            "renew_at_unix": unix(c.renew_at),
            "renewals": c.renewal,
            "chain_pem": c.chain_pem,
            "trust_bundle_pem": c.trust_bundle_pem,
        })
    }
}

/// What admin `/certs` shows when the proxy runs without identity.
pub(crate) fn no_identity_json() -> serde_json::Value {
    serde_json::json!({ "identity": null, "reason": "no token: mTLS is off" })
}

/// Stores `issued` (its bundle first) as what new connections present, and returns its schedule.
fn install(mesh: &MeshTls, mut issued: Issued, renewal: u64, jitter: f64) -> Certificate {
    // The bundle first: a peer's new chain may need it before our new SVID is presented.
    if let Some(bundle) = issued.bundle.take() {
        mesh.trust_bundle().store(bundle);
    }
    let certificate = issued.certificate(renewal, mesh.trust_bundle().load().to_pem(), jitter);
    mesh.svid().store(issued.svid);
    crate::telemetry::metrics::set_cert_expiry(unix(certificate.not_after));
    certificate
}

/// Logs `certificate` and prints its event. Called once it is what `/certs` shows, so that
/// whoever acts on the event finds it there.
fn announce(id: &SpiffeId, certificate: &Certificate) {
    let not_after = unix(certificate.not_after).to_string();
    let renewal_text = certificate.renewal.to_string();
    tracing::info!(
        spiffe_id = %id,
        serial = certificate.serial,
        not_after_unix = not_after,
        renewal = certificate.renewal,
        "installed a certificate"
    );
    events::emit(
        "certificate",
        &[
            ("spiffe_id", id.as_str()),
            ("not_after_unix", &not_after),
            ("serial", &certificate.serial),
            ("renewal", &renewal_text),
        ],
    );
}

/// Seconds since the Unix epoch (negative before it).
fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
