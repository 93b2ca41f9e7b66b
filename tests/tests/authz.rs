//! AuthorizationPolicy, end to end: the server sidecar allows `productpage`
//! to GET and nothing else, denies `/admin*` to everyone, and answers 403
//! with the reason; the app never sees a denied request.

use std::time::Duration;

use http::Method;
use remora_e2e::secure::{self, Tokens, curl_plaintext};
use remora_e2e::{DemoApp, Mesh, Protocol, Proxy, Reply};

const REVIEWS: &str = "|reviews.default.svc.cluster.local";
const SETTLE: Duration = Duration::from_secs(15);

const POLICIES: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-readers, namespace: default}
spec:
  selector: {matchLabels: {version: v1}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: [cluster.local/ns/default/sa/productpage]}
    to:
    - operation: {methods: [GET], paths: [/echo*, /admin*]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: [/admin*]}
";

async fn call(proxy: &Proxy, method: Method, path: &str) -> Reply {
    proxy
        .client(Protocol::Http1)
        .request(method.clone(), "reviews", path, &[])
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_and_deny_policies_decide_by_principal_method_and_path() {
    let mesh = Mesh::start(&[("authz.yaml", POLICIES)]).await;
    let tokens = Tokens::new();
    let app = DemoApp::start("reviews", "v1").await;
    let server = secure::sidecar(&mesh, &tokens, "reviews", &app).await;
    let reader = secure::client(&mesh, &tokens, "productpage").await;
    let stranger = secure::client(&mesh, &tokens, "ratings").await;
    for p in [&reader, &stranger] {
        p.wait_endpoints(REVIEWS, 1, SETTLE).await;
    }
    // The server has both policies before the first request.
    server
        .wait_config("both policies", SETTLE, |dump| {
            let inbound = &dump["snapshot"]["inbound"];
            inbound["allow"].as_array().is_some_and(|a| a.len() == 1)
                && inbound["deny"].as_array().is_some_and(|d| d.len() == 1)
        })
        .await;

    let ok = call(&reader, Method::GET, "/echo").await;
    assert_eq!(
        ok.status, 200,
        "the allowed principal and method: {}",
        ok.body
    );
    assert_eq!(ok.headers["x-echo-method"], "GET");

    let cases = [
        (&reader, Method::POST, "/echo", "no ALLOW policy matched"),
        (&stranger, Method::GET, "/echo", "no ALLOW policy matched"),
        (
            &reader,
            Method::GET,
            "/admin/users",
            "istio-system/no-admin",
        ),
    ];
    for (proxy, method, path, reason) in cases {
        let reply = call(proxy, method.clone(), path).await;
        println!(
            "{} {method} {path}: {} {}",
            proxy.process.name(),
            reply.status,
            reply.body.trim()
        );
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert!(
            reply.body.contains("RBAC: access denied") && reply.body.contains(reason),
            "{method} {path}: the 403 should say why ({reason}): {}",
            reply.body
        );
        assert!(
            reply.headers.get("x-echo-method").is_none(),
            "a denied request reached the app"
        );
    }

    // A plaintext client has no principal: the ALLOW policy cannot match it.
    let curl = curl_plaintext(server.inbound.expect("inbound"), "reviews").await;
    println!(
        "plaintext curl: {}",
        curl.output.lines().next().unwrap_or("")
    );
    assert!(curl.output.contains(" 403"), "{curl:?}");
}
