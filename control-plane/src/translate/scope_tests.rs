//! The Sidecar resource in translation: which services each proxy is told
//! about, per view as per proxy.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::parse_str;

const MESH: &str = "
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: [\"./*\", \"istio-system/*\"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec:
  egress:
  - hosts: [\"./*\", \"egress/*\"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {app: productpage}
  egress:
  - hosts: [\"./reviews.bookinfo.svc.cluster.local\", \"*/*.org\"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: 90
    - destination: {host: payments.pay.svc.cluster.local}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: egress}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
";

fn workload(id: u64, service: &str, ns: &str, app: &str) -> (u64, pb::Node) {
    (
        id,
        pb::Node {
            id: format!("{service}-{id}"),
            service: service.into(),
            namespace: ns.into(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            service_account: service.into(),
            inbound_address: format!("10.0.0.{id}:15006"),
            ..Default::default()
        },
    )
}

fn mesh() -> (Vec<Resource>, Nodes) {
    let outcome = parse_str(Path::new("mesh.yaml"), MESH);
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    let nodes = [
        workload(1, "reviews", "bookinfo", "reviews"),
        workload(2, "ratings", "bookinfo", "ratings"),
        workload(3, "productpage", "bookinfo", "productpage"),
        workload(4, "details", "shop", "details"),
        workload(5, "payments", "pay", "payments"),
        // Another reviews, other labels: another view, the same scope.
        (6, {
            let (_, mut node) = workload(6, "reviews", "bookinfo", "reviews");
            node.labels.insert("version".into(), "v2".into());
            node
        }),
    ]
    .into_iter()
    .collect();
    (outcome.resources, nodes)
}

fn hosts(s: &pb::Snapshot) -> Vec<&str> {
    s.virtual_hosts.iter().map(|v| v.name.as_str()).collect()
}

fn clusters(s: &pb::Snapshot) -> Vec<&str> {
    s.clusters.iter().map(|c| c.name.as_str()).collect()
}

fn outbound_policy(s: &pb::Snapshot) -> pb::OutboundTrafficPolicy {
    s.mesh
        .as_ref()
        .map_or(pb::OutboundTrafficPolicy::AllowAny, |m| {
            m.outbound_traffic_policy()
        })
}

#[test]
fn a_workload_selector_wins_over_its_namespace_and_routes_keep_their_clusters() {
    let (resources, nodes) = mesh();
    let s = snapshot_for(&nodes[&3], &resources, &nodes, &MeshSettings::default());
    assert_eq!(
        hosts(&s),
        ["httpbin.org", "reviews.bookinfo.svc.cluster.local"]
    );
    // payments is outside the scope, but a route of reviews names it; its
    // own service's cluster stays (its ports tell the inbound side the
    // app's protocol).
    assert_eq!(
        clusters(&s),
        [
            "|httpbin.org",
            "|payments.pay.svc.cluster.local",
            "|productpage.bookinfo.svc.cluster.local",
            "|reviews.bookinfo.svc.cluster.local"
        ]
    );
    assert_eq!(outbound_policy(&s), pb::OutboundTrafficPolicy::RegistryOnly);
}

#[test]
fn the_namespace_default_then_the_root_default_apply() {
    let (resources, nodes) = mesh();
    let ratings = snapshot_for(&nodes[&2], &resources, &nodes, &MeshSettings::default());
    assert_eq!(
        hosts(&ratings),
        [
            "httpbin.org",
            "productpage.bookinfo.svc.cluster.local",
            "ratings.bookinfo.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local"
        ]
    );
    assert_eq!(
        outbound_policy(&ratings),
        pb::OutboundTrafficPolicy::AllowAny
    );
    // shop has no Sidecar: the root namespace's `./*` means shop's own.
    let details = snapshot_for(&nodes[&4], &resources, &nodes, &MeshSettings::default());
    assert_eq!(hosts(&details), ["details.shop.svc.cluster.local"]);
    assert_eq!(clusters(&details), ["|details.shop.svc.cluster.local"]);
    // A Sidecar that leaves out the workload's own service keeps its
    // cluster anyway, not its virtual host.
    let payments = snapshot_for(&nodes[&5], &resources, &nodes, &MeshSettings::default());
    assert_eq!(hosts(&payments), ["payments.pay.svc.cluster.local"]);
    let narrowed: Vec<Resource> = resources
        .iter()
        .cloned()
        .map(|mut r| {
            if let Spec::Sidecar(sc) = &mut r.spec
                && r.meta.namespace == "istio-system"
            {
                sc.egress = Some(Vec::new());
            }
            r
        })
        .collect();
    let payments = snapshot_for(&nodes[&5], &narrowed, &nodes, &MeshSettings::default());
    assert!(hosts(&payments).is_empty(), "{:?}", hosts(&payments));
    assert_eq!(clusters(&payments), ["|payments.pay.svc.cluster.local"]);
}

#[test]
fn without_a_sidecar_every_service_is_sent_as_before() {
    let (resources, nodes) = mesh();
    let without: Vec<Resource> = resources
        .into_iter()
        .filter(|r| !matches!(r.spec, Spec::Sidecar(_)))
        .collect();
    let s = snapshot_for(&nodes[&3], &without, &nodes, &MeshSettings::default());
    assert_eq!(s.virtual_hosts.len(), 6, "{:?}", hosts(&s));
    assert_eq!(s.clusters.len(), 6, "{:?}", clusters(&s));
}

#[test]
fn views_under_sidecars_are_those_of_each_proxy_and_share_their_parts() {
    let (resources, nodes) = mesh();
    let resources = Arc::new(resources);
    let nodes = Arc::new(nodes);
    let settings = MeshSettings::default();
    let keys: Vec<ViewKey> = nodes.values().map(ViewKey::of).collect();
    let views = build_views(&keys, &resources, &nodes, &settings);
    for (node, view) in nodes.values().zip(&views) {
        let direct = snapshot_for(node, &resources, &nodes, &settings);
        let expected = pb::Snapshot {
            version: view.version.clone(),
            ..direct
        };
        assert!(
            view.decode().expect("decodes") == expected,
            "{}: the view's snapshot differs",
            node.id
        );
    }
    // Two reviews with other labels (two views, one scope) share their
    // virtual hosts and clusters; ratings (its own service) and
    // productpage (its own Sidecar) do not.
    assert_eq!(views[0].virtual_hosts, 4);
    assert!(views[0].shares_outbound_with(&views[5]));
    assert!(!views[0].shares_outbound_with(&views[1]));
    assert!(!views[0].shares_outbound_with(&views[2]));
    assert_eq!(views[2].virtual_hosts, 2);
}
