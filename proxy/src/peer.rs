//! Who is on the other side of an inbound connection.
//!
//! The inbound listener learns it in the TLS handshake and puts a [`Peer`]
//! into every request's extensions; authorization, access logs, metrics and
//! traces read it from there.

use remora_certs::SpiffeId;

/// The downstream peer of an inbound request, as its connection showed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The client's SPIFFE ID, verified against the trust bundle: set only
    /// for mTLS with a client certificate.
    pub identity: Option<SpiffeId>,
    /// The connection was TLS (with or without a client certificate).
    pub tls: bool,
}

impl Peer {
    /// A plaintext peer.
    pub(crate) fn plaintext() -> Self {
        Self::default()
    }

    /// Whether the connection was mutual TLS (a verified client identity).
    pub(crate) fn is_mtls(&self) -> bool {
        self.identity.is_some()
    }
}
