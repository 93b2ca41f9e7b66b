//! Runnable Remora scenarios.
//!
//! - `remora-demo-app` ([`demo_app`]): the HTTP service every example and
//!   end-to-end test puts behind a sidecar; with `client`
//!   ([`demo_client`]), the calling `productpage` of the Compose example.
//! - `remora-canary`: starts a control plane, two versions of `reviews` with
//!   their sidecars and a client sidecar, and shows the 90/10 canary split
//!   (see `examples/canary/README.md`), with the children's harness of
//!   `remora-harness`.

pub mod demo_app;
pub mod demo_client;
