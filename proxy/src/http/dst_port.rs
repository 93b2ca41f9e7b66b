//! The app port a captured HTTP request was meant for, carried between two
//! sidecars: the client's sidecar reads it from the connection's original
//! destination and sends it in [`DST_PORT`] on the mTLS hop (the TCP
//! tunnel carries it in its `CONNECT` authority); the server's sidecar
//! forwards the request to that port at the pod address the peer dialled
//! (never loopback: [`crate::listener::inbound::Inbound::app_address`]), since an app
//! may listen on several ports.
//!
//! No app can choose it: the outbound side removes the header from every
//! request before routing and sets it only on the mTLS hop; the inbound side
//! removes it from every request and believes it only from a peer that
//! proved a mesh identity (a plaintext client gets `--app`, as before).

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::peer::Peer;

/// The header, between sidecars only.
pub(crate) const DST_PORT: HeaderName = HeaderName::from_static("remora-dst-port");

/// Outbound: sets the port for the peer sidecar.
pub(crate) fn mark(headers: &mut HeaderMap, port: u16) {
    headers.insert(DST_PORT, HeaderValue::from(port));
}

/// Removes every [`DST_PORT`] header (what an app sent, on the way out).
pub(crate) fn strip(headers: &mut HeaderMap) {
    headers.remove(DST_PORT);
}

/// Why a carried port is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{DST_PORT} `{value}` from the peer sidecar: {reason}")]
pub struct BadDstPort {
    /// What was sent (cut short).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Inbound: removes the header and returns its port when `peer` is a mesh
/// workload with an identity; `None` when it was absent, or sent by a peer
/// without one (ignored: not a sidecar's word). A sidecar's value that is
/// not one port from 1 to 65535 is an error.
pub(crate) fn take(headers: &mut HeaderMap, peer: &Peer) -> Result<Option<u16>, BadDstPort> {
    let mut values = match headers.entry(DST_PORT) {
        http::header::Entry::Occupied(e) => e.remove_entry_mult().1,
        http::header::Entry::Vacant(_) => return Ok(None),
    };
    if peer.identity.is_none() {
        return Ok(None);
    }
    let first = values.next().expect("an occupied entry has a value");
    let bad = |reason| BadDstPort {
        value: String::from_utf8_lossy(first.as_bytes())
            .chars()
            .take(32)
            .collect(),
        reason,
    };
    if values.next().is_some() {
        return Err(bad("sent more than once"));
    }
    match first.to_str().ok().and_then(|s| s.parse::<u16>().ok()) {
        Some(0) => Err(bad("port 0")),
        Some(port) => Ok(Some(port)),
        None => Err(bad("not a port number")),
    }
}

#[cfg(test)]
mod tests;
