use std::path::Path;

use super::*;
use crate::config::parse_str;

fn resources(yaml: &str) -> Vec<Resource> {
    let outcome = parse_str(Path::new("test.yaml"), yaml);
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    outcome.resources
}

fn node(id: u64, service: &str, ns: &str, version: &str, addr: &str) -> (u64, pb::Node) {
    (
        id,
        pb::Node {
            id: format!("{service}-{id}"),
            service: service.into(),
            namespace: ns.into(),
            labels: [("version".to_owned(), version.to_owned())].into(),
            service_account: service.into(),
            inbound_address: addr.into(),
        },
    )
}

fn client() -> pb::Node {
    pb::Node {
        id: "productpage-1".into(),
        service: "productpage".into(),
        namespace: "default".into(),
        ..Default::default()
    }
}

const CANARY: &str = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
";

fn cluster<'a>(s: &'a pb::Snapshot, name: &str) -> &'a pb::Cluster {
    s.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {:#?}", s.clusters))
}

#[test]
fn canary_subsets_select_registered_endpoints_by_label() {
    let nodes: Nodes = [
        node(1, "reviews", "default", "v1", "127.0.0.1:1001"),
        node(2, "reviews", "default", "v2", "127.0.0.1:1002"),
        node(3, "reviews", "default", "v1", "127.0.0.1:1003"),
    ]
    .into();
    let s = snapshot_for(&client(), &resources(CANARY), &nodes);

    let addrs = |c: &pb::Cluster| {
        c.endpoints
            .iter()
            .map(|e| e.address.clone())
            .collect::<Vec<_>>()
    };
    let fqdn = "reviews.default.svc.cluster.local";
    assert_eq!(
        addrs(cluster(&s, &format!("v1|{fqdn}"))),
        ["127.0.0.1:1001", "127.0.0.1:1003"]
    );
    assert_eq!(
        addrs(cluster(&s, &format!("v2|{fqdn}"))),
        ["127.0.0.1:1002"]
    );
    assert_eq!(addrs(cluster(&s, &format!("|{fqdn}"))).len(), 3);

    // Subset policy overrides the rule's.
    assert_eq!(
        cluster(&s, &format!("v1|{fqdn}")).load_balancer,
        pb::LoadBalancer::RoundRobin as i32
    );
    assert_eq!(
        cluster(&s, &format!("v2|{fqdn}")).load_balancer,
        pb::LoadBalancer::Random as i32
    );

    let vh = &s.virtual_hosts[0];
    assert_eq!(
        vh.domains,
        [fqdn, "reviews.default.svc", "reviews.default", "reviews"]
    );
    assert_eq!(vh.routes.len(), 2);
    assert_eq!(vh.routes[0].matches[0].headers[0].name, "end-user");
    let weights: Vec<_> = vh.routes[1]
        .destinations
        .iter()
        .map(|d| (d.cluster.as_str(), d.weight))
        .collect();
    assert_eq!(
        weights,
        [(&*format!("v1|{fqdn}"), 90), (&*format!("v2|{fqdn}"), 10)]
    );
}

#[test]
fn short_name_only_resolves_in_the_same_namespace() {
    let nodes: Nodes = [node(1, "ratings", "prod", "v1", "127.0.0.1:2001")].into();
    let s = snapshot_for(&client(), &[], &nodes);
    let vh = &s.virtual_hosts[0];
    assert_eq!(vh.name, "ratings.prod.svc.cluster.local");
    assert!(!vh.domains.contains(&"ratings".to_owned()));
    assert!(vh.domains.contains(&"ratings.prod".to_owned()));
    // Without a VirtualService: one default route to every endpoint.
    assert_eq!(vh.routes.len(), 1);
    assert!(vh.routes[0].matches.is_empty());
    assert_eq!(
        vh.routes[0].destinations[0].cluster,
        "|ratings.prod.svc.cluster.local"
    );
}

#[test]
fn routes_exist_before_endpoints_so_requests_get_503_not_404() {
    let s = snapshot_for(&client(), &resources(CANARY), &Nodes::new());
    assert_eq!(s.virtual_hosts.len(), 1);
    let v1 = cluster(&s, "v1|reviews.default.svc.cluster.local");
    assert!(v1.endpoints.is_empty());
}

#[test]
fn undefined_subset_gets_an_empty_cluster_rather_than_a_dangling_reference() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
";
    let nodes: Nodes = [node(1, "reviews", "default", "v3", "127.0.0.1:1")].into();
    let s = snapshot_for(&client(), &resources(yaml), &nodes);
    assert!(
        cluster(&s, "v3|reviews.default.svc.cluster.local")
            .endpoints
            .is_empty()
    );
}

#[test]
fn client_only_workloads_are_not_endpoints() {
    let nodes: Nodes = [(1, client())].into();
    let s = snapshot_for(&client(), &[], &nodes);
    assert!(s.virtual_hosts.is_empty());
    assert!(s.clusters.is_empty());
}

#[test]
fn service_entry_endpoints_and_selected_workload_entries() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [payments.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  endpoints:
  - address: 10.0.0.1
    labels: {version: v1}
  - address: 10.0.0.2
    ports: {http: 9090}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: billing}
spec:
  hosts: [billing.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, targetPort: 8081}
  workloadSelector:
    labels: {app: payments}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec:
  address: 10.0.0.3
  labels: {app: payments, version: v2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: other}
spec:
  address: 10.0.0.4
  labels: {app: payments}
";
    let s = snapshot_for(&client(), &resources(yaml), &Nodes::new());
    let c = cluster(&s, "|payments.internal");
    let addrs: Vec<_> = c.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addrs, ["10.0.0.1:8080", "10.0.0.2:9090"]);
    // Only the WorkloadEntry in the ServiceEntry's namespace is selected.
    let c = cluster(&s, "|billing.internal");
    let addrs: Vec<_> = c.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addrs, ["10.0.0.3:8081"]);
    assert_eq!(s.virtual_hosts[1].domains, ["payments.internal"]);
}

#[test]
fn version_is_a_stable_function_of_content() {
    let nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    let a = snapshot_for(&client(), &resources(CANARY), &nodes);
    let b = snapshot_for(&client(), &resources(CANARY), &nodes);
    assert_eq!(version_of(&a), version_of(&b));
    let more: Nodes = [
        node(1, "reviews", "default", "v1", "127.0.0.1:1001"),
        node(2, "reviews", "default", "v2", "127.0.0.1:1002"),
    ]
    .into();
    let c = snapshot_for(&client(), &resources(CANARY), &more);
    assert_ne!(version_of(&a), version_of(&c));
}

#[test]
fn a_client_only_workload_connecting_changes_no_snapshot() {
    // So its registration pushes nothing to the other proxies.
    let mut nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    let before = version_of(&snapshot_for(&client(), &resources(CANARY), &nodes));
    nodes.insert(9, client());
    let after = version_of(&snapshot_for(&client(), &resources(CANARY), &nodes));
    assert_eq!(before, after);
}
