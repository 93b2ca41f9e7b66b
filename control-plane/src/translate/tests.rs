use std::path::Path;

use super::*;
use crate::config::parse_str;

fn resources(yaml: &str) -> Vec<Resource> {
    let outcome = parse_str(Path::new("test.yaml"), yaml);
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    outcome.resources
}

/// [`snapshot_for`] with Istio's default settings.
fn snap(node: &pb::Node, resources: &[Resource], nodes: &Nodes) -> pb::Snapshot {
    snapshot_for(node, resources, nodes, &MeshSettings::default())
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
            ..Default::default()
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
    let s = snap(&client(), &resources(CANARY), &nodes);

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
    let s = snap(&client(), &[], &nodes);
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
    let s = snap(&client(), &resources(CANARY), &Nodes::new());
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
    let s = snap(&client(), &resources(yaml), &nodes);
    assert!(
        cluster(&s, "v3|reviews.default.svc.cluster.local")
            .endpoints
            .is_empty()
    );
}

#[test]
fn client_only_workloads_are_not_endpoints() {
    let nodes: Nodes = [(1, client())].into();
    let s = snap(&client(), &[], &nodes);
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
    let s = snap(&client(), &resources(yaml), &Nodes::new());
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
    let a = snap(&client(), &resources(CANARY), &nodes);
    let b = snap(&client(), &resources(CANARY), &nodes);
    assert_eq!(version_of(&a), version_of(&b));
    let more: Nodes = [
        node(1, "reviews", "default", "v1", "127.0.0.1:1001"),
        node(2, "reviews", "default", "v2", "127.0.0.1:1002"),
    ]
    .into();
    let c = snap(&client(), &resources(CANARY), &more);
    assert_ne!(version_of(&a), version_of(&c));
}

#[test]
fn a_client_only_workload_connecting_changes_no_snapshot() {
    // So its registration pushes nothing to the other proxies.
    let mut nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    let before = version_of(&snap(&client(), &resources(CANARY), &nodes));
    nodes.insert(9, client());
    let after = version_of(&snap(&client(), &resources(CANARY), &nodes));
    assert_eq!(before, after);
}

#[test]
fn an_endpoint_whose_app_is_not_ready_leaves_the_snapshot_but_its_service_stays() {
    let (_, mut down) = node(2, "reviews", "default", "v1", "127.0.0.1:1002");
    down.app_health = Some(pb::AppHealth {
        ready: false,
        reason: "connect to 127.0.0.1:9080: Connection refused".into(),
    });
    let mut nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    nodes.insert(2, down.clone());
    let s = snap(&client(), &[], &nodes);
    let addrs: Vec<_> = cluster(&s, "|reviews.default.svc.cluster.local")
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:1001"], "only the ready endpoint");

    // Every endpoint down: the service is still routed (503, not 404).
    nodes.remove(&1);
    let s = snap(&client(), &[], &nodes);
    assert!(
        cluster(&s, "|reviews.default.svc.cluster.local")
            .endpoints
            .is_empty()
    );

    // Ready again (or a proxy that never reported): back in.
    down.app_health = Some(pb::AppHealth {
        ready: true,
        reason: String::new(),
    });
    nodes.insert(2, down);
    let s = snap(&client(), &[], &nodes);
    assert_eq!(
        cluster(&s, "|reviews.default.svc.cluster.local")
            .endpoints
            .len(),
        1
    );
}

// ------------------------------------------------------------------ resilience

fn routes_of<'a>(s: &'a pb::Snapshot, host: &str) -> &'a [pb::Route] {
    &s.virtual_hosts
        .iter()
        .find(|vh| vh.name == host)
        .unwrap_or_else(|| panic!("no virtual host {host} in {:#?}", s.virtual_hosts))
        .routes
}

#[test]
fn route_timeout_retries_and_fault_travel_exactly() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - name: resilient
    match: [{uri: {prefix: /a}}]
    route:
    - destination: {host: ratings}
    timeout: 2s
    retries:
      attempts: 3
      perTryTimeout: 500ms
      retryOn: 5xx,connect-failure,503
    fault:
      delay:
        fixedDelay: 100ms
        percentage: {value: 50}
      abort:
        httpStatus: 503
        percentage: {value: 10}
  - name: grpc
    match: [{uri: {prefix: /b}}]
    route:
    - destination: {host: ratings}
    timeout: 0s
    retries: {attempts: 0, perTryTimeout: 0s}
    fault:
      abort: {grpcStatus: RESOURCE_EXHAUSTED}
  - name: codes-only
    match: [{uri: {prefix: /c}}]
    route:
    - destination: {host: ratings}
    retries: {attempts: 1, retryOn: '502,503'}
  - name: plain
    route:
    - destination: {host: ratings}
";
    let s = snap(&client(), &resources(yaml), &Nodes::new());
    let routes = routes_of(&s, "ratings.default.svc.cluster.local");
    let to_ratings = vec![pb::WeightedCluster {
        cluster: "|ratings.default.svc.cluster.local".into(),
        weight: 100,
    }];
    let prefix = |p: &str| pb::RouteMatch {
        uri: Some(pb::StringMatch {
            kind: Some(pb::string_match::Kind::Prefix(p.into())),
        }),
        ..Default::default()
    };
    assert_eq!(
        routes[0],
        pb::Route {
            name: "resilient".into(),
            matches: vec![prefix("/a")],
            destinations: to_ratings.clone(),
            timeout: ms(2000),
            retry: Some(pb::RetryPolicy {
                attempts: 3,
                per_try_timeout: ms(500),
                retry_on: vec![
                    pb::RetryCondition::ServerError as i32,
                    pb::RetryCondition::ConnectFailure as i32,
                    pb::RetryCondition::RetriableStatusCodes as i32,
                ],
                retriable_status_codes: vec![503],
                retriable_grpc_codes: vec![],
            }),
            fault: Some(pb::Fault {
                delay: Some(pb::FaultDelay {
                    fixed_delay: ms(100),
                    percentage: Some(50.0),
                }),
                abort: Some(pb::FaultAbort {
                    status: Some(pb::fault_abort::Status::HttpStatus(503)),
                    percentage: Some(10.0),
                }),
            }),
        }
    );
    // `0s` timeouts are "none"; attempts 0 disables retries; an abort
    // without percentage carries none (never applied, as in Istio).
    assert_eq!(
        routes[1],
        pb::Route {
            name: "grpc".into(),
            matches: vec![prefix("/b")],
            destinations: to_ratings.clone(),
            timeout: None,
            retry: Some(pb::RetryPolicy {
                attempts: 0,
                per_try_timeout: None,
                retry_on: vec![],
                retriable_status_codes: vec![],
                retriable_grpc_codes: vec![],
            }),
            fault: Some(pb::Fault {
                delay: None,
                abort: Some(pb::FaultAbort {
                    status: Some(pb::fault_abort::Status::GrpcStatus(8)),
                    percentage: None,
                }),
            }),
        }
    );
    // Codes alone still make an explicit list, as Istio translates them.
    assert_eq!(
        routes[2].retry,
        Some(pb::RetryPolicy {
            attempts: 1,
            per_try_timeout: None,
            retry_on: vec![pb::RetryCondition::RetriableStatusCodes as i32],
            retriable_status_codes: vec![502, 503],
            retriable_grpc_codes: vec![],
        })
    );
    // No resilience fields: nothing set, the proxy applies its defaults.
    assert_eq!(
        routes[3],
        pb::Route {
            name: "plain".into(),
            matches: vec![],
            destinations: to_ratings,
            timeout: None,
            retry: None,
            fault: None,
        }
    );
}

#[test]
fn grpc_retry_conditions_travel_as_status_codes() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    retries: {attempts: 2, retryOn: 'unavailable,5xx,cancelled,resource-exhausted'}
";
    let s = snap(&client(), &resources(yaml), &Nodes::new());
    let retry = routes_of(&s, "ratings.default.svc.cluster.local")[0]
        .retry
        .clone()
        .expect("retry");
    assert_eq!(retry.retry_on, [pb::RetryCondition::ServerError as i32]);
    assert_eq!(retry.retriable_grpc_codes, [14, 1, 8]);
    assert!(retry.retriable_status_codes.is_empty());
}

#[test]
fn retriable_status_codes_condition_is_not_repeated() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    retries: {attempts: 2, retryOn: 'retriable-status-codes,409,gateway-error'}
";
    let s = snap(&client(), &resources(yaml), &Nodes::new());
    let retry = routes_of(&s, "ratings.default.svc.cluster.local")[0]
        .retry
        .clone()
        .expect("retry");
    assert_eq!(
        retry.retry_on,
        [
            pb::RetryCondition::RetriableStatusCodes as i32,
            pb::RetryCondition::GatewayError as i32
        ]
    );
    assert_eq!(retry.retriable_status_codes, [409]);
}

const POLICIES: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 250ms
        idleTimeout: 1h
      http:
        http1MaxPendingRequests: 50
        http2MaxRequests: 200
        maxRequestsPerConnection: 10
        maxRetries: 3
        idleTimeout: 90s
        h2UpgradePolicy: UPGRADE
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 4
      interval: 5s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
      minHealthPercent: 20
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool:
        tcp: {maxConnections: 5}
        http: {idleTimeout: 30s, maxRetries: 1, useClientProtocol: true}
      outlierDetection:
        consecutive5xxErrors: 2
        baseEjectionTime: 10s
";

/// A duration as the wire carries it.
fn ms(ms: u64) -> Option<remora_proto::Duration> {
    Some(std::time::Duration::from_millis(ms).into())
}

fn full_pool() -> pb::ConnectionPool {
    pb::ConnectionPool {
        max_connections: 100,
        connect_timeout: ms(250),
        tcp_idle_timeout: ms(3_600_000),
        http1_max_pending_requests: 50,
        http2_max_requests: 200,
        max_requests_per_connection: 10,
        http_idle_timeout: ms(90_000),
        max_retries: 3,
        h2_upgrade_policy: pb::H2UpgradePolicy::Upgrade.into(),
        use_client_protocol: false,
    }
}

fn full_outlier() -> pb::OutlierDetection {
    pb::OutlierDetection {
        consecutive_5xx_errors: Some(7),
        consecutive_gateway_errors: 4,
        interval: ms(5_000),
        base_ejection_time: ms(60_000),
        max_ejection_percent: 50,
        min_health_percent: 20,
    }
}

#[test]
fn every_pool_and_outlier_field_reaches_the_cluster() {
    let nodes: Nodes = [node(1, "ratings", "default", "v1", "127.0.0.1:3001")].into();
    let s = snap(&client(), &resources(POLICIES), &nodes);
    let fqdn = "ratings.default.svc.cluster.local";
    for name in [format!("|{fqdn}"), format!("v1|{fqdn}")] {
        let c = cluster(&s, &name);
        assert_eq!(c.connection_pool, Some(full_pool()), "{name}");
        assert_eq!(c.outlier_detection, Some(full_outlier()), "{name}");
    }
}

#[test]
fn subset_policy_overrides_the_rule_field_by_field() {
    let s = snap(&client(), &resources(POLICIES), &Nodes::new());
    let v2 = cluster(&s, "v2|ratings.default.svc.cluster.local");
    assert_eq!(
        v2.connection_pool,
        Some(pb::ConnectionPool {
            max_connections: 5,
            http_idle_timeout: ms(30_000),
            max_retries: 1,
            // The subset's `useClientProtocol` replaces the rule's UPGRADE
            // whole: the two are one choice.
            h2_upgrade_policy: pb::H2UpgradePolicy::Default.into(),
            use_client_protocol: true,
            ..full_pool()
        })
    );
    assert_eq!(
        v2.outlier_detection,
        Some(pb::OutlierDetection {
            consecutive_5xx_errors: Some(2),
            base_ejection_time: ms(10_000),
            ..full_outlier()
        })
    );
}

#[test]
fn subset_policy_alone_applies_to_its_subset_only() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool:
        http: {http2MaxRequests: 8}
      outlierDetection: {consecutiveGatewayErrors: 2}
";
    let nodes: Nodes = [node(1, "ratings", "default", "v1", "127.0.0.1:3001")].into();
    let s = snap(&client(), &resources(yaml), &nodes);
    let fqdn = "ratings.default.svc.cluster.local";
    let v1 = cluster(&s, &format!("v1|{fqdn}"));
    assert_eq!(
        v1.connection_pool,
        Some(pb::ConnectionPool {
            http2_max_requests: 8,
            ..Default::default()
        })
    );
    assert_eq!(
        v1.outlier_detection,
        Some(pb::OutlierDetection {
            consecutive_gateway_errors: 2,
            ..Default::default()
        })
    );
    let all = cluster(&s, &format!("|{fqdn}"));
    assert_eq!(all.connection_pool, None);
    assert_eq!(all.outlier_detection, None, "absent means disabled");
}

// ------------------------------------------------------------------ auto mTLS

/// `node` with an identity, serving mTLS, its app on `app_port`.
fn with_mtls((id, mut node): (u64, pb::Node), app_port: u32) -> (u64, pb::Node) {
    node.mtls = true;
    node.app_port = app_port;
    (id, node)
}

/// `(address, mtls, spiffe_id)` of each endpoint of cluster `name`.
fn tls_of(s: &pb::Snapshot, name: &str) -> Vec<(String, bool, String)> {
    cluster(s, name)
        .endpoints
        .iter()
        .map(|e| (e.address.clone(), e.mtls, e.spiffe_id.clone()))
        .collect()
}

fn ep(address: &str, mtls: bool, spiffe_id: &str) -> (String, bool, String) {
    (address.to_owned(), mtls, spiffe_id.to_owned())
}

const REVIEWS: &str = "|reviews.default.svc.cluster.local";
const REVIEWS_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

#[test]
fn proxies_with_an_identity_get_mtls_and_others_plaintext() {
    let nodes: Nodes = [
        with_mtls(node(1, "reviews", "default", "v1", "127.0.0.1:1001"), 9080),
        node(2, "reviews", "default", "v2", "127.0.0.1:1002"),
    ]
    .into();
    let s = snap(&client(), &[], &nodes);
    assert_eq!(
        tls_of(&s, REVIEWS),
        [
            ep("127.0.0.1:1001", true, REVIEWS_ID),
            ep("127.0.0.1:1002", false, "")
        ]
    );
}

#[test]
fn spiffe_ids_use_the_trust_domain_and_istios_default_service_account() {
    let (id, mut n) = with_mtls(node(1, "reviews", "prod", "v1", "127.0.0.1:1001"), 0);
    n.service_account = String::new();
    let settings = MeshSettings {
        trust_domain: remora_certs::TrustDomain::new("example.org").expect("td"),
        ..MeshSettings::default()
    };
    let s = snapshot_for(&client(), &[], &[(id, n)].into(), &settings);
    assert_eq!(
        tls_of(&s, "|reviews.prod.svc.cluster.local"),
        [ep(
            "127.0.0.1:1001",
            true,
            "spiffe://example.org/ns/prod/sa/default"
        )]
    );
    let inbound = s.inbound.expect("inbound policy");
    assert_eq!(inbound.trust_domain, "example.org");
    assert_eq!(inbound.mtls, i32::from(pb::MtlsMode::Permissive));
}

const V2_DISABLED: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-v2, namespace: default}
spec:
  selector: {matchLabels: {version: v2}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9080: {mode: DISABLE}
";

#[test]
fn a_destination_that_disables_mtls_on_its_app_port_gets_plaintext() {
    let nodes: Nodes = [
        with_mtls(node(1, "reviews", "default", "v1", "127.0.0.1:1001"), 9080),
        with_mtls(node(2, "reviews", "default", "v2", "127.0.0.1:1002"), 9080),
        with_mtls(node(3, "reviews", "default", "v2", "127.0.0.1:1003"), 7000),
    ]
    .into();
    let s = snap(&client(), &resources(V2_DISABLED), &nodes);
    assert_eq!(
        tls_of(&s, REVIEWS),
        [
            ep("127.0.0.1:1001", true, REVIEWS_ID),
            ep("127.0.0.1:1002", false, ""),
            // Another app port: the policy's STRICT applies.
            ep("127.0.0.1:1003", true, REVIEWS_ID),
        ]
    );

    // Namespace-wide DISABLE reaches every proxy of the namespace.
    let ns_disabled = "
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: DISABLE}
";
    let s = snap(&client(), &resources(ns_disabled), &nodes);
    assert!(tls_of(&s, REVIEWS).iter().all(|(_, mtls, _)| !mtls));
}

const REVIEWS_TLS_RULE: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: DISABLE}
  - name: v2
    labels: {version: v2}
";

#[test]
fn a_proxy_without_mtls_under_strict_is_left_out_so_it_never_receives_plaintext() {
    let strict = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
";
    let nodes: Nodes = [
        with_mtls(node(1, "reviews", "default", "v1", "127.0.0.1:1001"), 9080),
        node(2, "reviews", "default", "v1", "127.0.0.1:1002"),
    ]
    .into();
    let s = snap(&client(), &resources(strict), &nodes);
    assert_eq!(
        tls_of(&s, REVIEWS),
        [ep("127.0.0.1:1001", true, REVIEWS_ID)]
    );
    // PERMISSIVE: it is reached in plaintext, as before.
    let s = snap(&client(), &[], &nodes);
    assert_eq!(
        tls_of(&s, REVIEWS),
        [
            ep("127.0.0.1:1001", true, REVIEWS_ID),
            ep("127.0.0.1:1002", false, "")
        ]
    );
}

#[test]
fn a_domain_is_given_to_one_host_only() {
    // `reviews` registered in `default` answers to `reviews.default`; so does a ServiceEntry
    // host written as `reviews.default`. A snapshot with the domain twice is refused by every
    // proxy, so the first host in name order keeps it.
    let se = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: odd, namespace: default}
spec:
  hosts: [reviews.default]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
";
    let nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    let s = snap(&client(), &resources(se), &nodes);
    let mut seen = std::collections::BTreeSet::new();
    for vh in &s.virtual_hosts {
        for d in &vh.domains {
            assert!(seen.insert(d.clone()), "{d} twice: {:#?}", s.virtual_hosts);
        }
    }
    assert!(seen.contains("reviews.default"));
    remora_route::CompiledSnapshot::compile(&s, |_| Ok(())).expect("a proxy accepts it");
}

#[test]
fn destination_rule_tls_mode_decides_per_subset() {
    let nodes: Nodes = [
        with_mtls(node(1, "reviews", "default", "v1", "127.0.0.1:1001"), 9080),
        with_mtls(node(2, "reviews", "default", "v2", "127.0.0.1:1002"), 9080),
        // No identity, on the app port its policy DISABLEs (STRICT would leave it out).
        {
            let (id, mut n) = node(3, "reviews", "default", "v2", "127.0.0.1:1003");
            n.app_port = 9080;
            (id, n)
        },
    ]
    .into();
    let yaml = format!("{REVIEWS_TLS_RULE}---{V2_DISABLED}");
    let s = snap(&client(), &resources(&yaml), &nodes);
    let fqdn = "reviews.default.svc.cluster.local";
    // The subset's DISABLE overrides the rule's ISTIO_MUTUAL.
    assert_eq!(
        tls_of(&s, &format!("v1|{fqdn}")),
        [ep("127.0.0.1:1001", false, "")]
    );
    // ISTIO_MUTUAL overrides the destination's own DISABLE, but a proxy
    // without an identity cannot serve mTLS.
    assert_eq!(
        tls_of(&s, &format!("v2|{fqdn}")),
        [
            ep("127.0.0.1:1002", true, REVIEWS_ID),
            ep("127.0.0.1:1003", false, "")
        ]
    );
    assert_eq!(
        tls_of(&s, REVIEWS),
        [
            ep("127.0.0.1:1001", true, REVIEWS_ID),
            ep("127.0.0.1:1002", true, REVIEWS_ID),
            ep("127.0.0.1:1003", false, "")
        ]
    );

    // A rule-wide DISABLE turns mTLS off for every endpoint.
    let off = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: DISABLE}
";
    let s = snap(&client(), &resources(off), &nodes);
    assert!(tls_of(&s, REVIEWS).iter().all(|(_, mtls, _)| !mtls));
}

const VMS: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: pay}
spec:
  hosts: [payments.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http}
  endpoints:
  - address: 10.0.0.1
    labels: {security.istio.io/tlsMode: istio}
    serviceAccount: payments
  - address: 10.0.0.2
    labels: {security.istio.io/tlsMode: istio}
  - address: 10.0.0.3
  - address: 10.0.0.4
    labels: {security.istio.io/tlsMode: disabled}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: billing, namespace: pay}
spec:
  hosts: [billing.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http}
  workloadSelector:
    labels: {app: billing}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: pay}
spec:
  address: 10.0.1.1
  labels: {app: billing, security.istio.io/tlsMode: istio}
  serviceAccount: billing
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports:
  - {number: 80, name: http}
";

#[test]
fn workload_entries_labelled_for_istio_mtls_get_it_and_others_do_not() {
    let s = snap(&client(), &resources(VMS), &Nodes::new());
    assert_eq!(
        tls_of(&s, "|payments.internal"),
        [
            ep(
                "10.0.0.1:8080",
                true,
                "spiffe://cluster.local/ns/pay/sa/payments"
            ),
            ep(
                "10.0.0.2:8080",
                true,
                "spiffe://cluster.local/ns/pay/sa/default"
            ),
            ep("10.0.0.3:8080", false, ""),
            ep("10.0.0.4:8080", false, ""),
        ]
    );
    assert_eq!(
        tls_of(&s, "|billing.internal"),
        [ep(
            "10.0.1.1:8080",
            true,
            "spiffe://cluster.local/ns/pay/sa/billing"
        )]
    );
    assert_eq!(
        tls_of(&s, "|api.example.com"),
        [ep("api.example.com:80", false, "")]
    );

    // The DestinationRule's DISABLE wins over the label.
    let rule = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: pay}
spec:
  host: payments.internal
  trafficPolicy:
    tls: {mode: DISABLE}
";
    let s = snap(
        &client(),
        &resources(&format!("{VMS}{rule}")),
        &Nodes::new(),
    );
    assert!(
        tls_of(&s, "|payments.internal")
            .iter()
            .all(|(_, mtls, id)| !mtls && id.is_empty())
    );
}

#[test]
fn the_snapshot_carries_the_inbound_policy_of_its_own_workload() {
    let yaml = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-only, namespace: default}
spec:
  selector: {matchLabels: {version: v1}}
  rules:
  - from:
    - source: {principals: [cluster.local/ns/default/sa/productpage]}
";
    let (_, reviews_v1) = node(1, "reviews", "default", "v1", "127.0.0.1:1001");
    let s = snap(&reviews_v1, &resources(yaml), &Nodes::new());
    let inbound = s.inbound.expect("inbound policy");
    assert_eq!(inbound.mtls, i32::from(pb::MtlsMode::Strict));
    assert_eq!(inbound.trust_domain, "cluster.local");
    assert!(inbound.deny.is_empty());
    assert_eq!(inbound.allow.len(), 1);
    assert_eq!(inbound.allow[0].name, "default/productpage-only");
    assert_eq!(
        inbound.allow[0].rules[0].from[0].principals,
        ["cluster.local/ns/default/sa/productpage"]
    );

    // v2 is not selected; the mesh-wide STRICT still applies.
    let (_, reviews_v2) = node(2, "reviews", "default", "v2", "127.0.0.1:1002");
    let s = snap(&reviews_v2, &resources(yaml), &Nodes::new());
    let inbound = s.inbound.expect("inbound policy");
    assert_eq!(inbound.mtls, i32::from(pb::MtlsMode::Strict));
    assert!(inbound.allow.is_empty());
}

#[test]
fn trace_sampling_is_sent_in_every_snapshot_only_when_given() {
    let nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    let reviews = nodes[&1].clone();
    assert_eq!(
        snap(&client(), &[], &nodes).mesh,
        None,
        "not given: not sent"
    );

    let settings = MeshSettings {
        trace_sampling: Some(TraceSampling::parse("100").expect("valid")),
        ..MeshSettings::default()
    };
    for n in [client(), reviews] {
        let s = snapshot_for(&n, &[], &nodes, &settings);
        assert_eq!(
            s.mesh.and_then(|m| m.trace_sampling_percent),
            Some(100.0),
            "{}",
            n.id
        );
    }
    // 0 is a setting (trace nothing), not "unset".
    let off = MeshSettings {
        trace_sampling: Some(TraceSampling::new(0.0).expect("valid")),
        ..MeshSettings::default()
    };
    let s = snapshot_for(&client(), &[], &nodes, &off);
    assert_eq!(s.mesh.and_then(|m| m.trace_sampling_percent), Some(0.0));
    assert_ne!(
        version_of(&snapshot_for(&client(), &[], &nodes, &settings)),
        version_of(&snapshot_for(&client(), &[], &nodes, &off)),
        "a new ratio is a new version, so it is pushed"
    );
}

#[test]
fn path_normalization_reaches_every_proxy_only_when_it_is_not_the_default() {
    let nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    assert_eq!(snap(&client(), &[], &nodes).mesh, None, "BASE: not sent");
    let settings = MeshSettings {
        path_normalization: pb::PathNormalization::DecodeAndMergeSlashes,
        escaped_slashes: pb::EscapedSlashesAction::RejectRequest,
        ..MeshSettings::default()
    };
    for n in [client(), nodes[&1].clone()] {
        let mesh = snapshot_for(&n, &[], &nodes, &settings).mesh.expect("sent");
        assert_eq!(
            mesh.path_normalization(),
            pb::PathNormalization::DecodeAndMergeSlashes
        );
        assert_eq!(
            mesh.escaped_slashes(),
            pb::EscapedSlashesAction::RejectRequest
        );
        assert_eq!(mesh.trace_sampling_percent, None);
    }
}

#[test]
fn trace_sampling_is_a_percentage_from_0_to_100() {
    assert_eq!(
        TraceSampling::parse("0.5").map(TraceSampling::percent),
        Ok(0.5)
    );
    assert_eq!(
        TraceSampling::parse("100%").map(TraceSampling::percent),
        Ok(100.0)
    );
    for bad in ["-1", "100.1", "NaN", "inf", "", "lots"] {
        let err = TraceSampling::parse(bad).expect_err(bad);
        assert!(err.contains("from 0 to 100"), "{bad}: {err}");
    }
}

#[test]
fn ports_declared_tcp_reach_the_services_clusters() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  resolution: STATIC
  ports:
  - {number: 5432, name: pg, protocol: TCP}
  endpoints:
  - address: 10.0.0.9
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache}
spec:
  hosts: [cache.internal]
  resolution: STATIC
  ports:
  - {number: 6379, name: tcp-redis}
  endpoints:
  - address: 10.0.0.8
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web.internal]
  resolution: STATIC
  ports:
  - {number: 80, name: tcp-looking, protocol: HTTP}
  endpoints:
  - address: 10.0.0.7
";
    let s = snap(&client(), &resources(yaml), &Nodes::new());
    assert_eq!(cluster(&s, "|db.internal").tcp_ports, [5432]);
    assert_eq!(cluster(&s, "|cache.internal").tcp_ports, [6379]);
    // An explicit protocol wins over the name.
    assert!(cluster(&s, "|web.internal").tcp_ports.is_empty());
}

#[test]
fn declared_ports_reach_the_clusters_with_their_protocols_and_target_ports() {
    let entry = |name: &str, port: &str| {
        format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.internal]
  resolution: STATIC
  ports:
  - {port}
  endpoints:
  - address: 10.0.0.9
---
"
        )
    };
    let yaml = [
        entry("h1", "{number: 80, name: web, protocol: HTTP}"),
        entry(
            "h2",
            "{number: 81, name: web, protocol: HTTP2, targetPort: 8081}",
        ),
        entry("grpc", "{number: 50051, name: api, protocol: GRPC}"),
        entry("grpcweb", "{number: 8080, name: api, protocol: GRPC-WEB}"),
        entry("named", "{number: 82, name: http-admin}"),
        entry("h2c", "{number: 83, name: h2c-api}"),
        entry("sniffed", "{number: 84, name: web}"),
        entry("db", "{number: 5432, name: tcp-pg}"),
    ]
    .concat();
    let s = snap(&client(), &resources(&yaml), &Nodes::new());
    let port = |host: &str| {
        let ports = &cluster(&s, &format!("|{host}.internal")).ports;
        assert_eq!(ports.len(), 1, "{host}: {ports:?}");
        let p = &ports[0];
        (p.number, p.protocol(), p.target_port)
    };
    use pb::PortProtocol::{Http, Http2, Tcp, Undeclared};
    assert_eq!(port("h1"), (80, Http, 0));
    assert_eq!(port("h2"), (81, Http2, 8081));
    assert_eq!(port("grpc"), (50051, Http2, 0));
    assert_eq!(port("grpcweb"), (8080, Http2, 0));
    assert_eq!(port("named"), (82, Http, 0), "the name's prefix");
    assert_eq!(port("h2c"), (83, Http2, 0));
    assert_eq!(port("sniffed"), (84, Undeclared, 0));
    assert_eq!(port("db"), (5432, Tcp, 0));

    // A service only registered by sidecars declares nothing: sniffed.
    let nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:3001")].into();
    let s = snap(&client(), &[], &nodes);
    assert!(
        cluster(&s, "|reviews.default.svc.cluster.local")
            .ports
            .is_empty()
    );
    // A ServiceEntry for the same host declares the sidecars' app port:
    // their own sidecars find its protocol in the service's clusters.
    let declared = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: reviews}
";
    let s = snap(&nodes[&1], &resources(declared), &nodes);
    let c = cluster(&s, "|reviews.default.svc.cluster.local");
    assert_eq!(c.endpoints.len(), 1, "the sidecar's endpoint stays");
    assert_eq!(
        c.ports,
        [pb::ServicePort {
            number: 9080,
            protocol: Http.into(),
            target_port: 0,
        }]
    );
}

#[test]
fn registry_only_is_sent_to_every_proxy_and_allow_any_is_not_sent() {
    let nodes: Nodes = [node(1, "reviews", "default", "v1", "127.0.0.1:1001")].into();
    assert_eq!(snap(&client(), &[], &nodes).mesh, None);
    let settings = MeshSettings {
        outbound_traffic_policy: OutboundTrafficPolicy::RegistryOnly,
        ..MeshSettings::default()
    };
    for n in [client(), nodes[&1].clone()] {
        let mesh = snapshot_for(&n, &[], &nodes, &settings).mesh.expect("sent");
        assert_eq!(
            mesh.outbound_traffic_policy,
            pb::OutboundTrafficPolicy::RegistryOnly as i32
        );
        assert_eq!(mesh.trace_sampling_percent, None);
    }
}
