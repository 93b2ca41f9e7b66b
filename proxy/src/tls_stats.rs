//! TLS handshake failures on the data path, counted per direction.
//!
//! Kept apart from the telemetry code on purpose: the metrics exporter
//! reads [`handshake_failures`] and the data path calls only
//! [`tls_handshake_failed`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry::Direction;

static INBOUND: AtomicU64 = AtomicU64::new(0);
static OUTBOUND: AtomicU64 = AtomicU64::new(0);

fn counter(direction: Direction) -> &'static AtomicU64 {
    match direction {
        Direction::Inbound => &INBOUND,
        Direction::Outbound => &OUTBOUND,
    }
}

/// Counts one failed TLS handshake. Outbound: a peer proxy refused, or
/// failed our checks (chain, SPIFFE ID, ALPN). Inbound: a client failed the
/// handshake, or sent plaintext to a STRICT listener.
pub(crate) fn tls_handshake_failed(direction: Direction) {
    counter(direction).fetch_add(1, Ordering::Relaxed);
}

/// Handshakes failed in `direction` since the process started.
pub(crate) fn handshake_failures(direction: Direction) -> u64 {
    counter(direction).load(Ordering::Relaxed)
}
