use super::*;

const CANARY: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
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
"#;

fn resources() -> Vec<config::model::Resource> {
    let outcome = config::parse_str(Path::new("canary.yaml"), CANARY);
    assert!(outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics);
    outcome.resources
}

fn run(host: &str, headers: &[(&str, &str)]) -> Result<Description, DescribeError> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let req = request_parts("GET", host, "/", &headers)?;
    describe(&resources(), &Nodes::new(), "default", host, &req)
}

#[test]
fn jason_takes_the_header_route_to_v2() {
    let d = run("reviews", &[("end-user", "jason")]).unwrap();
    let route = d.route.as_ref().unwrap();
    assert_eq!(route.name, "reviews.default/http[0]");
    assert_eq!(route.matched, Some(0));
    assert_eq!(route.why, "match[0] holds: header end-user exact \"jason\"");
    assert!(d.skipped.is_empty());
    let dests: Vec<(&str, u32)> = d
        .destinations
        .iter()
        .map(|d| (d.subset.as_str(), d.weight))
        .collect();
    assert_eq!(dests, [("v2", 100)]);
}

#[test]
fn others_take_the_90_10_split_after_skipping_the_header_route() {
    let d = run(
        "reviews.default.svc.cluster.local:9080",
        &[("end-user", "bob")],
    )
    .unwrap();
    let route = d.route.as_ref().unwrap();
    assert_eq!(route.name, "reviews.default/http[1]");
    assert_eq!(route.matched, None);
    assert_eq!(d.skipped.len(), 1);
    assert!(d.skipped[0].why.contains("end-user exact \"jason\""));
    let dests: Vec<(&str, u32, f64)> = d
        .destinations
        .iter()
        .map(|d| (d.subset.as_str(), d.weight, d.percent))
        .collect();
    assert_eq!(dests, [("v1", 90, 90.0), ("v2", 10, 10.0)]);
    let text = render(&d);
    assert!(text.contains("weight 90 (90.0%)"), "{text}");
}

#[test]
fn retry_on_in_json_is_istio_s_names_not_numbers() {
    let d = Description {
        host: "reviews".into(),
        namespace: "default".into(),
        virtual_host: "reviews.default.svc.cluster.local".into(),
        route: None,
        skipped: Vec::new(),
        destinations: Vec::new(),
        timeout_ms: None,
        retries: Some(pb::RetryPolicy {
            attempts: 3,
            per_try_timeout: Some(std::time::Duration::from_millis(500).into()),
            retry_on: vec![pb::RetryCondition::GatewayError as i32],
            retriable_status_codes: vec![503],
            retriable_grpc_codes: vec![14],
        }),
        fault: None,
    };
    let json = serde_json::to_value(&d).expect("serialises");
    assert_eq!(
        json["retries"],
        serde_json::json!({
            "attempts": 3,
            "per_try_timeout_ms": 500,
            "retry_on": ["gateway-error", "unavailable", "503"],
        })
    );
    let none = Description { retries: None, ..d };
    assert!(serde_json::to_value(&none).expect("serialises")["retries"].is_null());
}

#[test]
fn durations_are_shown_in_milliseconds_in_text_and_json() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    timeout: 1.5s
    retries: {attempts: 2, perTryTimeout: 250ms}
    fault: {delay: {fixedDelay: 1m, percentage: {value: 5}}}
"#;
    let outcome = config::parse_str(Path::new("ratings.yaml"), yaml);
    assert!(outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics);
    let req = request_parts("GET", "ratings", "/", &[]).unwrap();
    let d = describe(
        &outcome.resources,
        &Nodes::new(),
        "default",
        "ratings",
        &req,
    )
    .unwrap();
    let text = render(&d);
    assert!(text.contains("timeout:       1500 ms"), "{text}");
    assert!(text.contains("attempts 2, perTryTimeout 250 ms"), "{text}");
    assert!(
        text.contains(
            r#"fault:         {"delay":{"fixed_delay_ms":60000,"percentage":5.0},"abort":null}"#
        ),
        "{text}"
    );
    let json = serde_json::to_value(&d).expect("serialises");
    assert_eq!(json["timeout_ms"], 1500);
    assert_eq!(json["retries"]["per_try_timeout_ms"], 250);
    assert_eq!(
        json["fault"],
        serde_json::json!({"delay": {"fixed_delay_ms": 60000, "percentage": 5.0}, "abort": null})
    );
}

#[test]
fn an_abort_shows_its_grpc_status_by_name() {
    let abort = |status| pb::Fault {
        delay: None,
        abort: Some(pb::FaultAbort {
            status: Some(status),
            percentage: Some(10.0),
        }),
    };
    let shown = |fault| serde_json::to_value(FaultShown(&Some(fault))).unwrap();
    assert_eq!(
        shown(abort(pb::fault_abort::Status::GrpcStatus(14))),
        serde_json::json!({"delay": null, "abort": {"grpc_status": "UNAVAILABLE", "percentage": 10.0}})
    );
    assert_eq!(
        shown(abort(pb::fault_abort::Status::HttpStatus(503))),
        serde_json::json!({"delay": null, "abort": {"http_status": 503, "percentage": 10.0}})
    );
}

#[test]
fn retry_on_is_shown_as_istio_writes_it() {
    let r = pb::RetryPolicy {
        retry_on: vec![
            pb::RetryCondition::GatewayError as i32,
            pb::RetryCondition::RetriableStatusCodes as i32,
        ],
        retriable_grpc_codes: vec![14],
        retriable_status_codes: vec![409],
        ..Default::default()
    };
    assert_eq!(
        retry_on_text(&r),
        "gateway-error,retriable-status-codes,unavailable,409"
    );
}

#[test]
fn an_unknown_host_lists_the_known_ones() {
    let err = run("ratings", &[]).unwrap_err().to_string();
    assert!(err.contains("no service known as `ratings`"), "{err}");
    assert!(err.contains("reviews.default.svc.cluster.local"), "{err}");
}

#[test]
fn a_bad_request_is_refused_with_the_reason() {
    let err = request_parts("GET", "reviews", "no-slash", &[]).unwrap_err();
    assert!(err.to_string().contains("must start with `/`"), "{err}");
    let err = request_parts("GET", "reviews", "/", &[("bad name".into(), "x".into())]).unwrap_err();
    assert!(err.to_string().contains("is not a header name"), "{err}");
}
