//! AuthorizationPolicy, end to end: the server sidecar allows `productpage`
//! to GET and nothing else, denies `/admin*` to everyone, and answers 403
//! with the reason; the app never sees a denied request. Policies see the
//! normalised path and the one Host of a request, which is exactly what the
//! app gets (raw requests, sent byte for byte).

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;
use remora_e2e::raw::{self, WorkloadCert};
use remora_e2e::secure::{self, Tokens, curl_plaintext};
use remora_e2e::{Backend, DemoApp, Mesh, Protocol, Proxy, ProxySpec, Reply};

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
    let mesh = Mesh::start_secure(&[("authz.yaml", POLICIES)]).await;
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

// ---------------------------------------------------------------------------
// Paths (issue 15 D3): policies match the normalised path, and the app gets
// that same path. Raw bytes, straight to the server's inbound port and
// through a client sidecar, so nothing on the way normalises for us.

const PATH_POLICIES: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: default}
spec:
  selector: {matchLabels: {app: guarded}}
  action: DENY
  rules:
  - to:
    - operation: {paths: [/admin*]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-only, namespace: default}
spec:
  selector: {matchLabels: {app: api}}
  action: ALLOW
  rules:
  - to:
    - operation: {paths: [/api/*]}
";

/// A sidecar with an identity for `service` (label `app=<service>`) in
/// front of `backend`; ready, with `policies` policies in its snapshot.
async fn guarded_sidecar(mesh: &Mesh, tokens: &Tokens, service: &str, backend: &Backend) -> Proxy {
    let mut spec = secure::with_identity(
        ProxySpec::sidecar(service, "v1", backend.addr),
        mesh,
        tokens,
        service,
    );
    spec.labels.push(("app".to_owned(), service.to_owned()));
    let proxy = mesh.proxy(&spec).await;
    proxy
        .wait_config("its AuthorizationPolicy", SETTLE, |dump| {
            let inbound = &dump["snapshot"]["inbound"];
            ["allow", "deny"]
                .iter()
                .any(|k| inbound[k].as_array().is_some_and(|a| !a.is_empty()))
        })
        .await;
    proxy
}

/// What one raw request should get: the status, and for a 200 the target
/// the app received.
struct PathCase {
    service: &'static str,
    raw: &'static str,
    status: u16,
    app_got: Option<&'static str>,
}

const fn case(
    service: &'static str,
    raw: &'static str,
    status: u16,
    app_got: Option<&'static str>,
) -> PathCase {
    PathCase {
        service,
        raw,
        status,
        app_got,
    }
}

/// Sends each case to `addr` and checks the status, what the app got, and
/// that the app got nothing when the answer is not 200.
async fn check_paths(
    via: &str,
    addr: SocketAddr,
    cases: &[PathCase],
    backends: &[(&str, &Backend)],
) {
    for c in cases {
        let backend = backends
            .iter()
            .find(|(name, _)| *name == c.service)
            .map(|(_, b)| *b)
            .expect("a backend per service");
        let hits = backend.hits();
        let reply = raw::send(addr, &raw::get(c.raw, &[&format!("Host: {}", c.service)])).await;
        println!(
            "{via}: {} GET {:<28} → {} {}",
            c.service,
            c.raw,
            reply.status,
            if backend.hits() > hits {
                format!("app got {}", backend.last_head().expect("a request").target)
            } else {
                reply.body.trim().to_owned()
            }
        );
        assert_eq!(
            reply.status, c.status,
            "{via}: {} {}: {}",
            c.service, c.raw, reply.body
        );
        match c.app_got {
            Some(target) => {
                assert_eq!(
                    backend.hits(),
                    hits + 1,
                    "{via}: {} reached the app once",
                    c.raw
                );
                assert_eq!(
                    backend.last_head().expect("a request").target,
                    target,
                    "{via}: {}",
                    c.raw
                );
            }
            None => assert_eq!(
                backend.hits(),
                hits,
                "{via}: {} must not reach the app",
                c.raw
            ),
        }
        if c.status == 400 {
            assert!(
                reply.body.contains("bad request: the path"),
                "{via}: {}: {}",
                c.raw,
                reply.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_match_the_normalised_path_and_the_app_gets_that_path() {
    let mesh = Mesh::start(&[("authz.yaml", PATH_POLICIES)]).await;
    let tokens = Tokens::new();
    let guarded_app = Backend::start("guarded").await;
    let api_app = Backend::start("api").await;
    let guarded = guarded_sidecar(&mesh, &tokens, "guarded", &guarded_app).await;
    let api = guarded_sidecar(&mesh, &tokens, "api", &api_app).await;
    let client = secure::client(&mesh, &tokens, "productpage").await;
    client
        .wait_endpoints("|guarded.default.svc.cluster.local", 1, SETTLE)
        .await;
    client
        .wait_endpoints("|api.default.svc.cluster.local", 1, SETTLE)
        .await;

    // BASE, Istio's default: what each path of the report becomes.
    let cases = [
        case("guarded", "/admin", 403, None),
        case("guarded", "/%61dmin", 403, None),
        case("guarded", "/./admin", 403, None),
        case("guarded", "/api/../admin", 403, None),
        case("guarded", "/api/%2e%2e/admin", 403, None),
        case("guarded", "/api\\..\\admin", 403, None),
        case("guarded", "/api/..;/admin", 400, None),
        // BASE keeps `//`, case and escaped slashes, and so does what it
        // forwards: the app gets exactly the path the policy did not match
        // (MERGE_SLASHES and DECODE_AND_MERGE_SLASHES: the test below).
        case("guarded", "//admin", 200, Some("//admin")),
        case("guarded", "/ADMIN", 200, Some("/ADMIN")),
        case("guarded", "/%2fadmin", 200, Some("/%2Fadmin")),
        case(
            "guarded",
            "/docs/../x?next=/../admin",
            200,
            Some("/x?next=/../admin"),
        ),
        case("api", "/api/items", 200, Some("/api/items")),
        case("api", "/api/./items", 200, Some("/api/items")),
        case("api", "/api/%69tems", 200, Some("/api/items")),
        case("api", "/api/../admin", 403, None),
        case("api", "/api/%2e%2e/admin", 403, None),
        case("api", "/api\\..\\admin", 403, None),
        case("api", "/api/x/../../admin", 403, None),
        case("api", "/api/..;/admin", 400, None),
        case("api", "/api/.;/items", 400, None),
        case("api", "/..", 400, None),
        case("api", "/api/%00", 400, None),
        case("api", "/api/%zz", 400, None),
    ];
    let backends = [("guarded", &guarded_app), ("api", &api_app)];
    for (name, proxy) in [("guarded", &guarded), ("api", &api)] {
        let inbound = proxy.inbound.expect("inbound");
        let own: Vec<PathCase> = cases
            .iter()
            .filter(|c| c.service == name)
            .map(|c| case(c.service, c.raw, c.status, c.app_got))
            .collect();
        check_paths("direct to the inbound port", inbound, &own, &backends).await;
    }
    check_paths(
        "through a client sidecar",
        client.outbound,
        &cases,
        &backends,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decode_and_merge_slashes_closes_the_slash_bypasses() {
    let mesh = Mesh::start_with_args(
        &[("authz.yaml", PATH_POLICIES)],
        &["--path-normalization", "DECODE_AND_MERGE_SLASHES"],
    )
    .await;
    let tokens = Tokens::new();
    let app = Backend::start("guarded").await;
    let guarded = guarded_sidecar(&mesh, &tokens, "guarded", &app).await;
    let dump = guarded.config_dump().await.expect("config dump");
    println!("mesh settings: {}", dump["snapshot"]["mesh"]);
    let cases = [
        case("guarded", "//admin", 403, None),
        case("guarded", "/%2fadmin", 403, None),
        case("guarded", "/%5Cadmin", 403, None),
        case("guarded", "/x/..%2fadmin", 403, None),
        case("guarded", "/ADMIN", 200, Some("/ADMIN")),
        case("guarded", "/a//b%2Fc", 200, Some("/a/b/c")),
    ];
    let inbound = guarded.inbound.expect("inbound");
    check_paths(
        "direct, DECODE_AND_MERGE_SLASHES",
        inbound,
        &cases,
        &[("guarded", &app)],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Hosts (issue 15 D6): one request, one authority, and `Connection` cannot
// remove what the proxy relies on or sets.

const HOST_POLICY: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin-host, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to:
    - operation: {hosts: [admin.*]}
";

#[tokio::test(flavor = "multi_thread")]
async fn one_host_per_request_and_connection_cannot_remove_host_or_xfcc() {
    let mesh = Mesh::start(&[("authz.yaml", HOST_POLICY)]).await;
    let tokens = Tokens::new();
    let app = Backend::start("reviews").await;
    let server = guarded_sidecar(&mesh, &tokens, "reviews", &app).await;
    let client = secure::client(&mesh, &tokens, "productpage").await;
    client.wait_endpoints(REVIEWS, 1, SETTLE).await;
    let inbound = server.inbound.expect("inbound");

    let refused = [
        // The report's request: policy saw `reviews`, the app got `admin.reviews`.
        raw::get(
            "http://admin.reviews/x",
            &["Host: reviews", "Connection: host"],
        ),
        raw::get("http://admin.reviews/x", &["Host: reviews"]),
        raw::get("/x", &["Host: reviews", "Host: admin.reviews"]),
        raw::get("/x", &["Host: admin.reviews", "Host: reviews"]),
        raw::get("/x", &["Host: reviews@admin"]),
        raw::get("/x", &[]),
    ];
    for (via, addr) in [("direct", inbound), ("client sidecar", client.outbound)] {
        for request in &refused {
            let hits = app.hits();
            let reply = raw::send(addr, request).await;
            println!(
                "{via}: {request:?} → {} {}",
                reply.status,
                reply.body.trim()
            );
            assert_eq!(reply.status, 400, "{via}: {request:?}: {}", reply.body);
            assert!(
                reply.body.contains("Host"),
                "{via}: the 400 says why: {}",
                reply.body
            );
            assert_eq!(app.hits(), hits, "{via}: {request:?} reached the app");
        }
        // `Connection: host` cannot take the Host away: the app gets the
        // one Host that was routed and authorized on.
        let reply = raw::send(
            addr,
            &raw::get(
                "/x",
                &[
                    "Host: reviews",
                    "Connection: host, x-private",
                    "x-private: 1",
                ],
            ),
        )
        .await;
        assert_eq!(reply.status, 200, "{via}: {}", reply.body);
        let head = app.last_head().expect("a request");
        assert_eq!(head.values("host"), ["reviews"], "{via}: {head:?}");
        assert!(
            head.values("x-private").is_empty(),
            "{via}: a connection option still goes: {head:?}"
        );
    }
    // The policy sees the Host the app would get.
    for request in [
        raw::get("http://admin.reviews/x", &["Host: admin.reviews"]),
        raw::get("/x", &["Host: ADMIN.reviews"]),
    ] {
        let reply = raw::send(inbound, &request).await;
        println!(
            "direct: {request:?} → {} {}",
            reply.status,
            reply.body.trim()
        );
        assert_eq!(reply.status, 403, "{request:?}: {}", reply.body);
    }

    // An mTLS peer cannot strip the XFCC header the server's sidecar sets.
    let cert = WorkloadCert::mint(&mesh, "default", "productpage").await;
    let reply = raw::send_mtls(
        inbound,
        &cert,
        &mesh.control_plane.ca_cert(),
        &raw::get(
            "/x",
            &[
                "Host: reviews",
                "Connection: close, x-forwarded-client-cert",
            ],
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let head = app.last_head().expect("a request");
    println!(
        "mTLS with Connection: x-forwarded-client-cert → app got {:?}",
        head.values("x-forwarded-client-cert")
    );
    assert_eq!(
        head.values("x-forwarded-client-cert"),
        [
            "By=spiffe://cluster.local/ns/default/sa/reviews;URI=spiffe://cluster.local/ns/default/sa/productpage"
        ],
    );
}
