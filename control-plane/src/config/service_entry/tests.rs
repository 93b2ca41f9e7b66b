//! Unit tests for ServiceEntry and WorkloadEntry parsing.

use super::super::Severity;
use super::super::model::{Location, Resolution, Spec};
use super::super::test_support::{messages, only_spec, parse_spec};

fn errors(kind: &str, spec: &str) -> Vec<String> {
    messages(&parse_spec(kind, spec), Severity::Error)
}

#[test]
fn static_service_entry_with_ip_endpoints_loads() {
    let outcome = parse_spec(
        "ServiceEntry",
        "
  hosts: [payments.internal]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: http, protocol: http}]
  resolution: STATIC
  endpoints:
    - address: 10.0.0.7
      ports: {http: 18080}
      labels: {version: v1}
",
    );
    let Spec::ServiceEntry(se) = only_spec(&outcome) else {
        panic!("not a ServiceEntry");
    };
    assert_eq!(se.location, Location::MeshInternal);
    assert_eq!(se.resolution, Resolution::Static);
    assert_eq!(se.ports[0].protocol.as_deref(), Some("HTTP"));
    assert_eq!(se.endpoints[0].address, "10.0.0.7");
    assert_eq!(se.endpoints[0].ports["http"], 18080);
}

#[test]
fn static_resolution_needs_ip_addresses_and_endpoints() {
    assert_eq!(
        errors(
            "ServiceEntry",
            "
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: HTTP}]
  resolution: STATIC
  endpoints:
    - address: api.example.com
",
        ),
        [
            "spec.endpoints[0].address: resolution STATIC needs IP addresses, `api.example.com` is \
          not one (use resolution DNS for host names)"
        ]
    );
    assert_eq!(
        errors(
            "ServiceEntry",
            "
  hosts: [api.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
",
        ),
        ["spec.resolution: resolution STATIC needs `endpoints` or a `workloadSelector`"]
    );
}

#[test]
fn one_http_port_and_a_supported_resolution_are_required() {
    assert_eq!(
        errors(
            "ServiceEntry",
            "
  hosts: [db.example.com]
  addresses: [10.0.0.0/24]
  ports:
    - {number: 5432, name: pg, protocol: TCP}
    - {number: 5433, name: pg2}
",
        ),
        [
            "spec.resolution: missing required field `resolution`: Remora supports STATIC and \
             DNS (Istio's default, NONE, is not supported yet)",
            "spec.addresses: `addresses` is not supported by Remora yet",
            "spec.ports: 2 ports are given, but multiple ports are not supported by Remora yet; \
             give exactly one",
        ]
    );
    assert_eq!(
        errors(
            "ServiceEntry",
            "
  hosts: [db.example.com]
  ports: [{number: 5432, name: pg, protocol: TLS}]
  resolution: NONE
",
        ),
        [
            "spec.ports[0].protocol: protocol `TLS` is not supported by Remora yet; use HTTP, \
             HTTP2, GRPC, GRPC-WEB or TCP",
            "spec.resolution: resolution `NONE` is not supported by Remora yet; use STATIC or DNS",
        ]
    );
}

#[test]
fn endpoint_port_names_should_name_the_service_port() {
    let outcome = parse_spec(
        "ServiceEntry",
        "
  hosts: [api.example.com]
  ports: [{number: 80, name: http}]
  resolution: DNS
  endpoints:
    - address: eu.api.example.com
      ports: {web: 8080}
",
    );
    assert!(!outcome.has_errors());
    assert_eq!(
        messages(&outcome, Severity::Warning),
        [
            "spec.endpoints[0].ports.web: no port of this ServiceEntry is named `web` (its port is \
          `http`); this mapping is unused"
        ]
    );
}

#[test]
fn workload_entry_reads_address_ports_labels_and_account() {
    let outcome = parse_spec(
        "WorkloadEntry",
        "
  address: 192.168.1.20
  ports: {http: 9080}
  labels: {app: reviews, version: v3}
  serviceAccount: reviews
",
    );
    let Spec::WorkloadEntry(we) = only_spec(&outcome) else {
        panic!("not a WorkloadEntry");
    };
    assert_eq!(we.address, "192.168.1.20");
    assert_eq!(we.labels["version"], "v3");
    assert_eq!(we.service_account.as_deref(), Some("reviews"));
    assert_eq!(
        errors("WorkloadEntry", "\n  address: ''\n  weight: 3\n"),
        [
            "spec.address: must not be empty",
            "spec.weight: `weight` is not supported by Remora yet",
        ]
    );
}

#[test]
fn endpoints_and_workload_selector_are_exclusive_as_in_istio() {
    assert_eq!(
        errors(
            "ServiceEntry",
            "
  hosts: [payments.internal]
  ports: [{number: 8080, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
  workloadSelector: {labels: {app: payments}}
",
        ),
        [
            "spec.workloadSelector: give either `endpoints` or `workloadSelector`, not both \
          (Istio rejects both)"
        ]
    );
}

#[test]
fn a_port_s_protocol_is_its_protocol_field_else_its_name_s_prefix() {
    use super::super::model::{AppProtocol, ServicePort};
    let port = |name: &str, protocol: Option<&str>| {
        ServicePort {
            number: 80,
            name: name.to_owned(),
            protocol: protocol.map(str::to_owned),
            target_port: None,
        }
        .app_protocol()
    };
    for (name, protocol, want) in [
        ("web", Some("HTTP"), AppProtocol::Http),
        ("web", Some("HTTP2"), AppProtocol::Http2),
        ("web", Some("GRPC"), AppProtocol::Http2),
        ("web", Some("GRPC-WEB"), AppProtocol::Http2),
        ("web", Some("TCP"), AppProtocol::Tcp),
        ("tcp-db", Some("HTTP"), AppProtocol::Http),
        ("http", None, AppProtocol::Http),
        ("http-web", None, AppProtocol::Http),
        ("HTTP-web", None, AppProtocol::Http),
        ("http2-api", None, AppProtocol::Http2),
        ("grpc", None, AppProtocol::Http2),
        ("grpc-web", None, AppProtocol::Http2),
        ("h2c-api", None, AppProtocol::Http2),
        ("tcp-redis", None, AppProtocol::Tcp),
        ("web", None, AppProtocol::Undeclared),
        ("httpbin", None, AppProtocol::Undeclared),
        ("https-web", None, AppProtocol::Undeclared),
    ] {
        assert_eq!(port(name, protocol), want, "{name} {protocol:?}");
    }
}

#[test]
fn grpc_web_is_a_supported_protocol() {
    assert_eq!(
        errors(
            "ServiceEntry",
            "
  hosts: [web.example.com]
  ports: [{number: 8080, name: api, protocol: GRPC-WEB}]
  resolution: DNS
",
        ),
        Vec::<String>::new()
    );
}
