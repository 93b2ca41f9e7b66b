//! Remora's wire contract: the discovery protocol between the control plane
//! and the proxies, generated from `proto/discovery.proto` at build time.

/// The generated messages and the `Discovery` service (client and server).
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all)] // generated code
    tonic::include_proto!("remora.discovery.v1");
}
