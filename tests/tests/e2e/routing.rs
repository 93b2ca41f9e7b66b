//! Every match kind, AND within a match, OR across matches, first match
//! wins, and the local replies for no route (404) and no endpoint (503).
//!
//! Each route sends to its own subset, and each subset is one app behind
//! its own sidecar whose body names the subset, so every answer says which
//! route matched.

use futures_util::future::join_all;
use http::Method;
use remora_e2e::discovery::cluster_name;
use remora_e2e::{Backend, EVENT_TIMEOUT, Mesh, Protocol, ProxySpec, yaml};

/// One `http[]` entry: its name (= its subset) and its `match:` block.
const ROUTES: &[(&str, &str)] = &[
    ("uri-exact", "- uri: {exact: /exact}"),
    ("uri-prefix", "- uri: {prefix: /prefix/}"),
    ("uri-regex", "- uri: {regex: '/items/[0-9]+'}"),
    (
        "ignore-case",
        "- uri: {exact: /caseless}\n  ignoreUriCase: true",
    ),
    ("header-exact", "- headers: {x-exact: {exact: 'yes'}}"),
    ("header-prefix", "- headers: {x-prefix: {prefix: pre}}"),
    ("header-regex", "- headers: {x-regex: {regex: 'v[0-9]+'}}"),
    ("header-present", "- headers: {x-present: {}}"),
    ("authority", "- authority: {exact: reviews.default}"),
    ("method", "- method: {exact: DELETE}"),
    ("query", "- queryParams: {mode: {exact: canary}}"),
    (
        "and",
        "- uri: {prefix: /and}\n  method: {exact: POST}\n  headers: {x-and: {exact: '1'}}",
    ),
    ("or", "- uri: {exact: /or-a}\n- headers: {x-or: {exact: b}}"),
    ("shadow-broad", "- uri: {prefix: /shadow}"),
    ("shadow-narrow", "- uri: {exact: /shadow/specific}"),
    ("empty", "- uri: {prefix: /empty}"),
];

/// The subset no workload carries.
const EMPTY: &str = "empty";

fn virtual_service() -> String {
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\n\
         metadata:\n  name: reviews\n  namespace: default\n\
         spec:\n  hosts:\n    - reviews\n  http:\n",
    );
    for (name, matches) in ROUTES {
        y.push_str(&format!("    - name: {name}\n      match:\n"));
        for line in matches.lines() {
            y.push_str(&format!("        {line}\n"));
        }
        y.push_str(&format!(
            "      route:\n        - destination:\n            host: reviews\n            subset: {name}\n"
        ));
    }
    y
}

/// What a request should get: a route's subset, or a local reply.
#[derive(Debug, Clone, Copy)]
enum Want {
    Route(&'static str),
    NoRoute,
    NoEndpoint,
}

struct Case {
    host: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    want: Want,
}

fn get(path: &'static str, want: Want) -> Case {
    Case {
        host: "reviews",
        method: Method::GET,
        path,
        headers: &[],
        want,
    }
}

fn with(path: &'static str, headers: &'static [(&'static str, &'static str)], want: Want) -> Case {
    Case {
        headers,
        ..get(path, want)
    }
}

fn cases() -> Vec<Case> {
    use Want::*;
    vec![
        // uri: exact, prefix, regex (whole path, query ignored), case.
        get("/exact", Route("uri-exact")),
        get("/exact?x=1", Route("uri-exact")),
        get("/exact/more", NoRoute),
        get("/EXACT", NoRoute),
        get("/prefix/a/b", Route("uri-prefix")),
        get("/prefix", NoRoute),
        get("/items/42", Route("uri-regex")),
        get("/items/42x", NoRoute),
        get("/items/", NoRoute),
        get("/CaseLess", Route("ignore-case")),
        get("/caseless", Route("ignore-case")),
        // headers: exact, prefix, regex, present.
        with("/h", &[("x-exact", "yes")], Route("header-exact")),
        with("/h", &[("x-exact", "yes2")], NoRoute),
        with("/h", &[("x-prefix", "prefix-1")], Route("header-prefix")),
        with("/h", &[("x-prefix", "xpre")], NoRoute),
        with("/h", &[("x-regex", "v12")], Route("header-regex")),
        with("/h", &[("x-regex", "v12a")], NoRoute),
        with("/h", &[("x-present", "anything")], Route("header-present")),
        // authority.
        Case {
            host: "reviews.default",
            ..get("/a", Route("authority"))
        },
        get("/a", NoRoute),
        // method.
        Case {
            method: Method::DELETE,
            ..get("/m", Route("method"))
        },
        get("/m", NoRoute),
        // queryParams.
        get("/q?mode=canary", Route("query")),
        get("/q?other=1&mode=canary", Route("query")),
        get("/q?mode=canaryx", NoRoute),
        get("/q", NoRoute),
        // AND inside one match entry: all three or nothing.
        Case {
            method: Method::POST,
            ..with("/and", &[("x-and", "1")], Route("and"))
        },
        Case {
            method: Method::POST,
            ..with("/andmore", &[("x-and", "1")], Route("and"))
        },
        with("/and", &[("x-and", "1")], NoRoute),
        Case {
            method: Method::POST,
            ..get("/and", NoRoute)
        },
        // OR across match entries: either one.
        get("/or-a", Route("or")),
        with("/zzz", &[("x-or", "b")], Route("or")),
        get("/or-b", NoRoute),
        // First match wins: the earlier, broader route shadows the later one,
        // and an earlier route beats a later one that also matches.
        get("/shadow/specific", Route("shadow-broad")),
        get("/shadow", Route("shadow-broad")),
        with("/exact", &[("x-exact", "yes")], Route("uri-exact")),
        with(
            "/h",
            &[("x-exact", "yes"), ("x-prefix", "pre")],
            Route("header-exact"),
        ),
        // Local replies.
        get("/nothing", NoRoute),
        get("/empty", NoEndpoint),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_match_kind_and_first_match_wins() {
    let subsets: Vec<&str> = ROUTES.iter().map(|(name, _)| *name).collect();
    let mesh = Mesh::start(&[
        ("dr.yaml", &yaml::reviews_destination_rule(&subsets)),
        ("vs.yaml", &virtual_service()),
    ])
    .await;
    let with_endpoints: Vec<&str> = subsets.iter().copied().filter(|s| *s != EMPTY).collect();
    let backends = join_all(with_endpoints.iter().map(|s| Backend::start(s))).await;
    let specs: Vec<ProxySpec> = with_endpoints
        .iter()
        .zip(&backends)
        .map(|(s, b)| ProxySpec::sidecar("reviews", s, b.addr))
        .collect();
    let sidecars = join_all(specs.iter().map(|spec| mesh.proxy(spec))).await;
    let client = mesh.proxy(&ProxySpec::client("productpage")).await;
    for s in &with_endpoints {
        client
            .wait_endpoints(&cluster_name("reviews", "default", s), 1, EVENT_TIMEOUT)
            .await;
    }

    let cases = cases();
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut http = client.client(protocol);
        for c in &cases {
            let headers: Vec<(&str, &str)> = c.headers.to_vec();
            let what = format!(
                "{protocol:?} {} {} host={} headers={headers:?}",
                c.method, c.path, c.host
            );
            let reply = http
                .request(c.method.clone(), c.host, c.path, &headers)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
            match c.want {
                Want::Route(subset) => assert_eq!(
                    (reply.status.as_u16(), reply.body.trim()),
                    (200, subset),
                    "{what}"
                ),
                Want::NoRoute => {
                    assert_eq!(reply.status, 404, "{what}: {}", reply.body);
                    assert!(
                        reply.body.contains("no route matched"),
                        "{what}: 404 body says no route matched: {:?}",
                        reply.body
                    );
                }
                Want::NoEndpoint => {
                    assert_eq!(reply.status, 503, "{what}: {}", reply.body);
                    assert!(
                        reply.body.contains("reviews.default.svc.cluster.local")
                            && reply.body.contains(EMPTY),
                        "{what}: 503 body names service and subset: {:?}",
                        reply.body
                    );
                }
            }
        }
        // An unknown service is no route either.
        let reply = http.get("ratings", "/", &[]).await.expect("ratings");
        assert_eq!(reply.status, 404, "{}", reply.body);
        assert!(
            reply.body.contains("no route matched") && reply.body.contains("ratings"),
            "{:?}",
            reply.body
        );
    }
    let narrow = with_endpoints
        .iter()
        .position(|s| *s == "shadow-narrow")
        .expect("shadow-narrow");
    assert_eq!(backends[narrow].hits(), 0, "a shadowed route got traffic");
    drop(sidecars);
}
