//! End-to-end test harness for Remora: the workspace's binaries run as real
//! processes on `127.0.0.1` with ports chosen by the kernel, next to
//! in-process apps and a scriptable discovery server.
//!
//! Every wait is bounded and panics with the process's stderr tail; every
//! process is killed when its handle drops.

pub mod backend;
pub mod binaries;
pub mod client;
pub mod direct;
pub mod discovery;
pub mod echo;
pub mod load;
pub mod mesh;
pub mod netns;
pub mod otlp;
pub mod raw;
pub mod scenario;
pub mod secure;
pub mod yaml;

pub use backend::{Backend, Serves};
pub use binaries::{bin, workspace_root};
pub use client::{HttpClient, Protocol, Reply};
pub use direct::{Direct, Shot};
pub use load::{Load, Sample};
pub use mesh::{ControlPlane, DemoApp, EVENT_TIMEOUT, Mesh, Proxy, ProxySpec};
pub use remora_harness::{Event, Process, Stderr};
