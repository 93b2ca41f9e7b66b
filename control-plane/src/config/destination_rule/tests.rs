//! Unit tests for DestinationRule parsing.

use std::time::Duration;

use super::super::Severity;
use super::super::model::{
    ConnectionPool, DestinationRule, H2UpgradePolicy, LoadBalancer, OutlierDetection, Spec,
    TlsMode, UpstreamProtocolPolicy,
};
use super::super::test_support::{messages, only_spec, parse_spec};

fn dr(spec: &str) -> DestinationRule {
    let outcome = parse_spec("DestinationRule", spec);
    match only_spec(&outcome) {
        Spec::DestinationRule(dr) => dr.clone(),
        other => panic!("not a DestinationRule: {other:?}"),
    }
}

fn errors(spec: &str) -> Vec<String> {
    messages(&parse_spec("DestinationRule", spec), Severity::Error)
}

fn warnings(spec: &str) -> Vec<String> {
    messages(&parse_spec("DestinationRule", spec), Severity::Warning)
}

#[test]
fn every_connection_pool_and_outlier_field_parses_without_warnings() {
    let spec = "
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 250ms, idleTimeout: 1h}
      http:
        http1MaxPendingRequests: 20
        http2MaxRequests: 30
        maxRequestsPerConnection: 4
        maxRetries: 5
        idleTimeout: 90s
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 3
      interval: 5s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
      minHealthPercent: 25
  subsets:
    - name: v1
      trafficPolicy:
        loadBalancer: {simple: ROUND_ROBIN}
        connectionPool:
          http: {http2MaxRequests: 7, idleTimeout: 1m}
        outlierDetection:
          consecutive5xxErrors: 3
    - name: v2
      labels: {}
";
    assert_eq!(warnings(spec), Vec::<String>::new());
    let dr = dr(spec);
    let top = dr.traffic_policy.expect("policy");
    assert_eq!(
        top.connection_pool,
        Some(ConnectionPool {
            max_connections: Some(10),
            connect_timeout: Some(Duration::from_millis(250)),
            tcp_idle_timeout: Some(Duration::from_secs(3600)),
            http1_max_pending_requests: Some(20),
            http2_max_requests: Some(30),
            max_requests_per_connection: Some(4),
            http_idle_timeout: Some(Duration::from_secs(90)),
            max_retries: Some(5),
            upstream_protocol: None,
        })
    );
    assert_eq!(
        top.outlier_detection,
        Some(OutlierDetection {
            consecutive_5xx_errors: Some(7),
            consecutive_gateway_errors: Some(3),
            interval: Some(Duration::from_secs(5)),
            base_ejection_time: Some(Duration::from_secs(60)),
            max_ejection_percent: Some(50),
            min_health_percent: Some(25),
        })
    );
    // A subset keeps only what it writes; translation merges field by field.
    let v1 = dr.subsets[0].traffic_policy.clone().expect("subset policy");
    assert_eq!(v1.load_balancer, Some(LoadBalancer::RoundRobin));
    assert_eq!(
        v1.connection_pool,
        Some(ConnectionPool {
            http2_max_requests: Some(7),
            http_idle_timeout: Some(Duration::from_secs(60)),
            ..ConnectionPool::default()
        })
    );
    assert_eq!(
        v1.outlier_detection,
        Some(OutlierDetection {
            consecutive_5xx_errors: Some(3),
            ..OutlierDetection::default()
        })
    );
    assert!(dr.subsets[1].labels.is_empty());
    assert_eq!(dr.subsets[1].traffic_policy, None);
}

#[test]
fn deprecated_consecutive_errors_reads_as_gateway_errors_with_a_warning() {
    let spec = "
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutiveErrors: 4}
";
    assert_eq!(
        warnings(spec),
        [
            "spec.trafficPolicy.outlierDetection.consecutiveErrors: `consecutiveErrors` is \
             deprecated; use `consecutiveGatewayErrors` (Remora reads it as \
             consecutiveGatewayErrors: 502, 503 and 504 only)"
        ]
    );
    let outlier = dr(spec)
        .traffic_policy
        .and_then(|p| p.outlier_detection)
        .expect("outlier");
    assert_eq!(outlier.consecutive_gateway_errors, Some(4));
    assert_eq!(outlier.consecutive_5xx_errors, None);
}

#[test]
fn zero_consecutive_5xx_errors_turns_5xx_ejection_off() {
    let spec = "
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 3}
";
    assert!(errors(spec).is_empty() && warnings(spec).is_empty());
    let outlier = dr(spec)
        .traffic_policy
        .and_then(|p| p.outlier_detection)
        .expect("outlier");
    assert_eq!(outlier.consecutive_5xx_errors, Some(0));
    assert_eq!(outlier.consecutive_gateway_errors, Some(3));
}

#[test]
fn bad_pool_and_outlier_values_are_errors() {
    let spec = "
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: -1, connectTimeout: 10us, tcpKeepalive: {time: 1s}}
      http: {http2MaxRequests: '7', maxConcurrentStreams: 10, maxRetrys: 1}
    outlierDetection:
      consecutive5xxErrors: -1
      maxEjectionPercent: 101
      splitExternalLocalOriginErrors: true
";
    assert_eq!(
        errors(spec),
        [
            "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive: `tcpKeepalive` is not \
             supported by Remora yet",
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: must be between 0 and \
             4294967295, got -1",
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout: duration `10us` is not a \
             whole number of milliseconds; Remora (like Istio) supports millisecond precision",
            "spec.trafficPolicy.connectionPool.http.maxConcurrentStreams: `maxConcurrentStreams` \
             is not supported by Remora yet",
            "spec.trafficPolicy.connectionPool.http.maxRetrys: unknown field `maxRetrys`; did \
             you mean `maxRetries`?",
            "spec.trafficPolicy.connectionPool.http.http2MaxRequests: must be an integer, got \
             string \"7\" (remove the quotes)",
            "spec.trafficPolicy.outlierDetection.consecutive5xxErrors: must be between 0 and \
             4294967295, got -1",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100, \
             got 101",
            "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors: \
             `splitExternalLocalOriginErrors` is not supported by Remora yet",
        ]
    );
}

#[test]
fn least_conn_is_read_as_least_request_with_a_warning() {
    let spec = "
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
";
    assert_eq!(
        warnings(spec),
        [
            "spec.trafficPolicy.loadBalancer.simple: `LEAST_CONN` is deprecated; use \
          `LEAST_REQUEST` (Remora reads it as LEAST_REQUEST)"
        ]
    );
    let policy = dr(spec).traffic_policy.expect("policy");
    assert_eq!(policy.load_balancer, Some(LoadBalancer::LeastRequest));
}

#[test]
fn unsupported_policies_and_out_of_range_values_are_errors() {
    let spec = "
  host: reviews
  exportTo: ['.']
  trafficPolicy:
    portLevelSettings: []
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
    outlierDetection:
      minHealthPercent: 101
      baseEjectionTime: 0s
";
    assert_eq!(
        errors(spec),
        [
            "spec.exportTo: `exportTo` is not supported by Remora yet",
            "spec.trafficPolicy.portLevelSettings: `portLevelSettings` is not supported by \
             Remora yet",
            "spec.trafficPolicy.loadBalancer.consistentHash: `consistentHash` is not supported \
             by Remora yet",
            "spec.trafficPolicy.outlierDetection.minHealthPercent: must be between 0 and 100, \
             got 101",
            "spec.trafficPolicy.outlierDetection.baseEjectionTime: duration `0s` must be greater \
             than 0",
        ]
    );
}

#[test]
fn subset_needs_a_name_and_string_labels() {
    let spec = "
  host: reviews
  subsets:
    - labels: {version: 2}
";
    assert_eq!(
        errors(spec),
        [
            "spec.subsets[0].name: missing required field `name`",
            "spec.subsets[0].labels.version: must be a string, got integer 2 (quote it to make \
             it a string)",
        ]
    );
}

#[test]
fn tls_mode_disable_and_istio_mutual_load_on_the_rule_and_its_subsets() {
    let rule = dr("
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
");
    let tls = |p: Option<&super::super::model::TrafficPolicy>| p.and_then(|p| p.tls);
    assert_eq!(
        tls(rule.traffic_policy.as_ref()),
        Some(TlsMode::IstioMutual)
    );
    assert_eq!(
        tls(rule.subsets[0].traffic_policy.as_ref()),
        Some(TlsMode::Disable)
    );
    assert_eq!(tls(rule.subsets[1].traffic_policy.as_ref()), None);
}

#[test]
fn tls_origination_modes_and_fields_are_errors_that_say_why() {
    let why = "Remora does not originate TLS to services outside the mesh; `tls` takes only \
               `mode: ISTIO_MUTUAL` (mesh mTLS) or `mode: DISABLE`";
    assert_eq!(
        errors(
            "
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE}
"
        ),
        [format!(
            "spec.trafficPolicy.tls.mode: tls mode `SIMPLE` is not supported: {why}"
        )]
    );
    assert_eq!(
        errors(
            "
  host: reviews
  subsets:
    - name: v1
      trafficPolicy:
        tls:
          mode: MUTUAL
          credentialName: client-cert
          sni: reviews.example.com
          subjectAltNames: [spiffe://x]
"
        ),
        [
            format!(
                "spec.subsets[0].trafficPolicy.tls.mode: tls mode `MUTUAL` is not supported: \
                 {why}"
            ),
            format!(
                "spec.subsets[0].trafficPolicy.tls.credentialName: `credentialName` is not \
                 supported: {why}"
            ),
            format!("spec.subsets[0].trafficPolicy.tls.sni: `sni` is not supported: {why}"),
            format!(
                "spec.subsets[0].trafficPolicy.tls.subjectAltNames: `subjectAltNames` is not \
                 supported: {why}"
            ),
        ]
    );
    assert_eq!(
        errors(
            "
  host: reviews
  trafficPolicy:
    tls: {mode: ISTIO_MUTAL, sin: x}
"
        ),
        [
            "spec.trafficPolicy.tls.sin: unknown field `sin`; did you mean `sni`?",
            "spec.trafficPolicy.tls.mode: unknown tls mode `ISTIO_MUTAL`; expected DISABLE or \
             ISTIO_MUTUAL",
        ]
    );
}

#[test]
fn h2_upgrade_policy_and_use_client_protocol_parse_as_one_choice() {
    let choice = |http: &str| {
        let spec = format!(
            "
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {http}
"
        );
        assert_eq!(errors(&spec), Vec::<String>::new(), "{http}");
        dr(&spec)
            .traffic_policy
            .and_then(|p| p.connection_pool)
            .expect("pool")
            .upstream_protocol
    };
    let policy = |h2_upgrade, use_client_protocol| {
        Some(UpstreamProtocolPolicy {
            h2_upgrade,
            use_client_protocol,
        })
    };
    assert_eq!(choice("{maxRetries: 1}"), None);
    assert_eq!(
        choice("{h2UpgradePolicy: UPGRADE}"),
        policy(H2UpgradePolicy::Upgrade, false)
    );
    assert_eq!(
        choice("{h2UpgradePolicy: DO_NOT_UPGRADE}"),
        policy(H2UpgradePolicy::DoNotUpgrade, false)
    );
    assert_eq!(
        choice("{h2UpgradePolicy: DEFAULT}"),
        policy(H2UpgradePolicy::Default, false)
    );
    assert_eq!(
        choice("{useClientProtocol: true}"),
        policy(H2UpgradePolicy::Default, true)
    );
    assert_eq!(
        choice("{useClientProtocol: false, h2UpgradePolicy: UPGRADE}"),
        policy(H2UpgradePolicy::Upgrade, false)
    );
}

#[test]
fn bad_h2_upgrade_policy_and_use_client_protocol_are_errors() {
    let errs = |http: &str| {
        errors(&format!(
            "
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {http}
"
        ))
    };
    assert_eq!(
        errs("{h2UpgradePolicy: ALWAYS}"),
        [
            "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: unknown h2UpgradePolicy \
          `ALWAYS`; expected DEFAULT, DO_NOT_UPGRADE or UPGRADE"
        ]
    );
    assert_eq!(
        errs("{useClientProtocol: 'yes'}"),
        [
            "spec.trafficPolicy.connectionPool.http.useClientProtocol: must be a boolean (true \
          or false), got string \"yes\""
        ]
    );
    assert_eq!(
        errs("{h2UpgradePolicy: UPGRADE, useClientProtocol: true}"),
        [
            "spec.trafficPolicy.connectionPool.http.useClientProtocol: `useClientProtocol: true` \
          keeps the client's HTTP version and `h2UpgradePolicy: UPGRADE` changes it to HTTP/2: \
          give one of them (Istio refuses both together)"
        ]
    );
}
