//! Remora's control plane: reads Istio-style YAML, keeps a registry of the
//! connected proxies, and pushes each one its compiled snapshot over a gRPC
//! stream.
//!
//! The pieces: [`config`] parses and validates files, [`watch`] follows the
//! config directory, [`mesh`] holds the shared state, [`translate`] turns
//! resources and registry into the snapshots of every view, [`publish`] does so once per
//! burst of changes for all proxies, and [`discovery`]
//! serves the stream, admitting each proxy's registration with [`admission`] (its identity
//! from the TLS client certificate, its fields as the proxies check them). [`status`] tracks what each proxy was sent and
//! answered, [`metrics`] counts, [`monitoring`] serves both over HTTP, and
//! [`proxy_status`] is the client behind `remora proxy-status`.
//! [`identity`] is the CA's gRPC service, which signs workloads' certificates
//! for bootstrap [`token`]s, and [`grpc`] serves discovery and identity on the
//! plaintext and TLS ports. [`path_normalization`] parses the mesh's path
//! normalisation flags. [`inject`] adds the sidecar to Kubernetes
//! manifests and Compose files (`remora inject`), and [`bootstrap`] writes a
//! proxy's token and CA certificate for Compose (`remora bootstrap`).

pub mod admission;
pub mod bootstrap;
pub mod config;
pub mod describe;
pub mod discovery;
pub mod events;
pub mod grpc;
pub mod identity;
pub mod inject;
pub mod mesh;
pub mod metrics;
pub mod monitoring;
pub mod path_normalization;
pub mod proxy_status;
pub mod publish;
pub mod status;
pub mod token;
pub mod translate;
pub mod trim;
pub mod watch;
