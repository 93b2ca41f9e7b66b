//! Unit tests for DestinationRule parsing.

use std::time::Duration;

use super::super::Severity;
use super::super::model::{DestinationRule, LoadBalancer, Spec};
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
fn subset_policies_are_parsed_and_warned_about_once_per_resource() {
    let spec = "
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 250ms}
  subsets:
    - name: v1
      trafficPolicy:
        loadBalancer: {simple: ROUND_ROBIN}
        connectionPool:
          http: {http2MaxRequests: 7, idleTimeout: 1m}
        outlierDetection:
          consecutive5xxErrors: 3
          maxEjectionPercent: 50
    - name: v2
      labels: {}
";
    assert_eq!(
        warnings(spec),
        [
            "spec.trafficPolicy.connectionPool: `connectionPool` is accepted but not enforced \
             until the resilience issue",
            "spec.subsets[0].trafficPolicy.outlierDetection: `outlierDetection` is accepted but \
             not enforced until the resilience issue",
        ]
    );
    let dr = dr(spec);
    let top = dr.traffic_policy.expect("policy");
    let pool = top.connection_pool.expect("pool");
    assert_eq!(pool.max_connections, Some(10));
    assert_eq!(pool.connect_timeout, Some(Duration::from_millis(250)));
    let v1 = dr.subsets[0].traffic_policy.clone().expect("subset policy");
    assert_eq!(v1.load_balancer, Some(LoadBalancer::RoundRobin));
    assert_eq!(
        v1.connection_pool.expect("pool").http_idle_timeout,
        Some(Duration::from_secs(60))
    );
    let outlier = v1.outlier_detection.expect("outlier");
    assert_eq!(outlier.consecutive_5xx_errors, Some(3));
    assert_eq!(outlier.max_ejection_percent, Some(50));
    assert!(dr.subsets[1].labels.is_empty());
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
    tls: {mode: ISTIO_MUTUAL}
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
            "spec.trafficPolicy.tls: `tls` is not supported by Remora yet",
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
