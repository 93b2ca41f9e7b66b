//! The retry decision table: method × condition × explicit/implicit.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use remora_proto::pb;

use super::{RetryPolicy, TryFailure};
use crate::upstream::UpstreamError;

/// `retryOn` names as the control plane sends them: HTTP conditions, gRPC
/// codes and status codes, each in its field.
fn encode(retry_on: &[&str]) -> pb::RetryPolicy {
    use remora_route::retry::{IstioCondition, istio_condition};
    let mut p = pb::RetryPolicy::default();
    for name in retry_on {
        match istio_condition(name) {
            Some(IstioCondition::Http(c)) => p.retry_on.push(c as i32),
            Some(IstioCondition::Grpc(code)) => p.retriable_grpc_codes.push(code),
            None => p
                .retriable_status_codes
                .push(name.parse().expect("a condition or a status code")),
        }
    }
    p
}

fn explicit(retry_on: &[&str]) -> RetryPolicy {
    let p = pb::RetryPolicy {
        attempts: 3,
        per_try_timeout: Some(Duration::from_millis(250).into()),
        ..encode(retry_on)
    };
    RetryPolicy::compile(Some(&p)).expect("valid")
}

fn implicit() -> RetryPolicy {
    let p = pb::RetryPolicy {
        attempts: 3,
        ..Default::default()
    };
    RetryPolicy::compile(Some(&p)).expect("valid")
}

fn connect_failure() -> UpstreamError {
    UpstreamError::Connect {
        address: "10.0.0.1:80".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    }
}

fn overflow() -> UpstreamError {
    UpstreamError::Overflow {
        address: "10.0.0.1:80".into(),
        limit: "maxConnections (1)".into(),
    }
}

fn status(p: &RetryPolicy, method: Method, code: u16) -> bool {
    let headers = HeaderMap::new();
    p.should_retry(
        &method,
        TryFailure::Response(StatusCode::from_u16(code).expect("code"), &headers),
    )
}

fn grpc(p: &RetryPolicy, code: &'static str) -> bool {
    let mut headers = HeaderMap::new();
    headers.insert("grpc-status", HeaderValue::from_static(code));
    p.should_retry(
        &Method::POST,
        TryFailure::Response(StatusCode::OK, &headers),
    )
}

#[test]
fn no_retries_block_retries_only_what_never_reached_the_app() {
    let p = RetryPolicy::compile(None).expect("valid");
    assert_eq!(p.attempts, 2);
    assert!(p.per_try_timeout.is_none());
    for m in [Method::GET, Method::POST, Method::PATCH] {
        assert!(
            p.should_retry(&m, TryFailure::Error(&connect_failure())),
            "{m}"
        );
        assert!(!p.should_retry(&m, TryFailure::Error(&overflow())), "{m}");
        assert!(!status(&p, m.clone(), 503), "{m} 503");
        assert!(!status(&p, m.clone(), 500), "{m} 500");
        assert!(!p.should_retry(&m, TryFailure::PerTryTimeout), "{m}");
    }
}

#[test]
fn implicit_retry_on_retries_503_for_idempotent_methods_only() {
    let p = implicit();
    assert_eq!(p.attempts, 3);
    assert!(!p.explicit);
    for m in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ] {
        assert!(status(&p, m.clone(), 503), "{m} 503");
        assert!(
            !status(&p, m.clone(), 500),
            "{m} 500 is not in Istio's default"
        );
    }
    for m in [Method::POST, Method::PATCH, Method::CONNECT] {
        assert!(!status(&p, m.clone(), 503), "{m} 503 must not be replayed");
        assert!(
            p.should_retry(&m, TryFailure::Error(&connect_failure())),
            "{m}"
        );
    }
    assert!(
        !grpc(&p, "14"),
        "gRPC is POST: implicit unavailable is not applied"
    );
}

#[test]
fn explicit_retry_on_applies_to_every_method() {
    let p = explicit(&["5xx"]);
    for m in [Method::GET, Method::POST, Method::PATCH] {
        assert!(status(&p, m.clone(), 500), "{m}");
        assert!(status(&p, m.clone(), 503), "{m}");
        assert!(!status(&p, m.clone(), 409), "{m}");
        assert!(!status(&p, m.clone(), 200), "{m}");
        assert!(p.should_retry(&m, TryFailure::PerTryTimeout), "{m}");
        assert!(!p.should_retry(&m, TryFailure::Error(&overflow())), "{m}");
    }
}

#[test]
fn each_status_condition_matches_its_codes() {
    let cases: &[(&[&str], &[u16], &[u16])] = &[
        (
            &["5xx"],
            &[500, 501, 502, 503, 504, 599],
            &[200, 404, 409, 429],
        ),
        (&["gateway-error"], &[502, 503, 504], &[500, 501, 409]),
        (&["retriable-4xx"], &[409], &[400, 404, 429, 500]),
        (
            &["retriable-status-codes", "429", "404"],
            &[429, 404],
            &[409, 500, 503],
        ),
        (&["connect-failure", "reset"], &[], &[500, 503, 409]),
    ];
    for (on, yes, no) in cases {
        let p = explicit(on);
        for code in *yes {
            assert!(status(&p, Method::POST, *code), "{on:?} {code}");
        }
        for code in *no {
            assert!(!status(&p, Method::POST, *code), "{on:?} {code}");
        }
    }
}

#[test]
fn grpc_conditions_read_grpc_status_from_headers() {
    let p = explicit(&[
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ]);
    for code in ["1", "4", "8", "13", "14"] {
        assert!(grpc(&p, code), "grpc-status {code}");
    }
    for code in ["0", "2", "3", "5", "12", "16", "x"] {
        assert!(!grpc(&p, code), "grpc-status {code}");
    }
    assert!(!grpc(&explicit(&["unavailable"]), "13"));
}

#[test]
fn per_try_timeout_is_retried_by_reset_and_the_5xx_families() {
    for on in [&["reset"][..], &["5xx"], &["gateway-error"]] {
        assert!(explicit(on).should_retry(&Method::GET, TryFailure::PerTryTimeout));
    }
    for on in [
        &["connect-failure"][..],
        &["retriable-4xx"],
        &["unavailable"],
    ] {
        assert!(!explicit(on).should_retry(&Method::GET, TryFailure::PerTryTimeout));
    }
    assert_eq!(
        explicit(&["5xx"]).per_try_timeout,
        Some(Duration::from_millis(250))
    );
}

#[test]
fn never_reached_app_is_retried_whatever_the_conditions() {
    let p = explicit(&["retriable-4xx"]);
    assert!(p.should_retry(&Method::POST, TryFailure::Error(&connect_failure())));
    assert!(!p.should_retry(&Method::POST, TryFailure::Error(&overflow())));
}

#[test]
fn bad_conditions_and_codes_are_config_errors() {
    let bad = |on: &[i32], grpc: &[u32], codes: &[u32]| {
        let p = pb::RetryPolicy {
            attempts: 1,
            retry_on: on.to_vec(),
            retriable_grpc_codes: grpc.to_vec(),
            retriable_status_codes: codes.to_vec(),
            ..Default::default()
        };
        RetryPolicy::compile(Some(&p)).expect_err("invalid")
    };
    let e = bad(&[pb::RetryCondition::ServerError as i32, 99], &[], &[]);
    assert!(e.contains("retries.retryOn: unknown condition 99"), "{e}");
    assert!(bad(&[0], &[], &[]).contains("unknown condition 0"));
    assert!(bad(&[], &[17], &[]).contains("gRPC status 17"));
    assert!(bad(&[], &[], &[700]).contains("700"));
    assert!(bad(&[], &[], &[42]).contains("42"));
}

#[test]
fn an_h2_connection_closed_before_the_request_is_a_connect_failure() {
    let closed = UpstreamError::ClosedBeforeSend {
        address: "10.0.0.1:80".into(),
    };
    assert!(closed.is_connect_failure());
    assert!(closed.never_reached_app());
    let p = RetryPolicy::compile(None).expect("valid");
    for m in [Method::GET, Method::POST] {
        assert!(p.should_retry(&m, TryFailure::Error(&closed)), "{m}");
    }
}
