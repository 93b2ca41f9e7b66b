//! Unit tests for VirtualService parsing: match structure and weights.

use super::super::Severity;
use super::super::model::{HttpMatch, Spec, StringMatch, VirtualService};
use super::super::test_support::{messages, only_spec, parse_spec};

fn vs(spec: &str) -> VirtualService {
    let outcome = parse_spec("VirtualService", spec);
    match only_spec(&outcome) {
        Spec::VirtualService(vs) => vs.clone(),
        other => panic!("not a VirtualService: {other:?}"),
    }
}

fn errors(spec: &str) -> Vec<String> {
    messages(&parse_spec("VirtualService", spec), Severity::Error)
}

fn warnings(spec: &str) -> Vec<String> {
    messages(&parse_spec("VirtualService", spec), Severity::Warning)
}

#[test]
fn match_entries_stay_ored_and_their_fields_anded() {
    let vs = vs("
  hosts: [reviews]
  http:
    - match:
        - uri: {prefix: /api}
          method: {exact: GET}
          headers:
            End-User: {exact: jason}
            x-canary: {}
        - queryParams:
            debug: {regex: '[01]'}
          authority: {exact: reviews.example.com}
          ignoreUriCase: true
      route:
        - destination: {host: reviews}
");
    let matches = &vs.http[0].matches;
    assert_eq!(matches.len(), 2, "two OR'd match entries");
    assert_eq!(
        matches[0],
        HttpMatch {
            name: None,
            uri: Some(StringMatch::Prefix("/api".into())),
            headers: vec![
                ("end-user".into(), Some(StringMatch::Exact("jason".into()))),
                ("x-canary".into(), None),
            ],
            authority: None,
            method: Some(StringMatch::Exact("GET".into())),
            query_params: vec![],
            ignore_uri_case: false,
        }
    );
    assert_eq!(
        matches[1],
        HttpMatch {
            name: None,
            uri: None,
            headers: vec![],
            authority: Some(StringMatch::Exact("reviews.example.com".into())),
            method: None,
            query_params: vec![("debug".into(), Some(StringMatch::Regex("[01]".into())))],
            ignore_uri_case: true,
        }
    );
}

#[test]
fn route_without_match_is_catch_all_and_later_routes_are_unreachable() {
    let spec = "
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v1}
    - match:
        - uri: {prefix: /beta}
      route:
        - destination: {host: reviews, subset: v2}
";
    assert_eq!(
        warnings(spec),
        ["spec.http[1]: this route is unreachable: `spec.http[0]` before it matches every request"]
    );
    assert!(vs(spec).http[0].matches.is_empty());
}

#[test]
fn prefix_slash_alone_also_matches_everything() {
    let spec = "
  hosts: [reviews]
  http:
    - match: [{uri: {prefix: /}}]
      route: [{destination: {host: reviews}}]
    - route: [{destination: {host: reviews}}]
";
    assert_eq!(warnings(spec).len(), 1);
}

#[test]
fn several_destinations_each_need_a_weight() {
    let spec = "
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v1}
          weight: 90
        - destination: {host: reviews, subset: v2}
";
    assert_eq!(
        errors(spec),
        [
            "spec.http[0].route[1].weight: missing `weight`: when a route has several \
          destinations, each needs a weight (its share of their sum)"
        ]
    );
}

#[test]
fn weights_are_shares_and_zero_is_allowed_beside_others() {
    let vs = vs("
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v1, port: {number: 9080}}
          weight: 3
        - destination: {host: reviews, subset: v2}
          weight: 1
        - destination: {host: reviews, subset: v3}
          weight: 0
");
    let weights: Vec<_> = vs.http[0].route.iter().map(|d| d.weight).collect();
    assert_eq!(weights, [3, 1, 0]);
    assert_eq!(vs.http[0].route[0].port, Some(9080));
}

#[test]
fn bad_weights_and_ports_are_rejected_in_line_order() {
    let spec = "
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, port: {number: 70000}}
          weight: -1
        - destination: {host: reviews, port: {number: '80'}}
          weight: 1.5
";
    assert_eq!(
        errors(spec),
        [
            "spec.http[0].route[0].destination.port.number: must be between 1 and 65535, got 70000",
            "spec.http[0].route[0].weight: must be between 0 and 1000000, got -1",
            "spec.http[0].route[1].destination.port.number: must be an integer, got string \"80\" \
             (remove the quotes)",
            "spec.http[0].route[1].weight: must be an integer, got number 1.5",
        ]
    );
}

#[test]
fn string_match_takes_exactly_one_kind() {
    let spec = "
  hosts: [reviews]
  http:
    - match:
        - uri: {exact: /a, prefix: /b}
          method: {}
          queryParams:
            q: {prefix: x}
          headers:
            x-id: {exakt: '1'}
      route: [{destination: {host: reviews}}]
";
    assert_eq!(
        errors(spec),
        [
            "spec.http[0].match[0].uri: has `exact` and `prefix`; a StringMatch takes exactly \
             one of `exact`, `prefix` or `regex`",
            "spec.http[0].match[0].method: needs exactly one of `exact`, `prefix` or `regex`",
            "spec.http[0].match[0].queryParams.q.prefix: `prefix` is not supported for \
             `queryParams` (as in Istio); use `exact` or `regex`",
            "spec.http[0].match[0].headers.x-id.exakt: unknown field `exakt`; did you mean `exact`?",
        ]
    );
}

#[test]
fn unsupported_match_fields_and_wildcard_hosts_are_errors() {
    let spec = "
  hosts: ['*.example.com']
  gateways: [mesh]
  http:
    - match:
        - sourceLabels: {app: web}
      route: [{destination: {host: reviews}}]
";
    assert_eq!(
        errors(spec),
        [
            "spec.hosts[0]: wildcard hosts (`*.example.com`) are not supported by Remora yet",
            "spec.gateways: `gateways` is not supported by Remora yet",
            "spec.http[0].match[0].sourceLabels: `sourceLabels` is not supported by Remora yet",
        ]
    );
}

#[test]
fn fault_is_read_but_reported_until_the_resilience_issue() {
    let spec = "
  hosts: [reviews]
  http:
    - route: [{destination: {host: reviews}}]
      fault:
        delay: {fixedDelay: 5s, percentage: {value: 150}}
        abort: {httpStatus: 503}
";
    assert_eq!(
        errors(spec),
        [
            "spec.http[0].fault: `fault` is not supported by Remora yet (arrives with the \
             resilience issue)",
            "spec.http[0].fault.delay.percentage.value: must be between 0 and 100, got 150",
        ]
    );
}

#[test]
fn errors_carry_the_line_of_the_offending_key() {
    let outcome = parse_spec(
        "VirtualService",
        "  hosts: [reviews]\n  http:\n    - route:\n        - destination:\n            host: reviews\n          wieght: 5\n",
    );
    let error = &outcome.diagnostics[0];
    // Lines 1-5 are the wrapper; `wieght` is the 6th spec line.
    assert_eq!(error.line, Some(11));
    assert_eq!(
        error.message,
        "unknown field `wieght`; did you mean `weight`?"
    );
}
