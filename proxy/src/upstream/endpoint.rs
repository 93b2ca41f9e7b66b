//! One upstream address and its shared state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::pool::Connections;

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
}

impl Endpoint {
    /// A new endpoint with no connections.
    pub fn new(address: String) -> Self {
        Self {
            address,
            active: AtomicUsize::new(0),
            connections: Connections::default(),
        }
    }

    /// The `host:port` this endpoint connects to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Requests started on this endpoint and not yet finished.
    pub fn active_requests(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a request as active until the returned guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(Arc::clone(self))
    }
}

/// A request in flight on an endpoint; dropping it ends the request.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Endpoint>);

impl ActiveRequest {
    /// The endpoint serving this request.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
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
