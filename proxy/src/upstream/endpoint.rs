//! One upstream address and its shared state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::limits::{Limits, RequestSlot};
use super::pool::{Connections, IdleH1};
use crate::outlier::Outcome;
use crate::outlier::{Host, OutlierDetector, OutlierSettings, Verdict};

/// An upstream `host:port` (an IP, or a DNS name resolved at connect time).
///
/// # Concurrency
/// Shared by every cluster that lists the address, in every config version
/// that is still serving requests; counters are atomics and the pool takes a
/// short lock that is never held across an await.
#[derive(Debug)]
pub struct Endpoint {
    address: String,
    active: AtomicUsize,
    pub(super) connections: Connections,
    pub(super) limits: Limits,
    outlier: Mutex<OutlierDetector>,
    /// Set while the host may be ejected; lets a pick skip the lock for
    /// the (usual) hosts that are not.
    ejected: AtomicBool,
    /// Set while some consecutive-error count of the host runs; lets a
    /// success skip the lock when there is nothing to reset (the usual
    /// case, now that every cluster counts connect failures).
    counting: AtomicBool,
    /// `inbound` for the app beside the proxy, `outbound` for a peer: the
    /// direction label of the connections it opens.
    direction: &'static str,
}

impl Endpoint {
    /// A new (outbound) endpoint with no connections.
    pub fn new(address: String) -> Self {
        Self {
            address,
            active: AtomicUsize::new(0),
            connections: Connections::default(),
            limits: Limits::default(),
            outlier: Mutex::new(OutlierDetector::default()),
            ejected: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            direction: "outbound",
        }
    }

    /// The app beside the proxy, which inbound requests are forwarded to.
    pub fn app(address: String) -> Self {
        Self {
            direction: "inbound",
            ..Self::new(address)
        }
    }

    /// `inbound` for the app, `outbound` for peers.
    pub fn direction(&self) -> &'static str {
        self.direction
    }

    /// The `host:port` this endpoint connects to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Requests started on this endpoint and not yet finished.
    pub(crate) fn active_requests(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a request as active until the returned guard is dropped.
    pub(crate) fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest {
            endpoint: Arc::clone(self),
            admitted: None,
        }
    }

    /// Open upstream connections (HTTP/1.1 and HTTP/2), idle or busy.
    pub fn open_connections(&self) -> usize {
        self.limits.connections()
    }

    /// Whether outlier detection has this host ejected at `now`. A host
    /// whose ejection time has passed returns here (its counters reset).
    pub fn is_ejected(&self, now: Instant, settings: &OutlierSettings) -> bool {
        if !self.ejected.load(Ordering::Acquire) {
            return false;
        }
        // The flag changes only under the lock, so a concurrent ejection
        // cannot be undone by this return.
        let mut outlier = self.outlier();
        let ejected = outlier.is_ejected(now, settings);
        if !ejected {
            self.ejected.store(false, Ordering::Release);
        }
        ejected
    }

    /// How long the host stays ejected from `now`; `None` when it is not
    /// ejected (for the admin API: a pick returns a host whose time is up).
    pub(crate) fn ejection_left(&self, now: Instant) -> Option<Duration> {
        self.outlier()
            .ejected_until()
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn outlier(&self) -> MutexGuard<'_, OutlierDetector> {
        self.outlier.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pools a connection whose response finished cleanly, and makes sure
    /// a task closes it once it has been idle past its timeout (Istio:
    /// "the connection will be closed"), rather than only skipping it when
    /// it is next wanted. Returns whether it was kept.
    pub(super) fn pool_idle(self: &Arc<Self>, conn: IdleH1) -> bool {
        let kept = self.connections.put_idle(conn);
        if kept && !self.connections.reaper.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
        kept
    }
}

/// What outlier detection's ejection decision ([`crate::outlier::record`])
/// needs of a host: its detector, behind the endpoint's lock and flags.
impl Host for Endpoint {
    fn address(&self) -> &str {
        Endpoint::address(self)
    }

    fn is_ejected(&self, now: Instant, settings: &OutlierSettings) -> bool {
        Endpoint::is_ejected(self, now, settings)
    }

    /// Counts an attempt's outcome in the detector; a success with no
    /// count running takes no lock.
    fn record_outcome(
        &self,
        outcome: Outcome,
        now: Instant,
        settings: &OutlierSettings,
    ) -> Verdict {
        let success = match outcome {
            Outcome::Response(status) => !status.is_server_error(),
            Outcome::Overflow => true,
            Outcome::ConnectFailure | Outcome::Reset => false,
        };
        // Nothing to reset and nothing to count: no lock. A failure counted
        // concurrently may miss this reset; the next success resets it.
        if success && !self.counting.load(Ordering::Acquire) {
            return Verdict::Keep;
        }
        let mut outlier = self.outlier();
        let verdict = outlier.record(outcome, now, settings);
        self.counting.store(outlier.counting(), Ordering::Release);
        verdict
    }

    fn eject(&self, now: Instant, settings: &OutlierSettings, jitter: Duration) -> Duration {
        let mut outlier = self.outlier();
        let until = outlier.eject(now, settings, jitter);
        self.ejected.store(true, Ordering::Release);
        self.counting.store(false, Ordering::Release);
        until - now
    }

    fn spare(&self) {
        self.outlier().spare();
        self.counting.store(false, Ordering::Release);
    }
}

/// Closes an endpoint's idle HTTP/1.1 connections as their idle timeouts
/// pass; ends when none is left idle (or the endpoint is gone). One task
/// per endpoint at most, and none while nothing is pooled.
async fn reap(endpoint: Weak<Endpoint>) {
    loop {
        let next = match endpoint.upgrade() {
            Some(e) => e.connections.close_expired(Instant::now()),
            None => return,
        };
        match next {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => {
                let Some(e) = endpoint.upgrade() else { return };
                e.connections.reaper.store(false, Ordering::Release);
                // A connection pooled between the check and the store saw
                // the flag still set: look once more before leaving.
                if e.connections.idle_count() == 0
                    || e.connections.reaper.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        }
    }
}

/// A request in flight on an endpoint; dropping it ends the request.
#[derive(Debug)]
pub struct ActiveRequest {
    endpoint: Arc<Endpoint>,
    /// The `http2MaxRequests` slot, once the request was admitted.
    pub(super) admitted: Option<RequestSlot>,
}

impl ActiveRequest {
    /// The endpoint serving this request.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands out one [`Endpoint`] per address, so that successive configs share
/// live state. Only consulted when a config is built, never per request.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    endpoints: Mutex<HashMap<String, Weak<Endpoint>>>,
}

impl EndpointRegistry {
    /// The endpoint for `address`, created if no live config holds it.
    pub fn get(&self, address: &str) -> Arc<Endpoint> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(address).and_then(Weak::upgrade) {
            return e;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let e = Arc::new(Endpoint::new(address.to_owned()));
        map.insert(address.to_owned(), Arc::downgrade(&e));
        e
    }
}
