//! Circuit breaking per destination host (DestinationRule
//! `connectionPool`): open connections, requests waiting for one, and
//! requests in flight, counted per [`Endpoint`](super::Endpoint) as Istio's
//! documentation promises (Envoy's code counts per cluster).
//!
//! # Concurrency
//! Counters are atomics taken with compare-and-swap, so a limit is never
//! exceeded by racing requests; each slot is a guard that gives its unit
//! back when dropped. [`Limits::wait`] wakes one waiter whenever a
//! connection goes idle or closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    pending: AtomicUsize,
    requests: AtomicUsize,
    freed: Notify,
}

/// The circuit-breaker counters of one endpoint.
#[derive(Debug, Default)]
pub(super) struct Limits(Arc<Counters>);

/// One open connection; closes its count when dropped (the connection's
/// task holds it until the socket is gone).
#[derive(Debug)]
pub(super) struct ConnectionSlot(Arc<Counters>);

/// One request waiting for a connection.
#[derive(Debug)]
pub(super) struct PendingSlot(Arc<Counters>);

/// One request admitted under `http2MaxRequests`; held until its response
/// body ends.
#[derive(Debug)]
pub(crate) struct RequestSlot(Arc<Counters>);

/// Takes one unit of `counter` if it stays within `max` (0 = unlimited).
fn take(counter: &AtomicUsize, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (max == 0 || n < max as usize).then_some(n + 1)
        })
        .is_ok()
}

impl Limits {
    /// A slot for a new connection, if `maxConnections` allows one.
    pub(super) fn try_open(&self, max_connections: u32) -> Option<ConnectionSlot> {
        take(&self.0.connections, max_connections).then(|| ConnectionSlot(Arc::clone(&self.0)))
    }

    /// A place in the queue for a connection, if `http1MaxPendingRequests`
    /// allows one.
    pub(super) fn try_queue(&self, max_pending: u32) -> Option<PendingSlot> {
        take(&self.0.pending, max_pending).then(|| PendingSlot(Arc::clone(&self.0)))
    }

    /// Admits a request, if `http2MaxRequests` allows one more in flight.
    pub(super) fn try_admit(&self, max_requests: u32) -> Option<RequestSlot> {
        take(&self.0.requests, max_requests).then(|| RequestSlot(Arc::clone(&self.0)))
    }

    /// Open connections to the endpoint.
    pub(super) fn connections(&self) -> usize {
        self.0.connections.load(Ordering::Acquire)
    }

    /// Wakes one waiter: a connection went back to the pool.
    pub(super) fn notify_idle(&self) {
        self.0.freed.notify_one();
    }

    /// Runs `attempt` until it yields, waiting for a connection to go idle
    /// or close between tries. The request joins the queue (bounded by
    /// `max_pending`, 0 = unlimited) the first time it has to wait; `None`
    /// when the queue is full.
    pub(super) async fn wait<T>(
        &self,
        max_pending: u32,
        mut attempt: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let mut queued: Option<PendingSlot> = None;
        loop {
            let notified = self.0.freed.notified();
            tokio::pin!(notified);
            // Registered before the attempt, so a release in between is not lost.
            notified.as_mut().enable();
            if let Some(t) = attempt() {
                return Some(t);
            }
            if queued.is_none() {
                queued = Some(self.try_queue(max_pending)?);
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
