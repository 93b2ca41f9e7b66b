//! Reading Istio-style YAML: the seed files load, bad files are reported
//! precisely (file:line, resource, field path), and no input panics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use remora_control_plane::config::model::{
    AbortStatus, AuthorizationAction, AuthorizationPolicy, ConnectionPool, Fault, FaultAbort,
    FaultDelay, H2UpgradePolicy, LoadBalancer, OutlierDetection, PeerAuthentication, PeerMode,
    Resource, Retries, Spec, StringMatch, UpstreamProtocolPolicy,
};
use remora_control_plane::config::{
    Diagnostic, FileOutcome, Severity, check_references, parse_file, parse_str, yaml_files,
};

/// Istio's mesh root namespace, `--root-namespace`'s default.
const ROOT: &str = "istio-system";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Parses a fixture under a short, stable name (`bad/x.yaml`) so that
/// rendered messages can be compared exactly.
fn load(relative: &str) -> FileOutcome {
    let text = std::fs::read_to_string(fixtures().join(relative)).expect("fixture");
    parse_str(Path::new(relative), &text)
}

fn rendered(outcome: &FileOutcome, severity: Severity) -> Vec<String> {
    outcome
        .diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .map(Diagnostic::to_string)
        .collect()
}

fn errors(outcome: &FileOutcome) -> Vec<String> {
    rendered(outcome, Severity::Error)
}

fn warnings(outcome: &FileOutcome) -> Vec<String> {
    rendered(outcome, Severity::Warning)
}

/// Asserts that a bad fixture yields exactly one error, rendered as `expected`.
fn assert_single_error(relative: &str, expected: &str) {
    let outcome = load(relative);
    assert!(outcome.has_errors());
    assert_eq!(errors(&outcome), [expected], "{relative}");
}

// ------------------------------------------------------------------ seed files

#[test]
fn seed_files_load_without_errors() {
    let files = yaml_files(&[fixtures().join("seed")]).expect("seed dir");
    assert_eq!(files.len(), 5);
    let mut all = Vec::new();
    for file in &files {
        let outcome = parse_file(file);
        assert!(!outcome.has_errors(), "{file:?}: {:#?}", errors(&outcome));
        all.extend(outcome.resources);
    }
    // VirtualService + DestinationRule (canary), VirtualService + DestinationRule
    // (resilience), DestinationRule, VirtualService, PeerAuthentication.
    assert_eq!(all.len(), 7);
    assert_eq!(check_references(&all, ROOT), []);
}

#[test]
fn seed_peer_authentication_loads_as_namespace_wide_strict() {
    let outcome = load("seed/peer-authentication.yaml");
    assert_eq!(outcome.diagnostics, []);
    let [resource] = outcome.resources.as_slice() else {
        panic!("one resource expected");
    };
    assert_eq!(
        resource.meta.display_name(),
        "PeerAuthentication default/default"
    );
    assert_eq!(
        resource.spec,
        Spec::PeerAuthentication(PeerAuthentication {
            selector: None,
            mode: PeerMode::Strict,
            port_level_mtls: Default::default(),
        })
    );
}

#[test]
fn seed_virtual_service_keeps_header_match_and_weights() {
    let outcome = load("seed/reviews-virtual-service.yaml");
    assert_eq!(outcome.diagnostics, []);
    let [resource] = outcome.resources.as_slice() else {
        panic!("one resource expected");
    };
    assert_eq!(
        resource.meta.display_name(),
        "VirtualService default/reviews"
    );
    assert_eq!(resource.meta.line, 1);
    let Spec::VirtualService(vs) = &resource.spec else {
        panic!("not a VirtualService");
    };
    assert_eq!(vs.hosts, ["reviews"]);
    assert_eq!(vs.http.len(), 2);

    let jason = &vs.http[0];
    assert_eq!(jason.matches.len(), 1);
    assert_eq!(
        jason.matches[0].headers,
        [(
            "end-user".to_owned(),
            Some(StringMatch::Exact("jason".to_owned()))
        )]
    );
    assert_eq!(jason.route.len(), 1);
    assert_eq!(jason.route[0].subset.as_deref(), Some("v2"));
    assert_eq!(jason.route[0].weight, 100, "a lone destination gets 100");

    let split = &vs.http[1];
    assert!(split.matches.is_empty(), "no match is the catch-all");
    let weights: Vec<_> = split
        .route
        .iter()
        .map(|d| (d.subset.as_deref(), d.weight))
        .collect();
    assert_eq!(weights, [(Some("v1"), 90), (Some("v2"), 10)]);
}

#[test]
fn seed_destination_rule_maps_deprecated_outlier_field_with_a_warning() {
    let outcome = load("seed/reviews-destination-rule.yaml");
    assert!(!outcome.has_errors());
    assert_eq!(
        warnings(&outcome),
        [
            "seed/reviews-destination-rule.yaml:17: warning: DestinationRule default/reviews: \
             spec.trafficPolicy.outlierDetection.consecutiveErrors: `consecutiveErrors` is \
             deprecated; use `consecutiveGatewayErrors` (Remora reads it as \
             consecutiveGatewayErrors: 502, 503 and 504 only)",
        ]
    );
    let Spec::DestinationRule(dr) = &outcome.resources[0].spec else {
        panic!("not a DestinationRule");
    };
    assert_eq!(dr.host, "reviews");
    let policy = dr.traffic_policy.as_ref().expect("trafficPolicy");
    assert_eq!(policy.load_balancer, Some(LoadBalancer::LeastRequest));
    let pool = policy.connection_pool.as_ref().expect("connectionPool");
    assert_eq!(pool.max_connections, Some(100));
    assert_eq!(pool.http1_max_pending_requests, Some(50));
    assert_eq!(pool.max_requests_per_connection, Some(2));
    let outlier = policy.outlier_detection.as_ref().expect("outlierDetection");
    assert_eq!(outlier.consecutive_gateway_errors, Some(5));
    assert_eq!(outlier.consecutive_5xx_errors, None);
    assert_eq!(outlier.interval, Some(Duration::from_secs(30)));
    assert_eq!(outlier.base_ejection_time, Some(Duration::from_secs(30)));
    let subsets: Vec<_> = dr
        .subsets
        .iter()
        .map(|s| (s.name.as_str(), s.labels["version"].as_str()))
        .collect();
    assert_eq!(subsets, [("v1", "v1"), ("v2", "v2")]);
}

#[test]
fn seed_canary_multi_document_file_yields_both_resources_with_file_lines() {
    let outcome = load("seed/canary-my-app.yaml");
    assert_eq!(outcome.diagnostics, []);
    let names: Vec<_> = outcome
        .resources
        .iter()
        .map(|r| (r.meta.display_name(), r.meta.line))
        .collect();
    assert_eq!(
        names,
        [
            ("VirtualService default/my-app".to_owned(), 2),
            ("DestinationRule default/my-app".to_owned(), 21),
        ]
    );
    let Spec::VirtualService(vs) = &outcome.resources[0].spec else {
        panic!("not a VirtualService");
    };
    let weights: Vec<_> = vs.http[0].route.iter().map(|d| d.weight).collect();
    assert_eq!(weights, [90, 10]);
}

#[test]
fn seed_resilience_file_reads_every_field() {
    let outcome = load("seed/ratings-resilience.yaml");
    assert_eq!(outcome.diagnostics, []);
    let [vs, dr] = outcome.resources.as_slice() else {
        panic!("two resources expected");
    };
    let Spec::VirtualService(vs) = &vs.spec else {
        panic!("not a VirtualService");
    };
    let route = &vs.http[0];
    assert_eq!(route.timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        route.retries,
        Some(Retries {
            attempts: 3,
            per_try_timeout: Some(Duration::from_millis(500)),
            retry_on: vec!["5xx".into(), "connect-failure".into()],
            retriable_status_codes: vec![503],
        })
    );
    assert_eq!(
        route.fault,
        Some(Fault {
            delay: Some(FaultDelay {
                fixed_delay: Duration::from_millis(100),
                percentage: Some(50.0),
            }),
            abort: Some(FaultAbort {
                status: AbortStatus::Http(503),
                percentage: Some(10.0),
            }),
        })
    );

    let Spec::DestinationRule(dr) = &dr.spec else {
        panic!("not a DestinationRule");
    };
    let policy = dr.traffic_policy.as_ref().expect("trafficPolicy");
    assert_eq!(
        policy.connection_pool,
        Some(ConnectionPool {
            max_connections: Some(100),
            connect_timeout: Some(Duration::from_millis(250)),
            tcp_idle_timeout: Some(Duration::from_secs(3600)),
            http1_max_pending_requests: Some(50),
            http2_max_requests: Some(200),
            max_requests_per_connection: Some(10),
            http_idle_timeout: Some(Duration::from_secs(90)),
            max_retries: Some(3),
            upstream_protocol: Some(UpstreamProtocolPolicy {
                h2_upgrade: H2UpgradePolicy::DoNotUpgrade,
                use_client_protocol: false,
            }),
        })
    );
    assert_eq!(
        policy.outlier_detection,
        Some(OutlierDetection {
            consecutive_5xx_errors: Some(7),
            consecutive_gateway_errors: Some(4),
            interval: Some(Duration::from_secs(5)),
            base_ejection_time: Some(Duration::from_secs(60)),
            max_ejection_percent: Some(50),
            min_health_percent: Some(20),
        })
    );
    let v1 = dr.subsets[0]
        .traffic_policy
        .as_ref()
        .expect("subset policy");
    assert_eq!(
        v1.connection_pool,
        Some(ConnectionPool {
            max_connections: Some(5),
            ..ConnectionPool::default()
        })
    );
    assert_eq!(
        v1.outlier_detection,
        Some(OutlierDetection {
            consecutive_5xx_errors: Some(2),
            ..OutlierDetection::default()
        })
    );
}

// ------------------------------------------------------------------ bad files

#[test]
fn unknown_field_suggests_the_closest_known_field() {
    assert_single_error(
        "bad/unknown-field.yaml",
        "bad/unknown-field.yaml:7: error: DestinationRule default/reviews: spec.subset: \
         unknown field `subset`; did you mean `subsets`?",
    );
}

#[test]
fn known_istio_field_not_supported_yet_is_an_error() {
    assert_single_error(
        "bad/unsupported-field.yaml",
        "bad/unsupported-field.yaml:13: error: VirtualService prod/reviews: spec.http[0].mirror: \
         `mirror` is not supported by Remora yet",
    );
}

#[test]
fn regex_that_does_not_compile_is_reported_with_the_cause() {
    assert_single_error(
        "bad/bad-regex.yaml",
        "bad/bad-regex.yaml:10: error: VirtualService default/reviews: \
         spec.http[0].match[0].uri.regex: invalid regex `/api/[a-`: unclosed character class",
    );
}

#[test]
fn all_zero_weights_are_an_error() {
    assert_single_error(
        "bad/zero-weights.yaml",
        "bad/zero-weights.yaml:8: error: VirtualService default/reviews: spec.http[0].route: \
         all weights are 0; at least one destination needs a weight above 0",
    );
}

#[test]
fn weight_written_as_a_string_is_an_error() {
    assert_single_error(
        "bad/weight-string.yaml",
        "bad/weight-string.yaml:16: error: VirtualService default/reviews: \
         spec.http[0].route[1].weight: must be an integer, got string \"10\" (remove the quotes)",
    );
}

#[test]
fn destination_without_host_is_an_error() {
    assert_single_error(
        "bad/missing-host.yaml",
        "bad/missing-host.yaml:9: error: VirtualService default/reviews: \
         spec.http[0].route[0].destination.host: missing required field `host`",
    );
}

#[test]
fn duplicate_subset_names_point_at_the_first() {
    assert_single_error(
        "bad/duplicate-subset.yaml",
        "bad/duplicate-subset.yaml:11: error: DestinationRule default/reviews: \
         spec.subsets[1].name: duplicate subset `v1` (first defined at line 8)",
    );
}

#[test]
fn bad_duration_quotes_the_text() {
    assert_single_error(
        "bad/bad-duration.yaml",
        "bad/bad-duration.yaml:10: error: DestinationRule default/reviews: \
         spec.trafficPolicy.outlierDetection.interval: invalid duration `30sec`: unknown unit \
         `sec`; write a number and a unit (h, m, s, ms, us), such as \"30s\", \"1.5s\" or \"100ms\"",
    );
}

#[test]
fn unsupported_api_version_lists_the_supported_ones() {
    assert_single_error(
        "bad/bad-api-version.yaml",
        "bad/bad-api-version.yaml:1: error: VirtualService default/reviews: apiVersion: \
         unsupported apiVersion `networking.istio.io/v2` for kind VirtualService; expected one \
         of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3",
    );
}

#[test]
fn deprecated_and_new_outlier_field_together_are_an_error() {
    assert_single_error(
        "bad/outlier-both-names.yaml",
        "bad/outlier-both-names.yaml:9: error: DestinationRule default/reviews: \
         spec.trafficPolicy.outlierDetection.consecutiveErrors: `consecutiveErrors` and \
         `consecutiveGatewayErrors` are both given; `consecutiveErrors` is the deprecated name \
         of `consecutiveGatewayErrors`, keep only `consecutiveGatewayErrors`",
    );
}

#[test]
fn h2_upgrade_and_the_client_s_protocol_together_are_an_error() {
    assert_single_error(
        "bad/h2-upgrade-and-client-protocol.yaml",
        "bad/h2-upgrade-and-client-protocol.yaml:11: error: DestinationRule default/httpbin: \
         spec.trafficPolicy.connectionPool.http.useClientProtocol: `useClientProtocol: true` \
         keeps the client's HTTP version and `h2UpgradePolicy: UPGRADE` changes it to HTTP/2: \
         give one of them (Istio refuses both together)",
    );
}

#[test]
fn authorization_policy_condition_is_rejected_rather_than_ignored() {
    assert_single_error(
        "bad/authorization-policy.yaml",
        "bad/authorization-policy.yaml:9: error: AuthorizationPolicy default/admins-only: \
         spec.rules[0].when: `when` is not supported by Remora yet",
    );
}

#[test]
fn empty_authorization_policy_loads_as_allow_nothing() {
    let text = "\
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: prod}
spec: {}
";
    let outcome = parse_str(Path::new("deny-all.yaml"), text);
    assert_eq!(outcome.diagnostics, []);
    let [resource] = outcome.resources.as_slice() else {
        panic!("one resource expected");
    };
    let Spec::AuthorizationPolicy(policy) = &resource.spec else {
        panic!("not an AuthorizationPolicy");
    };
    assert_eq!(policy.action, AuthorizationAction::Allow);
    assert!(policy.rules.is_empty());
    assert_eq!(*policy, AuthorizationPolicy::default());
}

#[test]
fn security_kinds_need_the_security_api_group() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {}
";
    let outcome = parse_str(Path::new("pa.yaml"), text);
    assert_eq!(
        errors(&outcome),
        [
            "pa.yaml:1: error: PeerAuthentication default/default: apiVersion: unsupported \
             apiVersion `networking.istio.io/v1` for kind PeerAuthentication; expected one of \
             security.istio.io/v1, security.istio.io/v1beta1"
        ]
    );
}

#[test]
fn unknown_retry_condition_suggests_the_closest() {
    assert_single_error(
        "bad/retry-unknown-condition.yaml",
        "bad/retry-unknown-condition.yaml:13: error: VirtualService default/ratings: \
         spec.http[0].retries.retryOn: unknown retry condition `conect-failure`; did you mean \
         `connect-failure`?",
    );
}

#[test]
fn retry_condition_remora_does_not_implement_is_an_error() {
    assert_single_error(
        "bad/retry-unsupported-condition.yaml",
        "bad/retry-unsupported-condition.yaml:15: error: VirtualService default/ratings: \
         spec.http[0].retries.retryOn: retry condition `envoy-ratelimited` is not supported by \
         Remora; use an HTTP status code or one of `5xx`, `gateway-error`, `reset`, \
         `reset-before-request`, `connect-failure`, `retriable-4xx`, `refused-stream`, \
         `retriable-status-codes`, `cancelled`, `deadline-exceeded`, `internal`, \
         `resource-exhausted`, `unavailable`",
    );
}

#[test]
fn grpc_abort_status_must_be_a_known_name() {
    assert_single_error(
        "bad/fault-grpc-status.yaml",
        "bad/fault-grpc-status.yaml:13: error: VirtualService default/ratings: \
         spec.http[0].fault.abort.grpcStatus: unknown gRPC status `Unavailable`; gRPC status \
         names are upper case: `UNAVAILABLE`",
    );
}

#[test]
fn fault_percentage_above_100_is_an_error() {
    assert_single_error(
        "bad/fault-percentage.yaml",
        "bad/fault-percentage.yaml:15: error: VirtualService default/ratings: \
         spec.http[0].fault.delay.percentage.value: must be between 0 and 100, got 150",
    );
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let outcome = load("bad/syntax-error.yaml");
    let [error] = outcome.diagnostics.as_slice() else {
        panic!("one diagnostic expected: {:#?}", outcome.diagnostics);
    };
    assert_eq!(error.severity, Severity::Error);
    assert_eq!(error.line, Some(7));
    assert!(error.message.starts_with("invalid YAML: "), "{error}");
}

#[test]
fn file_with_one_bad_document_still_returns_the_good_resources() {
    let outcome = load("bad/multi-doc-one-bad.yaml");
    assert!(outcome.has_errors());
    assert_eq!(
        errors(&outcome),
        [
            "bad/multi-doc-one-bad.yaml:18: error: DestinationRule default/details: \
          spec.trafficPolicy.loadBalancer.simple: `PASSTHROUGH` is not supported by Remora; \
          use LEAST_REQUEST, ROUND_ROBIN or RANDOM"
        ]
    );
    let names: Vec<_> = outcome
        .resources
        .iter()
        .map(|r| r.meta.display_name())
        .collect();
    assert_eq!(names, ["DestinationRule default/ratings"]);
}

#[test]
fn every_bad_fixture_has_an_error_with_a_line() {
    for file in yaml_files(&[fixtures().join("bad")]).expect("bad dir") {
        let outcome = parse_file(&file);
        assert!(outcome.has_errors(), "{file:?} should have errors");
        for d in &outcome.diagnostics {
            assert!(d.line.is_some_and(|l| l >= 1), "{d}");
            assert_eq!(d.file, file);
        }
    }
}

// ------------------------------------------------------------------ cross-file checks

fn resources(file: &str, text: &str) -> Vec<Resource> {
    let outcome = parse_str(Path::new(file), text);
    assert!(!outcome.has_errors(), "{:#?}", errors(&outcome));
    outcome.resources
}

const VS_V3: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v3}
";

const DR: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews.default.svc.cluster.local
  subsets:
    - name: v1
      labels: {version: v1}
";

#[test]
fn subset_without_destination_rule_warns_about_503() {
    let mut all = resources("a.yaml", VS_V3);
    all.extend(resources("b.yaml", DR));
    let rendered: Vec<_> = check_references(&all, ROOT)
        .iter()
        .map(Diagnostic::to_string)
        .collect();
    assert_eq!(
        rendered,
        ["a.yaml:1: warning: VirtualService default/reviews: \
          spec.http[0].route[0].destination.subset: requests routed here will get 503 until a \
          DestinationRule defines subset v3 for host reviews.default.svc.cluster.local"]
    );
}

#[test]
fn same_resource_in_two_files_is_an_error_on_the_second() {
    let mut all = resources("a.yaml", DR);
    all.extend(resources("b.yaml", DR));
    let rendered: Vec<_> = check_references(&all, ROOT)
        .iter()
        .map(Diagnostic::to_string)
        .collect();
    assert_eq!(
        rendered,
        [
            "b.yaml:1: error: DestinationRule default/reviews: DestinationRule default/reviews is \
          defined twice; first at a.yaml:1"
        ]
    );
}

#[test]
fn two_destination_rules_for_one_host_conflict() {
    let mut all = resources("a.yaml", DR);
    all.extend(resources(
        "b.yaml",
        &DR.replace("name: reviews", "name: reviews-2")
            .replace("reviews.default.svc.cluster.local", "reviews"),
    ));
    let rendered: Vec<_> = check_references(&all, ROOT)
        .iter()
        .map(Diagnostic::to_string)
        .collect();
    assert_eq!(
        rendered,
        [
            "b.yaml:1: error: DestinationRule default/reviews-2: spec.host: host \
          `reviews.default.svc.cluster.local` already has DestinationRule default/reviews \
          (a.yaml:1); Remora allows one DestinationRule per host"
        ]
    );
}

#[test]
fn two_virtual_services_for_one_host_conflict() {
    let mut all = resources("a.yaml", VS_V3);
    all.extend(resources(
        "b.yaml",
        &VS_V3.replace("name: reviews", "name: reviews-canary"),
    ));
    all.extend(resources("c.yaml", &DR.replace("name: v1", "name: v3")));
    let rendered: Vec<_> = check_references(&all, ROOT)
        .iter()
        .map(Diagnostic::to_string)
        .collect();
    assert_eq!(
        rendered,
        [
            "b.yaml:1: error: VirtualService default/reviews-canary: spec.hosts[0]: host \
          `reviews.default.svc.cluster.local` is already claimed by VirtualService \
          default/reviews (a.yaml:1); Remora allows one VirtualService per host"
        ]
    );
}

#[test]
fn same_short_host_in_other_namespaces_does_not_conflict() {
    let mut all = resources("a.yaml", DR);
    all.extend(resources(
        "b.yaml",
        &DR.replace("name: reviews", "name: reviews\n  namespace: prod")
            .replace("reviews.default.svc.cluster.local", "reviews"),
    ));
    assert_eq!(check_references(&all, ROOT), []);
}

// ------------------------------------------------------------------ files

#[test]
fn missing_path_is_an_error() {
    let missing = fixtures().join("no-such-dir");
    let err = yaml_files(std::slice::from_ref(&missing)).expect_err("missing path");
    assert_eq!(err.severity, Severity::Error);
    assert_eq!(err.file, missing);
}

#[test]
fn unreadable_or_non_utf8_file_is_one_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"apiVersion: v1\nkind: caf\xe9\n").expect("write");
    let outcome = parse_file(&path);
    assert_eq!(outcome.diagnostics.len(), 1);
    assert_eq!(outcome.diagnostics[0].line, Some(2));
    assert!(
        outcome.diagnostics[0].message.contains("not valid UTF-8"),
        "{}",
        outcome.diagnostics[0]
    );

    let outcome = parse_file(&dir.path().join("absent.yaml"));
    assert!(outcome.has_errors());
    assert!(
        outcome.diagnostics[0]
            .message
            .starts_with("cannot read file")
    );
}

// ------------------------------------------------------------------ never panic

#[test]
fn empty_and_comment_only_documents_are_not_resources() {
    for text in [
        "",
        "\n",
        "# just a comment\n",
        "---\n",
        "---\n---\n# c\n---\n",
        "...\n",
    ] {
        let outcome = parse_str(Path::new("empty.yaml"), text);
        assert_eq!(outcome, FileOutcome::default(), "{text:?}");
    }
}

#[test]
fn garbage_input_is_reported_not_panicked_on() {
    let deep_flow = "[".repeat(100_000);
    let deep_dashes = format!("{}a", "- ".repeat(100_000));
    let deep_block: String = (0..2_000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    let deep_spec = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: x}}\nspec: {}1{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let inputs = [
        "\u{0}\u{1}\u{2}",
        "\u{feff}kind: VirtualService",
        "\tkind:\tVirtualService\n\tspec: 1",
        "kind: VirtualService\n\tmetadata: x",
        ":",
        "- - -",
        "{",
        "}}}",
        "\"unterminated",
        "&a [*a]",
        "a: &x 1\nb: *y\n",
        "!!binary 123",
        "? [complex, key]\n: value",
        "1: 2",
        "apiVersion: 5\nkind: [VirtualService]\nmetadata: 7\nspec: ~",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: UPPER}\nspec: {hosts: [], http: [{route: []}]}",
        "kind: VirtualService\nkind: DestinationRule",
        "\u{fffd}\u{fffd}: \u{10ffff}",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x}\nspec: {host: x, trafficPolicy: {outlierDetection: {interval: 99999999999999999999999h}}}",
        &deep_flow,
        &deep_block,
        &deep_dashes,
        &deep_spec,
    ];
    for text in inputs {
        let outcome = parse_str(Path::new("garbage.yaml"), text);
        assert!(outcome.has_errors(), "{text:.80?} should be an error");
        assert!(outcome.resources.is_empty(), "{text:.80?}");
    }
}

#[test]
fn mutated_seed_files_never_panic() {
    let replacements = [
        ":", "-", " ", "\t", "[", "{", "\"", "*", "&", "!", "#", "\n", "0", "é",
    ];
    for file in yaml_files(&[fixtures().join("seed")]).expect("seed dir") {
        let text = std::fs::read_to_string(&file).expect("read");
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        for (n, &at) in boundaries.iter().enumerate() {
            let _ = parse_str(&file, &text[..at]);
            let next = boundaries.get(n + 1).copied().unwrap_or(text.len());
            let replacement = replacements[n % replacements.len()];
            let mutated = format!("{}{replacement}{}", &text[..at], &text[next..]);
            let outcome = parse_str(&file, &mutated);
            for d in &outcome.diagnostics {
                assert!(d.line.is_some_and(|l| l >= 1), "{d}");
            }
        }
    }
}

// ------------------------------------------------------------------ PeerAuthentication conflicts

fn peer_authentication(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: \
         {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
}

#[test]
fn two_namespace_wide_peer_authentications_conflict_naming_both() {
    let mut all = resources("a.yaml", &peer_authentication("prod", "a", "{}"));
    all.extend(resources(
        "b.yaml",
        &peer_authentication("prod", "b", "{mtls: {mode: STRICT}}"),
    ));
    let rendered: Vec<_> = check_references(&all, ROOT)
        .iter()
        .map(Diagnostic::to_string)
        .collect();
    assert_eq!(
        rendered,
        [
            "b.yaml:1: error: PeerAuthentication prod/b: spec.selector: PeerAuthentication prod/b \
             and PeerAuthentication prod/a (a.yaml:1) are both namespace-wide (no selector) in \
             namespace `prod`; Istio allows one, so merge them or give one a selector"
        ]
    );
}

#[test]
fn two_mesh_wide_peer_authentications_conflict_in_the_root_namespace() {
    let mut all = resources("a.yaml", &peer_authentication("mesh-root", "a", "{}"));
    all.extend(resources(
        "b.yaml",
        &peer_authentication("mesh-root", "b", "{}"),
    ));
    let rendered: Vec<_> = check_references(&all, "mesh-root")
        .iter()
        .map(Diagnostic::to_string)
        .collect();
    assert_eq!(
        rendered,
        [
            "b.yaml:1: error: PeerAuthentication mesh-root/b: spec.selector: PeerAuthentication \
             mesh-root/b and PeerAuthentication mesh-root/a (a.yaml:1) are both mesh-wide (no \
             selector in the root namespace `mesh-root`); Istio allows one, so merge them or \
             give one a selector"
        ]
    );
}

#[test]
fn selector_peer_authentications_and_other_namespaces_do_not_conflict() {
    let selector = "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}";
    let all: Vec<Resource> = [
        ("a.yaml", peer_authentication("prod", "a", "{}")),
        ("b.yaml", peer_authentication("prod", "b", selector)),
        ("c.yaml", peer_authentication("prod", "c", selector)),
        ("d.yaml", peer_authentication("test", "d", "{}")),
        ("e.yaml", peer_authentication(ROOT, "e", "{}")),
    ]
    .iter()
    .flat_map(|(file, text)| resources(file, text))
    .collect();
    assert_eq!(check_references(&all, ROOT), []);
}
