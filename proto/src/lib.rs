//! Remora's wire contract: the discovery protocol between the control plane
//! and the proxies, generated from `proto/discovery.proto` at build time, and
//! the identity protocol ([`pb::identity`], from `proto/identity.proto`).

/// The generated messages and the `Discovery` service (client and server).
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all)] // generated code
    tonic::include_proto!("remora.discovery.v1");

    /// The identity protocol (`proto/identity.proto`): the `Identity` service that signs a
    /// workload's CSR into its X509-SVID. Requests carry a CSR, never a private key.
    pub mod identity {
        tonic::include_proto!("remora.identity.v1");
    }
}

mod duration;
pub mod encoded;
mod error_chain;
pub mod incremental;

pub use duration::{Duration, DurationError};
pub use error_chain::error_chain;

/// The largest compiled program a proxy accepts for one `regex` match (the
/// `regex` crate's size limit; Envoy's RE2 `max_program_size` plays the same
/// part). Proxies refuse, and NACK, a config with a larger one; the control
/// plane warns about it when it reads the YAML.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The largest encoded `Snapshot` a proxy accepts (the discovery client's
/// gRPC decoding limit, which is also tonic's default). The control plane
/// refuses to send a larger one, saying so, rather than have every proxy
/// fail to decode it.
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;

/// The revision of the discovery protocol this build speaks (`Node.protocol`).
/// Raised when a change to the messages would make an older proxy misread a
/// snapshot without noticing. 1: durations as `google.protobuf.Duration`.
pub const PROTOCOL: u32 = 1;

/// The oldest revision the control plane serves: an older proxy is refused,
/// saying which revision it speaks and which is needed.
pub const MIN_PROTOCOL: u32 = 1;

/// The largest encoded `DiscoveryRequest` the control plane accepts. A
/// proxy's requests are its `Node` (identity, labels, addresses, a token)
/// and ACKs or NACKs: a few KiB. A larger one ends that stream with
/// `OUT_OF_RANGE`, so that a registered proxy cannot make the control plane
/// buffer megabytes per stream.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// The longest NACK detail (`DiscoveryRequest.error_detail`) a proxy sends
/// and the control plane keeps (its log and `remora proxy-status`): longer
/// ones are cut at a character boundary, by [`truncate_detail`].
pub const MAX_NACK_DETAIL_BYTES: usize = 4 << 10;

/// `detail` cut to at most [`MAX_NACK_DETAIL_BYTES`] bytes at a character
/// boundary, saying how much was cut.
pub fn truncate_detail(detail: &str) -> std::borrow::Cow<'_, str> {
    if detail.len() <= MAX_NACK_DETAIL_BYTES {
        return detail.into();
    }
    // Room for the marker, so that the result stays within the bound.
    const MARKER_ROOM: usize = 48;
    let kept = cut(detail, MAX_NACK_DETAIL_BYTES - MARKER_ROOM);
    format!("{kept}… ({} bytes cut)", detail.len() - kept.len()).into()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary: text from the network, cut before it is logged,
/// kept or quoted.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
