//! Remora's control plane: reads Istio-style YAML, keeps a registry of the
//! connected proxies, and pushes each one its compiled snapshot over a gRPC
//! stream.
//!
//! The pieces: [`config`] parses and validates files, [`watch`] follows the
//! config directory, [`mesh`] holds the shared state, [`translate`] turns
//! resources and registry into one proxy's snapshot, and [`discovery`]
//! serves the stream.

pub mod config;
pub mod discovery;
pub mod events;
pub mod mesh;
pub mod translate;
pub mod watch;
