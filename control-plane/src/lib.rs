//! Remora's control plane: reads Istio-style YAML, keeps a registry of the
//! connected proxies, and pushes each one its compiled snapshot over a gRPC
//! stream.
//!
//! The pieces: [`config`] parses and validates files, [`watch`] follows the
//! config directory, [`mesh`] holds the shared state, [`translate`] turns
//! resources and registry into one proxy's snapshot, and [`discovery`]
//! serves the stream. [`status`] tracks what each proxy was sent and
//! answered, [`metrics`] counts, [`monitoring`] serves both over HTTP, and
//! [`proxy_status`] is the client behind `remora proxy-status`.
//! [`identity`] is the CA's gRPC service, which signs workloads' certificates
//! for bootstrap [`token`]s, and [`grpc`] serves discovery and identity on the
//! plaintext and TLS ports.

pub mod config;
pub mod describe;
pub mod discovery;
pub mod events;
pub mod grpc;
pub mod identity;
pub mod mesh;
pub mod metrics;
pub mod monitoring;
pub mod proxy_status;
pub mod status;
pub mod token;
pub mod translate;
pub mod watch;
