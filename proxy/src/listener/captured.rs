//! What the listeners know about captured connections: the flags that say
//! how to treat them ([`CaptureSettings`]), and the original destination
//! each request of a captured HTTP connection carries ([`Captured`]). Both
//! listeners read them; the capturing listener ([`super::capture`]) makes
//! them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::detect;
use crate::upstream::Endpoint;

/// How both listeners treat captured connections (proxy flags).
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// How long a captured connection may stay silent before it is
    /// forwarded as TCP (`--protocol-detection-timeout`).
    pub silence: Duration,
    /// Ports forwarded as TCP without detection (`--opaque-ports`), on top
    /// of those the mesh declares TCP.
    pub opaque_ports: HashSet<u16>,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            silence: detect::DEFAULT_SILENCE,
            opaque_ports: HashSet::new(),
        }
    }
}

/// A captured HTTP connection, in each of its requests' extensions.
#[derive(Debug)]
pub struct Captured {
    /// Where the app was connecting to.
    pub dst: SocketAddr,
    /// The original destination as an upstream, made on first use, so
    /// that the requests of one keep-alive connection share its pool.
    passthrough: OnceLock<Arc<Endpoint>>,
}

impl Captured {
    /// A connection the app made to `dst`.
    pub(crate) fn new(dst: SocketAddr) -> Self {
        Self {
            dst,
            passthrough: OnceLock::new(),
        }
    }

    /// The original destination as an endpoint.
    pub(crate) fn passthrough(&self) -> &Arc<Endpoint> {
        self.passthrough
            .get_or_init(|| Arc::new(Endpoint::new(self.dst.to_string())))
    }
}
