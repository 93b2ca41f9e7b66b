//! Unit tests for VirtualService parsing: match structure, weights, and
//! the resilience fields (`timeout`, `retries`, `fault`).

use std::time::Duration;

use super::super::Severity;
use super::super::model::{
    AbortStatus, Fault, FaultAbort, FaultDelay, HttpMatch, Retries, Spec, StringMatch,
    VirtualService,
};
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
fn timeout_retries_and_fault_parse_into_the_model() {
    let vs = vs("
  hosts: [reviews]
  http:
    - route: [{destination: {host: reviews}}]
      timeout: 2s
      retries:
        attempts: 3
        perTryTimeout: 500ms
        retryOn: 5xx, connect-failure,503,reset-before-request,unavailable
      fault:
        delay: {fixedDelay: 100ms, percentage: {value: 50}}
        abort: {httpStatus: 503, percentage: {value: 0.5}}
");
    let route = &vs.http[0];
    assert_eq!(route.timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        route.retries,
        Some(Retries {
            attempts: 3,
            per_try_timeout: Some(Duration::from_millis(500)),
            retry_on: vec![
                "5xx".into(),
                "connect-failure".into(),
                "reset-before-request".into(),
                "unavailable".into(),
            ],
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
                percentage: Some(0.5),
            }),
        })
    );
}

#[test]
fn zero_timeouts_mean_none_and_zero_attempts_disable_retries() {
    let spec = "
  hosts: [reviews]
  http:
    - route: [{destination: {host: reviews}}]
      timeout: 0s
      retries: {attempts: 0, perTryTimeout: 0s}
      fault:
        abort: {grpcStatus: UNAVAILABLE}
";
    assert_eq!(warnings(spec), Vec::<String>::new());
    let route = &vs(spec).http[0];
    assert_eq!(route.timeout, None);
    assert_eq!(
        route.retries,
        Some(Retries {
            attempts: 0,
            per_try_timeout: None,
            retry_on: vec![],
            retriable_status_codes: vec![],
        })
    );
    assert_eq!(
        route.fault,
        Some(Fault {
            delay: None,
            abort: Some(FaultAbort {
                status: AbortStatus::Grpc(14),
                percentage: None,
            }),
        })
    );
}

#[test]
fn every_supported_retry_condition_is_accepted() {
    let conditions = "5xx,gateway-error,reset,reset-before-request,connect-failure,\
                      retriable-4xx,refused-stream,retriable-status-codes,cancelled,\
                      deadline-exceeded,internal,resource-exhausted,unavailable,100,599";
    let vs = vs(&format!(
        "
  hosts: [reviews]
  http:
    - route: [{{destination: {{host: reviews}}}}]
      retries: {{attempts: 1, retryOn: '{conditions}'}}
"
    ));
    let retries = vs.http[0].retries.clone().expect("retries");
    assert_eq!(retries.retry_on.len(), 13);
    assert_eq!(retries.retriable_status_codes, [100, 599]);
}

#[test]
fn unknown_and_unsupported_retry_conditions_are_errors() {
    let spec = "
  hosts: [reviews]
  http:
    - route: [{destination: {host: reviews}}]
      retries:
        attempts: 3
        retryOn: 5xx,sometimes,conect-failure,envoy-ratelimited,retriable-headers,\
          http3-post-connect-failure,700,42,,
";
    let supported = "`5xx`, `gateway-error`, `reset`, `reset-before-request`, `connect-failure`, \
                     `retriable-4xx`, `refused-stream`, `retriable-status-codes`, `cancelled`, \
                     `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable`";
    let field = "spec.http[0].retries.retryOn";
    assert_eq!(
        errors(spec),
        [
            format!(
                "{field}: unknown retry condition `sometimes`; expected an HTTP status code or \
                 one of {supported}"
            ),
            format!(
                "{field}: unknown retry condition `conect-failure`; did you mean `connect-failure`?"
            ),
            format!(
                "{field}: retry condition `envoy-ratelimited` is not supported by Remora; use an \
                 HTTP status code or one of {supported}"
            ),
            format!(
                "{field}: retry condition `retriable-headers` is not supported by Remora; use an \
                 HTTP status code or one of {supported}"
            ),
            format!(
                "{field}: retry condition `http3-post-connect-failure` is not supported by \
                 Remora; use an HTTP status code or one of {supported}"
            ),
            format!("{field}: retry condition `700` is not an HTTP status code (100 to 599)"),
            format!("{field}: retry condition `42` is not an HTTP status code (100 to 599)"),
            format!(
                "{field}: unknown retry condition ``; expected an HTTP status code or one of \
                 {supported}"
            ),
            format!(
                "{field}: unknown retry condition ``; expected an HTTP status code or one of \
                 {supported}"
            ),
        ]
    );
}

#[test]
fn grpc_abort_status_must_be_a_known_upper_case_name() {
    let errors_for = |status: &str| {
        errors(&format!(
            "
  hosts: [reviews]
  http:
    - route: [{{destination: {{host: reviews}}}}]
      fault:
        abort: {{grpcStatus: '{status}', percentage: {{value: 100}}}}
"
        ))
    };
    let field = "spec.http[0].fault.abort.grpcStatus";
    assert_eq!(
        errors_for("unavailable"),
        [format!(
            "{field}: unknown gRPC status `unavailable`; gRPC status names are upper case: \
             `UNAVAILABLE`"
        )]
    );
    assert_eq!(
        errors_for("14"),
        [format!(
            "{field}: unknown gRPC status `14`; write the status name, `UNAVAILABLE`, not its \
             number"
        )]
    );
    assert_eq!(
        errors_for("UNAVAILBLE"),
        [format!(
            "{field}: unknown gRPC status `UNAVAILBLE`; did you mean `UNAVAILABLE`?"
        )]
    );
    let unknown = errors_for("TEAPOT");
    assert_eq!(unknown.len(), 1);
    assert!(
        unknown[0].starts_with(&format!(
            "{field}: unknown gRPC status `TEAPOT`; expected one of `OK`, `CANCELLED`,"
        )),
        "{unknown:?}"
    );
    assert!(
        unknown[0].ends_with("`DATA_LOSS`, `UNAUTHENTICATED`"),
        "{unknown:?}"
    );
    for name in [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ] {
        assert_eq!(errors_for(name), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn bad_fault_values_are_errors() {
    let spec = "
  hosts: [reviews]
  http:
    - match: [{uri: {prefix: /a}}]
      route: [{destination: {host: reviews}}]
      fault:
        delay: {fixedDelay: 5s, percentage: {value: 150}}
        abort: {httpStatus: 503, grpcStatus: UNAVAILABLE, percentage: {value: -1}}
    - match: [{uri: {prefix: /b}}]
      route: [{destination: {host: reviews}}]
      fault:
        delay: {fixedDelay: 0s}
        abort: {httpStatus: 600}
    - route: [{destination: {host: reviews}}]
      fault: {}
";
    assert_eq!(
        errors(spec),
        [
            "spec.http[0].fault.delay.percentage.value: must be between 0 and 100, got 150",
            "spec.http[0].fault.abort: has both `httpStatus` and `grpcStatus`; give one",
            "spec.http[0].fault.abort.percentage.value: must be between 0 and 100, got -1",
            "spec.http[1].fault.delay.fixedDelay: duration `0s` must be greater than 0",
            "spec.http[1].fault.abort.httpStatus: must be between 200 and 599, got 600",
            "spec.http[2].fault: needs `delay`, `abort` or both",
        ]
    );
}

#[test]
fn bad_timeouts_and_attempts_are_errors() {
    let spec = "
  hosts: [reviews]
  http:
    - route: [{destination: {host: reviews}}]
      timeout: 1500us
      retries: {attempts: -1, perTryTimeout: 2 seconds}
    - route: [{destination: {host: reviews}}]
      retries: {retryOn: 5xx}
    - route: [{destination: {host: reviews}}]
      timeout: 87660001h
";
    assert_eq!(
        errors(spec),
        [
            "spec.http[0].timeout: duration `1500us` is not a whole number of milliseconds; \
             Remora (like Istio) supports millisecond precision",
            "spec.http[0].retries.attempts: must be between 0 and 4294967295, got -1",
            "spec.http[0].retries.perTryTimeout: invalid duration `2 seconds`: unknown unit \
             ` seconds`; write a number and a unit (h, m, s, ms, us), such as \"30s\", \"1.5s\" \
             or \"100ms\"",
            "spec.http[1].retries.attempts: missing required field `attempts`",
            "spec.http[2].timeout: duration `87660001h` is over 10000 years, the most the wire \
             carries",
        ]
    );
}

#[test]
fn unimplemented_retry_and_fault_fields_are_errors_naming_the_field() {
    let spec = "
  hosts: [reviews]
  http:
    - route: [{destination: {host: reviews}}]
      retries:
        attempts: 2
        retryRemoteLocalities: true
        backoff: {baseInterval: 25ms}
      fault:
        delay: {exponentialDelay: 1s, fixedDelay: 1s}
        abort: {http2Error: REFUSED_STREAM, httpStatus: 503}
";
    assert_eq!(
        errors(spec),
        [
            "spec.http[0].retries.retryRemoteLocalities: `retryRemoteLocalities` is not \
             supported by Remora yet",
            "spec.http[0].retries.backoff: `backoff` is not supported by Remora yet",
            "spec.http[0].fault.delay.exponentialDelay: `exponentialDelay` is not supported by \
             Remora yet",
            "spec.http[0].fault.abort.http2Error: `http2Error` is not supported by Remora yet",
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

#[test]
fn a_regex_too_big_for_the_proxies_is_a_warning_naming_its_field() {
    // `\w` is Unicode: 64 of them compile to several MiB.
    let spec = "
  hosts: [reviews]
  http:
    - match:
        - uri: {regex: '/reviews/\\w{64}'}
        - headers:
            x-id: {regex: '[a-f0-9]{32}'}
      route:
        - destination: {host: reviews}
";
    assert_eq!(errors(spec), Vec::<String>::new());
    let warnings = warnings(spec);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("spec.http[0].match[0].uri.regex: this regex compiles to more than the 1024 KiB a proxy accepts: every proxy will refuse the config (NACK)"),
        "{warnings:?}"
    );
}
