//! The proxy admin API's documented shapes, from real proxies: a `reviews`
//! sidecar without identity (plaintext) and a `productpage` client proxy
//! with a certificate from the control plane's CA.

use std::net::SocketAddr;
use std::time::Duration;

use remora_e2e::secure::{Tokens, with_identity};
use remora_e2e::{Backend, HttpClient, Mesh, Protocol, ProxySpec, Reply, yaml};
use serde_json::Value;

const REVIEWS_V1: &str = "v1|reviews.default.svc.cluster.local";

async fn admin_get(admin: SocketAddr, path: &str) -> Reply {
    HttpClient::new(admin, Protocol::Http1)
        .get("admin", path, &[])
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
}

/// `GET path` answered 200 with a JSON body; the body.
async fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let reply = admin_get(admin, path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/json"), "{path}");
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", reply.body))
}

/// A `/stats` line: `name{labels} value` or `name value`.
fn is_stats_line(line: &str) -> bool {
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let name = match series.split_once('{') {
        Some((name, labels)) => {
            if !labels.ends_with('}') {
                return false;
            }
            name
        }
        None => series,
    };
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    name_ok && value.parse::<f64>().is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_answer_in_their_documented_shapes() {
    let mesh = Mesh::start(&[
        ("dr.yaml", &yaml::reviews_destination_rule(&["v1"])),
        ("vs.yaml", &yaml::reviews_canary(100, 0)),
    ])
    .await;
    let tokens = Tokens::new();
    let app = Backend::start("v1").await;
    let sidecar = mesh
        .proxy(&ProxySpec::sidecar("reviews", "v1", app.addr))
        .await;
    let client = mesh
        .proxy(&with_identity(
            ProxySpec::client("productpage"),
            &mesh,
            &tokens,
            "productpage",
        ))
        .await;
    client
        .wait_endpoints(REVIEWS_V1, 1, Duration::from_secs(10))
        .await;
    let reply = client
        .client(Protocol::Http1)
        .get("reviews", "/echo", &[])
        .await
        .expect("request through the mesh");
    assert_eq!(reply.status, 200, "{}", reply.body);

    // /ready: 200 "ready".
    let ready = admin_get(client.admin, "/ready").await;
    assert_eq!(
        (ready.status.as_u16(), ready.body.trim_end()),
        (200, "ready")
    );

    // /config_dump: the version and the snapshot as applied.
    let dump = admin_json(client.admin, "/config_dump").await;
    let version = dump["version"].as_str().expect("version is a string");
    assert!(!version.is_empty(), "{dump}");
    let dumped: Vec<&str> = dump["snapshot"]["clusters"]
        .as_array()
        .expect("snapshot.clusters[]")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(dumped.contains(&REVIEWS_V1), "{dumped:?}");

    // /clusters: every endpoint with its load and ejection state.
    let clusters = admin_json(client.admin, "/clusters").await;
    assert_eq!(clusters["version"].as_str(), Some(version));
    let v1 = clusters["clusters"]
        .as_array()
        .expect("clusters[]")
        .iter()
        .find(|c| c["name"] == REVIEWS_V1)
        .unwrap_or_else(|| panic!("no {REVIEWS_V1} in {clusters}"));
    let endpoints = v1["endpoints"].as_array().expect("endpoints[]");
    assert_eq!(endpoints.len(), 1, "{v1}");
    let endpoint = &endpoints[0];
    let inbound = sidecar.inbound.expect("sidecar inbound").to_string();
    assert_eq!(endpoint["address"].as_str(), Some(inbound.as_str()));
    assert!(endpoint["active_requests"].is_u64(), "{endpoint}");
    assert!(endpoint["open_connections"].is_u64(), "{endpoint}");
    assert_eq!(endpoint["ejected"], Value::Bool(false), "{endpoint}");

    // /certs with an identity: the SVID in force.
    let certs = admin_json(client.admin, "/certs").await;
    assert_eq!(
        certs["identity"].as_str(),
        Some("spiffe://cluster.local/ns/default/sa/productpage"),
        "{certs}"
    );
    assert!(
        certs["serial"].as_str().is_some_and(|s| !s.is_empty()),
        "{certs}"
    );
    assert!(certs["not_after_unix"].is_i64(), "{certs}");
    let chain = certs["chain_pem"].as_str().expect("chain_pem");
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"), "{chain}");
    // ... and without one: null, and why.
    let none = admin_json(sidecar.admin, "/certs").await;
    assert_eq!(none["identity"], Value::Null, "{none}");
    assert!(
        none["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{none}"
    );

    // /stats: `name{labels} value` lines, the request just sent among them.
    let stats = admin_get(client.admin, "/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let lines: Vec<&str> = stats
        .body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "/stats is empty");
    let bad: Vec<&&str> = lines.iter().filter(|l| !is_stats_line(l)).collect();
    assert!(bad.is_empty(), "lines not `name{{labels}} value`: {bad:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("remora_requests_total{")),
        "{}",
        stats.body
    );

    // GET /logging: the filter in force.
    let logging = admin_get(client.admin, "/logging").await;
    assert_eq!(logging.status, 200, "{}", logging.body);
    assert!(logging.body.starts_with("level: "), "{}", logging.body);

    // An unknown path: 404 naming every endpoint.
    let unknown = admin_get(client.admin, "/nope").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    for endpoint in [
        "/ready",
        "/config_dump",
        "/clusters",
        "/certs",
        "/stats",
        "/logging",
    ] {
        assert!(
            unknown.body.contains(endpoint),
            "the 404 lists {endpoint}: {}",
            unknown.body
        );
    }
}
