//! The canary mesh most tests start from: `reviews` v1 and v2, each an app
//! behind its own sidecar, a client-only proxy in front, and the control
//! plane serving a 90/10-style VirtualService from its config directory.

use std::time::Duration;

use crate::backend::Backend;
use crate::discovery::cluster_name;
use crate::mesh::{DemoApp, Mesh, Proxy, ProxySpec};
use crate::yaml;

/// How long a registry change may take to show in a proxy's config while
/// a scenario starts.
const SETTLE: Duration = Duration::from_secs(10);

/// Which app stands behind each sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// An in-process [`Backend`] answering with its version.
    InProcess,
    /// A `remora-demo-app` process (`GET /version` answers the version).
    DemoApp,
}

/// The running canary mesh.
#[derive(Debug)]
pub struct Canary {
    /// The control plane and its config directory.
    pub mesh: Mesh,
    /// The client-only proxy (workload `productpage`) requests go through.
    pub client: Proxy,
    /// The `reviews` sidecars: v1, then v2.
    pub sidecars: Vec<Proxy>,
    /// The in-process apps (v1, v2), if [`AppKind::InProcess`].
    pub backends: Vec<Backend>,
    _demo_apps: Vec<DemoApp>,
}

/// The VirtualService's file name in the config directory.
pub const VS_FILE: &str = "reviews-vs.yaml";
/// The DestinationRule's file name in the config directory.
pub const DR_FILE: &str = "reviews-dr.yaml";

impl Canary {
    /// Starts the mesh with weights `v1`/`v2`, and returns once the client
    /// proxy has one endpoint in each subset.
    pub async fn start(v1: u32, v2: u32, apps: AppKind) -> Self {
        let mesh = Mesh::start(&[
            (DR_FILE, &yaml::reviews_destination_rule(&["v1", "v2"])),
            (VS_FILE, &yaml::reviews_canary(v1, v2)),
        ])
        .await;
        let mut sidecars = Vec::new();
        let (mut backends, mut demo_apps) = (Vec::new(), Vec::new());
        for version in ["v1", "v2"] {
            let addr = match apps {
                AppKind::InProcess => {
                    let b = Backend::start(version).await;
                    let addr = b.addr;
                    backends.push(b);
                    addr
                }
                AppKind::DemoApp => {
                    let d = DemoApp::start("reviews", version).await;
                    let addr = d.addr;
                    demo_apps.push(d);
                    addr
                }
            };
            sidecars.push(
                mesh.proxy(&ProxySpec::sidecar("reviews", version, addr))
                    .await,
            );
        }
        let client = mesh.proxy(&ProxySpec::client("productpage")).await;
        for (version, sidecar) in ["v1", "v2"].iter().zip(&sidecars) {
            let dump = client
                .wait_endpoints(&Self::cluster(version), 1, SETTLE)
                .await;
            let inbound = sidecar.inbound.expect("sidecar has inbound").to_string();
            assert_eq!(
                crate::mesh::endpoints_in(&dump, &Self::cluster(version)),
                vec![inbound],
                "the {version} endpoint is its sidecar's inbound address"
            );
        }
        Self {
            mesh,
            client,
            sidecars,
            backends,
            _demo_apps: demo_apps,
        }
    }

    /// `<subset>|reviews.default.svc.cluster.local`.
    pub fn cluster(subset: &str) -> String {
        cluster_name("reviews", "default", subset)
    }
}
