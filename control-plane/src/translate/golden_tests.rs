//! Translation's output is pinned: a generated mesh that uses every
//! feature translation reads (registered proxies, ServiceEntries with
//! endpoints, selectors and DNS hosts, WorkloadEntries across namespaces,
//! DestinationRules with subset policies, VirtualServices with several
//! hosts and every route field, Peer and AuthorizationPolicies at every
//! scope, duplicates where the first definition wins) is translated for
//! several proxies, and each snapshot's version (a hash of its encoding)
//! must equal the one recorded.
//!
//! The versions were recorded with the first, quadratic translation (look
//! ups by linear `find`); the indexed translation must give byte-identical
//! snapshots. A deliberate change to what translation produces changes
//! them: check the new output with the other tests, then record the new
//! versions printed by the failure.

use std::fmt::Write;
use std::path::Path;

use super::*;
use crate::config::parse_str;

const NAMESPACES: [&str; 3] = ["prod", "test", "pay"];

/// The mesh, as the YAML of a few files (translation sees the resources in
/// this order).
fn mesh_yaml() -> String {
    let mut y = String::new();
    // Mesh-wide: STRICT, a DENY for one namespace, an ALLOW by selector.
    y.push_str(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: default, namespace: istio-system}\nspec:\n  mtls: {mode: STRICT}\n\
         ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {name: deny-evil, namespace: istio-system}\nspec:\n  action: DENY\n  \
         rules: [{from: [{source: {namespaces: [evil]}}]}]\n\
         ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {name: mesh-svc-1, namespace: istio-system}\nspec:\n  \
         selector: {matchLabels: {app: svc-1}}\n  \
         rules: [{to: [{operation: {methods: [GET], paths: ['/api/*']}}]}]\n",
    );
    for (n, ns) in NAMESPACES.iter().enumerate() {
        // Namespace-wide mode, and workload policies (two select svc-2:
        // the first by name wins).
        let mode = ["PERMISSIVE", "UNSET", "DISABLE"][n];
        let _ = write!(
            y,
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: default, namespace: {ns}}}\nspec:\n  mtls: {{mode: {mode}}}\n\
             ---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: zz-svc-2, namespace: {ns}}}\nspec:\n  \
             selector: {{matchLabels: {{app: svc-2}}}}\n  mtls: {{mode: DISABLE}}\n\
             ---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: aa-svc-2, namespace: {ns}}}\nspec:\n  \
             selector: {{matchLabels: {{app: svc-2}}}}\n  mtls: {{mode: STRICT}}\n  \
             portLevelMtls:\n    9080: {{mode: DISABLE}}\n    9443: {{mode: UNSET}}\n\
             ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: allow-ns, namespace: {ns}}}\nspec:\n  \
             rules: [{{from: [{{source: {{namespaces: [{ns}]}}}}]}}]\n\
             ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: b-svc-0, namespace: {ns}}}\nspec:\n  \
             selector: {{matchLabels: {{app: svc-0}}}}\n  action: DENY\n  \
             rules: [{{to: [{{operation: {{notPaths: [/healthz], ports: ['8080']}}}}]}}]\n\
             ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: a-svc-0, namespace: {ns}}}\nspec:\n  \
             selector: {{matchLabels: {{app: svc-0}}}}\n  \
             rules: [{{from: [{{source: {{principals: ['cluster.local/ns/{ns}/sa/*']}}}}]}}]\n"
        );
        for i in 0..6 {
            let svc = format!("svc-{i}");
            let next = format!("svc-{}", (i + 1) % 6);
            // Every other service has a rule; every third a VirtualService.
            if i % 2 == 0 {
                let tls = ["ISTIO_MUTUAL", "DISABLE", "ISTIO_MUTUAL"][n];
                let _ = write!(
                    y,
                    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
                     metadata: {{name: {svc}, namespace: {ns}}}\nspec:\n  host: {svc}\n  \
                     trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    \
                     connectionPool:\n      tcp: {{maxConnections: {c}, connectTimeout: 250ms}}\n      \
                     http: {{http2MaxRequests: 20, idleTimeout: 90s}}\n    \
                     outlierDetection: {{consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s}}\n  \
                     subsets:\n  - name: v1\n    labels: {{version: v1}}\n  \
                     - name: v2\n    labels: {{version: v2}}\n    trafficPolicy:\n      \
                     loadBalancer: {{simple: RANDOM}}\n      tls: {{mode: {tls}}}\n      \
                     connectionPool:\n        tcp: {{maxConnections: 5}}\n      \
                     outlierDetection: {{consecutive5xxErrors: 1}}\n  \
                     - name: nobody\n    labels: {{version: v9}}\n",
                    c = 10 + i,
                );
            }
            if i % 3 == 0 {
                let _ = write!(
                    y,
                    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
                     metadata: {{name: {svc}, namespace: {ns}}}\nspec:\n  \
                     hosts: [{svc}, {svc}.example.com]\n  http:\n  \
                     - name: jason\n    match:\n    - headers: {{end-user: {{exact: jason}}}}\n      \
                     uri: {{prefix: /api}}\n    - queryParams: {{debug: {{regex: '^[01]$'}}}}\n      \
                     method: {{exact: POST}}\n      authority: {{prefix: {svc}}}\n      \
                     ignoreUriCase: true\n    route:\n    - destination: {{host: {svc}, subset: v2}}\n    \
                     timeout: 2s\n    retries:\n      attempts: 3\n      perTryTimeout: 500ms\n      \
                     retryOn: 5xx,connect-failure,503\n    fault:\n      delay:\n        \
                     fixedDelay: 100ms\n        percentage: {{value: 50}}\n      abort:\n        \
                     grpcStatus: UNAVAILABLE\n        percentage: {{value: 10}}\n  \
                     - route:\n    - destination: {{host: {svc}, subset: v1}}\n      weight: 80\n    \
                     - destination: {{host: {next}}}\n      weight: 15\n    \
                     - destination: {{host: {svc}, subset: undefined}}\n      weight: 5\n    \
                     retries: {{attempts: 1, retryOn: '502,503'}}\n    fault:\n      \
                     abort: {{httpStatus: 503, percentage: {{value: 1}}}}\n"
                );
            }
        }
        // External services: static endpoints with and without a sidecar,
        // an IPv6 one, a named port; a selector over WorkloadEntries; a DNS
        // host; two hosts on one entry.
        let _ = write!(
            y,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: payments, namespace: {ns}}}\nspec:\n  \
             hosts: [payments.{ns}.internal, pay.{ns}.internal]\n  location: MESH_INTERNAL\n  \
             resolution: STATIC\n  ports:\n  - {{number: 8080, name: http, protocol: HTTP}}\n  \
             endpoints:\n  - address: 10.{n}.0.1\n    labels: {{version: v1, security.istio.io/tlsMode: istio}}\n    \
             serviceAccount: payments\n  - address: 10.{n}.0.2\n    ports: {{http: 9090}}\n    \
             labels: {{version: v2}}\n  - address: 'fd00::{n}'\n    labels: {{security.istio.io/tlsMode: istio}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: billing, namespace: {ns}}}\nspec:\n  hosts: [billing]\n  \
             location: MESH_INTERNAL\n  resolution: STATIC\n  \
             ports:\n  - {{number: 8080, name: http, targetPort: 8081}}\n  \
             workloadSelector:\n    labels: {{app: billing}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: vm-1, namespace: {ns}}}\nspec:\n  address: 10.{n}.1.1\n  \
             labels: {{app: billing, version: v1, security.istio.io/tlsMode: istio}}\n  \
             serviceAccount: billing\n\
             ---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: vm-2, namespace: {ns}}}\nspec:\n  address: 10.{n}.1.2\n  \
             labels: {{app: billing, version: v2}}\n  ports: {{http: 7070}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: search, namespace: {ns}}}\nspec:\n  \
             hosts: [search.{ns}.example.org]\n  resolution: DNS\n  \
             ports:\n  - {{number: 443, name: https}}\n"
        );
    }
    // A second rule and a second VirtualService for hosts that already have
    // one: the first definition wins. A VirtualService for a host no
    // service backs.
    y.push_str(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {name: svc-0-again, namespace: prod}\nspec:\n  host: svc-0\n  \
         subsets:\n  - name: v1\n    labels: {version: v2}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {name: svc-0-again, namespace: prod}\nspec:\n  hosts: [svc-0]\n  \
         http:\n  - route:\n    - destination: {host: svc-1}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {name: legacy, namespace: test}\nspec:\n  hosts: [legacy.test.svc.cluster.local]\n  \
         http:\n  - route:\n    - destination: {host: svc-4}\n",
    );
    y
}

/// Registered proxies: three per service and namespace (v1, v2, v3), one
/// without mTLS, one with its app port declared; and client-only ones.
fn mesh_nodes() -> Nodes {
    let mut nodes = Nodes::new();
    let mut id = 0u64;
    for (n, ns) in NAMESPACES.iter().enumerate() {
        for i in 0..6 {
            for (v, version) in ["v1", "v2", "v3"].iter().enumerate() {
                id += 1;
                nodes.insert(
                    id,
                    pb::Node {
                        id: format!("svc-{i}-{version}.{ns}"),
                        service: format!("svc-{i}"),
                        namespace: (*ns).to_owned(),
                        labels: [
                            ("app".to_owned(), format!("svc-{i}")),
                            ("version".to_owned(), (*version).to_owned()),
                        ]
                        .into(),
                        service_account: if v == 2 {
                            String::new()
                        } else {
                            format!("svc-{i}")
                        },
                        inbound_address: format!("10.{n}.{}.{}:15006", 10 + i, v + 1),
                        mtls: v != 1 || i % 2 == 0,
                        app_port: if v == 0 { 9080 } else { 0 },
                        app_health: None,
                        accepts_incremental: false,
                        accepts_resource_increments: false,
                        protocol: remora_proto::PROTOCOL,
                    },
                );
            }
        }
    }
    nodes.insert(
        1000,
        pb::Node {
            id: "client.prod".into(),
            service: "client".into(),
            namespace: "prod".into(),
            ..Default::default()
        },
    );
    nodes
}

/// The proxies whose snapshots are pinned.
fn viewers() -> Vec<pb::Node> {
    let nodes = mesh_nodes();
    let mut out: Vec<pb::Node> = [1u64, 7, 8, 25, 40, 1000]
        .iter()
        .map(|id| nodes[id].clone())
        .collect();
    // No namespace: `default`.
    out.push(pb::Node {
        id: "anon".into(),
        service: "anon".into(),
        ..Default::default()
    });
    out
}

fn versions(settings: &MeshSettings) -> Vec<String> {
    let outcome = parse_str(Path::new("mesh.yaml"), &mesh_yaml());
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    let nodes = mesh_nodes();
    viewers()
        .iter()
        .map(|node| version_of(&snapshot_for(node, &outcome.resources, &nodes, settings)))
        .collect()
}

#[test]
fn translation_of_a_full_mesh_is_unchanged() {
    let got = versions(&MeshSettings::default());
    assert_eq!(got, GOLDEN_DEFAULT, "snapshots changed: {got:?}");
}

#[test]
fn translation_with_other_settings_is_unchanged() {
    let settings = MeshSettings {
        trust_domain: remora_certs::TrustDomain::new("example.org").expect("td"),
        root_namespace: "pay".into(),
        trace_sampling: Some(TraceSampling::new(12.5).expect("percent")),
        ..MeshSettings::default()
    };
    let got = versions(&settings);
    assert_eq!(got, GOLDEN_OTHER, "snapshots changed: {got:?}");
}

/// The pinned mesh reaches every branch the versions are meant to pin.
#[test]
fn the_pinned_mesh_exercises_what_translation_reads() {
    let outcome = parse_str(Path::new("mesh.yaml"), &mesh_yaml());
    let nodes = mesh_nodes();
    let viewers = viewers();
    let settings = MeshSettings::default();
    let s = snapshot_for(&viewers[0], &outcome.resources, &nodes, &settings);
    let endpoints: Vec<&pb::Endpoint> = s.clusters.iter().flat_map(|c| &c.endpoints).collect();
    let addresses: Vec<&str> = endpoints.iter().map(|e| e.address.as_str()).collect();
    assert!(endpoints.iter().any(|e| e.mtls) && endpoints.iter().any(|e| !e.mtls));
    assert!(addresses.contains(&"[fd00::0]:8080"), "IPv6");
    assert!(
        addresses.contains(&"10.0.1.2:7070"),
        "a selected WorkloadEntry's port"
    );
    assert!(
        addresses.contains(&"search.prod.example.org:443"),
        "a DNS host"
    );
    let cluster = |name: &str| {
        s.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert!(
        cluster("nobody|svc-0.prod.svc.cluster.local")
            .endpoints
            .is_empty()
    );
    assert_eq!(
        cluster("v1|svc-0.prod.svc.cluster.local").endpoints.len(),
        1
    );
    assert!(
        cluster("v2|svc-0.prod.svc.cluster.local")
            .outlier_detection
            .is_some()
    );
    let host = |name: &str| s.virtual_hosts.iter().find(|v| v.name == name);
    assert_eq!(
        host("svc-0.example.com").expect("second host").routes.len(),
        2
    );
    let first_wins = host("svc-0.prod.svc.cluster.local").expect("svc-0");
    assert_eq!(
        first_wins.routes[0].name, "jason",
        "the first VirtualService wins"
    );
    assert!(host("legacy.test.svc.cluster.local").is_some());
    let inbound = s.inbound.expect("inbound");
    assert!(!inbound.allow.is_empty() && !inbound.deny.is_empty());
    let svc_2 = snapshot_for(&viewers[1], &outcome.resources, &nodes, &settings);
    assert!(!svc_2.inbound.expect("inbound").port_mtls.is_empty());
}

// Changed by issue 18: virtual hosts carry the service's declared ports, and
// clusters their protocols. Changed by issue 19: `retryOn` travels as
// RetryCondition values and gRPC codes instead of names, and a fault's
// grpcStatus as its code; then durations as `google.protobuf.Duration`
// instead of `_ms` integers. Changed by issue 20's per-resource increments:
// clusters in name order (they were by service, then subset).
const GOLDEN_DEFAULT: [&str; 7] = [
    "0da4fe7de44d9723",
    "cef47c4394d45dad",
    "cef47c4394d45dad",
    "a7f4e5d528bcbda0",
    "7055fbdbae9a6400",
    "6aaf101ff6cf0947",
    "4e0d31d8573c9b17",
];
const GOLDEN_OTHER: [&str; 7] = [
    "e3b8fca3d8250b94",
    "c36d9f6bea9c970f",
    "c36d9f6bea9c970f",
    "a6be717ddaff0088",
    "ef38668a5e5be7f4",
    "e0f84fd8dbe63265",
    "d8856c83a53ec464",
];

/// Built once per view, the snapshots are byte for byte those translated
/// for each proxy, with the same (pinned) versions.
#[test]
fn snapshots_built_per_view_are_those_of_each_proxy() {
    let outcome = parse_str(Path::new("mesh.yaml"), &mesh_yaml());
    let resources = std::sync::Arc::new(outcome.resources);
    let nodes = std::sync::Arc::new(mesh_nodes());
    let other = MeshSettings {
        trust_domain: remora_certs::TrustDomain::new("example.org").expect("td"),
        root_namespace: "pay".into(),
        trace_sampling: Some(TraceSampling::new(12.5).expect("percent")),
        ..MeshSettings::default()
    };
    for (settings, golden) in [
        (MeshSettings::default(), GOLDEN_DEFAULT),
        (other, GOLDEN_OTHER),
    ] {
        let keys: Vec<ViewKey> = viewers().iter().map(ViewKey::of).collect();
        let views = build_views(&keys, &resources, &nodes, &settings);
        let versions: Vec<&str> = views.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(versions, golden);
        for (node, view) in viewers().iter().zip(&views) {
            let direct = snapshot_for(node, &resources, &nodes, &settings);
            assert_eq!(view.encoded_len, direct.encoded_len(), "{}", node.id);
            let decoded = view.decode().expect("decodes");
            let expected = pb::Snapshot {
                version: view.version.clone(),
                ..direct
            };
            assert!(
                decoded == expected,
                "{}: the view's snapshot differs",
                node.id
            );
        }
    }
}
