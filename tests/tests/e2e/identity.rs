//! The proxy's workload identity against the real control plane, both as processes: the
//! first certificate over TLS and over plaintext, `/certs`, renewal before expiry, a refused
//! token stopping the proxy with the CA's message, and no token meaning no mTLS.

use std::time::{Duration, SystemTime};

use remora_e2e::secure::{certs, pem_blocks, ready_status, token_file};
use remora_e2e::{ControlPlane, Event, Process, Proxy, ProxySpec};
use serde_json::Value;
use tempfile::TempDir;

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
/// The certificate lifetime the proxies ask for: short, so that renewal happens in the test.
const LIFETIME: Duration = Duration::from_secs(4);
/// How long the proxy may take to start, ask for and install its first certificate.
const FIRST_CERTIFICATE: Duration = Duration::from_secs(20);

/// A control plane over an empty config directory (kept alive by the returned `TempDir`).
async fn control_plane() -> (ControlPlane, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cp = ControlPlane::start(dir.path(), "127.0.0.1:0".parse().expect("addr")).await;
    (cp, dir)
}

/// A client-only proxy for `reviews` with a token file for `service_account` and `args`.
fn reviews(cp: &ControlPlane, dir: &TempDir, service_account: &str, args: &[&str]) -> ProxySpec {
    let token = token_file(dir.path(), "token", &cp.token("default", service_account));
    let mut spec = ProxySpec::client("reviews")
        .arg("--token-file", &token.to_string_lossy())
        .arg("--cert-lifetime", &format!("{}s", LIFETIME.as_secs()));
    for pair in args.chunks(2) {
        spec = spec.arg(pair[0], pair[1]);
    }
    spec
}

/// How the control plane authenticated each of its first `n` certificates (`via` of its
/// `signed` events), waiting for them: the proxy may report a certificate before the control
/// plane's own line about it has been read.
async fn signed_via(cp: &mut ControlPlane, n: usize) -> Vec<String> {
    let mut via = Vec::new();
    for _ in 0..n {
        let signed = cp.process.wait_event("signed", FIRST_CERTIFICATE).await;
        via.push(signed["via"].as_str().unwrap_or_default().to_owned());
    }
    via
}

/// Every event called `name` that `process` printed so far.
fn events(process: &Process, name: &str) -> Vec<Event> {
    process
        .events_since(0)
        .into_iter()
        .filter(|e| e.name() == name)
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn int(value: &Value, key: &str) -> i64 {
    match &value[key] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("no integer `{key}` in {value}"))
}

fn check_certificate_event(event: &Event, renewal: &str) {
    assert_eq!(event.str("spiffe_id"), REVIEWS, "{:?}", event.value);
    assert_eq!(event.str("renewal"), renewal, "{:?}", event.value);
    let serial = event.str("serial");
    assert!(
        !serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit()),
        "serial {serial:?}"
    );
    let not_after = int(&event.value, "not_after_unix");
    let left = not_after - unix_now();
    assert!(
        (0..=LIFETIME.as_secs() as i64 + 1).contains(&left),
        "the certificate is valid for the requested {LIFETIME:?}: {left} s left"
    );
}

#[tokio::test]
async fn a_proxy_gets_its_identity_over_tls_and_renews_it_within_the_lifetime() {
    let (mut cp, dir) = control_plane().await;
    let ca_cert = cp.ca_cert();
    let spec = reviews(
        &cp,
        &dir,
        "reviews",
        &[
            "--ca-cert",
            &ca_cert.to_string_lossy(),
            "--ca-address",
            &cp.grpc_tls.to_string(),
        ],
    );
    let mut proxy = Proxy::start(&spec, &cp.url()).await;

    let identity = proxy
        .process
        .wait_event("identity", FIRST_CERTIFICATE)
        .await;
    assert_eq!(identity["mtls"], "on", "{identity}");
    assert_eq!(identity["transport"], "tls", "{identity}");
    assert_eq!(identity["ca"], cp.grpc_tls.to_string(), "{identity}");
    let first = proxy
        .process
        .wait_event_at("certificate", FIRST_CERTIFICATE)
        .await;
    check_certificate_event(&first, "0");
    proxy.wait_ready().await;
    assert_eq!(ready_status(proxy.admin).await, 200);

    // The CA signed it on its TLS port with the token.
    let signed = cp.process.wait_event("signed", FIRST_CERTIFICATE).await;
    assert_eq!(signed["spiffe_id"], REVIEWS, "{signed}");
    assert_eq!(signed["via"], "token", "{signed}");

    let shown = certs(proxy.admin).await;
    assert_eq!(shown["identity"], REVIEWS, "{shown}");
    assert_eq!(shown["serial"], first.str("serial"), "{shown}");
    let not_before = int(&shown, "not_before_unix");
    let not_after = int(&shown, "not_after_unix");
    let renew_at = int(&shown, "renew_at_unix");
    assert_eq!(not_after, int(&first.value, "not_after_unix"));
    assert!(
        not_before < renew_at && renew_at < not_after,
        "renewal is scheduled within the validity: {shown}"
    );
    let chain = shown["chain_pem"].as_str().expect("chain_pem");
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"), "{chain}");
    assert_eq!(
        pem_blocks(chain).len(),
        1,
        "a root CA issues the leaf alone"
    );
    let bundle = shown["trust_bundle_pem"]
        .as_str()
        .expect("trust_bundle_pem");
    let ca_pem = std::fs::read_to_string(&ca_cert).expect("ca-cert.pem");
    assert_eq!(pem_blocks(bundle), pem_blocks(&ca_pem));
    assert!(!shown.to_string().contains("PRIVATE KEY"), "{shown}");

    // Renewal: a new certificate (new serial) before the first one expires.
    let second = proxy
        .process
        .wait_event_at("certificate", LIFETIME + Duration::from_secs(2))
        .await;
    check_certificate_event(&second, "1");
    assert_ne!(second.str("serial"), first.str("serial"));
    let after = second.at - first.at;
    assert!(
        after < LIFETIME && after >= LIFETIME / 4,
        "renewed {after:?} after the first certificate; it lives {LIFETIME:?}"
    );
    let shown = certs(proxy.admin).await;
    assert_eq!(shown["serial"], second.str("serial"), "{shown}");
    assert_eq!(shown["renewals"], 1, "{shown}");
    assert_eq!(ready_status(proxy.admin).await, 200);
    let errors = proxy.process.events_since(0);
    assert!(
        errors.iter().all(|e| e.name() != "certificate_error"),
        "{errors:?}"
    );
    proxy.process.kill().await;
    cp.process.kill().await;
}

#[tokio::test]
async fn a_token_for_another_service_account_stops_the_proxy_with_the_cas_refusal() {
    let (mut cp, dir) = control_plane().await;
    let spec = reviews(
        &cp,
        &dir,
        "ratings",
        &[
            "--ca-cert",
            &cp.ca_cert().to_string_lossy(),
            "--ca-address",
            &cp.grpc_tls.to_string(),
        ],
    );
    let mut proxy = Proxy::start(&spec, &cp.url()).await;
    let error = proxy
        .process
        .wait_event("certificate_error", FIRST_CERTIFICATE)
        .await;
    let message = error["error"].as_str().expect("error");
    assert_eq!(error["phase"], "bootstrap", "{error}");
    assert!(message.contains("the CA refused"), "{message}");
    // The CA's own words: the identity requested and the one the token allows.
    assert!(message.contains(REVIEWS), "{message}");
    assert!(
        message.contains("spiffe://cluster.local/ns/default/sa/ratings"),
        "{message}"
    );
    let status = proxy
        .process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the proxy exits");
    assert!(!status.success(), "{status:?}");
    let events = proxy.process.events_since(0);
    assert!(
        events
            .iter()
            .all(|e| e.name() != "ready" && e.name() != "certificate"),
        "{events:?}"
    );
    assert!(
        proxy
            .process
            .stderr_tail()
            .contains("no workload certificate"),
        "{}",
        proxy.process.stderr_tail()
    );
    cp.process.kill().await;
}

#[tokio::test]
async fn while_the_ca_cannot_be_reached_the_health_admin_and_metrics_ports_answer_503_why() {
    let (mut cp, dir) = control_plane().await;
    // A port nothing listens on: the CA stays unreachable, the proxy retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let spec = reviews(
        &cp,
        &dir,
        "reviews",
        &[
            "--ca-cert",
            &cp.ca_cert().to_string_lossy(),
            "--ca-address",
            &nowhere,
        ],
    );
    let mut proxy = Proxy::start(&spec, &cp.url()).await;
    let error = proxy
        .process
        .wait_event("certificate_error", FIRST_CERTIFICATE)
        .await;
    assert_eq!(error["phase"], "bootstrap", "{error}");
    for (port, path) in [
        (proxy.health, "/healthz/ready"),
        (proxy.admin, "/ready"),
        (proxy.stats, "/stats/prometheus"),
    ] {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            remora_e2e::HttpClient::new(port, remora_e2e::Protocol::Http1).get(
                "localhost",
                path,
                &[],
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} on {port} hangs"))
        .unwrap_or_else(|e| panic!("{path} on {port}: {e:#}"));
        assert_eq!(reply.status, 503, "{path}: {}", reply.body);
        assert!(
            reply.body.contains("no workload certificate yet") && reply.body.contains(&nowhere),
            "{path} says why: {}",
            reply.body
        );
    }
    cp.process.kill().await;
}

#[tokio::test]
async fn without_a_ca_cert_the_first_certificate_comes_over_plaintext_with_a_warning() {
    let (mut cp, dir) = control_plane().await;
    // No --ca-cert and no --ca-address: Sign goes to --control-plane itself.
    let spec = reviews(&cp, &dir, "reviews", &[]);
    let mut proxy = Proxy::start(&spec, &cp.url()).await;
    let warning = proxy.process.wait_event("warning", FIRST_CERTIFICATE).await;
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.contains("travels in clear")),
        "{warning}"
    );
    let identity = proxy
        .process
        .wait_event("identity", FIRST_CERTIFICATE)
        .await;
    assert_eq!(identity["transport"], "plaintext", "{identity}");
    assert_eq!(identity["ca"], cp.grpc.to_string(), "{identity}");
    let first = proxy
        .process
        .wait_event_at("certificate", FIRST_CERTIFICATE)
        .await;
    check_certificate_event(&first, "0");
    proxy.wait_ready().await;
    let shown = certs(proxy.admin).await;
    assert_eq!(shown["identity"], REVIEWS, "{shown}");
    // The bundle the CA sent is the control plane's CA.
    let ca_pem = std::fs::read_to_string(cp.ca_cert()).expect("ca-cert.pem");
    let bundle = shown["trust_bundle_pem"].as_str().expect("bundle");
    assert_eq!(pem_blocks(bundle), pem_blocks(&ca_pem));
    proxy.process.kill().await;
    cp.process.kill().await;
}

#[tokio::test]
async fn after_a_plaintext_bootstrap_renewals_go_over_tls_with_the_certificate() {
    // The token lives 3 to 4 s (its expiry is in whole seconds), time enough for the first
    // certificate even on a loaded machine; the certificate lives 10 s, so the first renewal
    // comes 4.5 to 5.5 s after it, once the token has expired. Over plaintext nothing else
    // could authenticate it.
    const LIVES: Duration = Duration::from_secs(10);
    let (mut cp, dir) = control_plane().await;
    let token = cp.token_with("default", "reviews", &["--ttl", "4s"]);
    let token = token_file(dir.path(), "token", &token);
    let spec = ProxySpec::client("reviews")
        .arg("--token-file", &token.to_string_lossy())
        .arg("--cert-lifetime", &format!("{}s", LIVES.as_secs()));
    let mut proxy = Proxy::start(&spec, &cp.url()).await;

    let first = proxy
        .process
        .wait_event_at("certificate", FIRST_CERTIFICATE)
        .await;
    assert_eq!(first.str("renewal"), "0", "{:?}", first.value);
    // The proxy says where renewals go right after the first certificate is in.
    proxy
        .process
        .wait_for(0, FIRST_CERTIFICATE, "a second `identity` event", |e| {
            e.name() == "identity" && e.str("phase") == "renewal"
        })
        .await;
    let identities: Vec<Value> = events(&proxy.process, "identity")
        .into_iter()
        .map(|e| e.value)
        .collect();
    assert_eq!(identities.len(), 2, "{identities:?}");
    assert_eq!(identities[0]["transport"], "plaintext", "{identities:?}");
    assert_eq!(identities[1]["transport"], "tls", "{identities:?}");
    assert_eq!(identities[1]["phase"], "renewal", "{identities:?}");
    assert_eq!(
        identities[1]["ca"],
        cp.grpc_tls.to_string(),
        "{identities:?}"
    );

    // Two renewals, both after the token expired.
    for n in ["1", "2"] {
        let renewal = proxy
            .process
            .wait_event_at("certificate", LIVES + Duration::from_secs(2))
            .await;
        assert_eq!(renewal.str("renewal"), n, "{:?}", renewal.value);
        assert_eq!(renewal.str("spiffe_id"), REVIEWS, "{:?}", renewal.value);
    }
    assert_eq!(
        signed_via(&mut cp, 3).await,
        ["token", "certificate", "certificate"]
    );
    let fell_back = events(&proxy.process, "warning")
        .iter()
        .filter(|e| e.str("message").contains("renewing over plaintext"))
        .count();
    assert_eq!(fell_back, 0, "the TLS port was reachable");
    assert_eq!(ready_status(proxy.admin).await, 200);
    proxy.process.kill().await;
    cp.process.kill().await;
}

#[tokio::test]
async fn renewals_go_over_plaintext_with_a_warning_while_the_tls_port_is_unreachable() {
    // The proxy reaches the control plane at 127.0.0.2; its TLS port listens on 127.0.0.1
    // only, so the TLS address the proxy derives refuses connections.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cp = ControlPlane::start(dir.path(), "127.0.0.2:0".parse().expect("addr")).await;
    assert_eq!(cp.grpc_tls.ip().to_string(), "127.0.0.1");
    let spec = reviews(&cp, &dir, "reviews", &[]);
    let mut proxy = Proxy::start(&spec, &cp.url()).await;
    let first = proxy
        .process
        .wait_event_at("certificate", FIRST_CERTIFICATE)
        .await;
    check_certificate_event(&first, "0");
    let renewal = proxy
        .process
        .wait_event_at("certificate", LIFETIME + Duration::from_secs(2))
        .await;
    check_certificate_event(&renewal, "1");
    let unreachable = format!("cannot reach the CA at 127.0.0.2:{}", cp.grpc_tls.port());
    let instead = format!("renewing over plaintext at {} instead", cp.grpc);
    let warnings: Vec<String> = events(&proxy.process, "warning")
        .iter()
        .map(|e| e.str("message").to_owned())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&unreachable) && w.contains(&instead)),
        "{warnings:?}"
    );
    assert_eq!(signed_via(&mut cp, 2).await, ["token", "token"]);
    proxy.process.kill().await;
    cp.process.kill().await;
}

#[tokio::test]
async fn without_a_token_the_proxy_serves_plaintext_and_certs_says_why() {
    let (mut cp, _dir) = control_plane().await;
    let mut proxy = Proxy::start(&ProxySpec::client("reviews"), &cp.url()).await;
    let identity = proxy
        .process
        .wait_event("identity", FIRST_CERTIFICATE)
        .await;
    assert_eq!(identity["mtls"], "off", "{identity}");
    proxy.wait_ready().await;
    assert_eq!(ready_status(proxy.admin).await, 200);
    let shown = certs(proxy.admin).await;
    assert_eq!(
        shown,
        serde_json::json!({ "identity": null, "reason": "no token: mTLS is off" })
    );
    proxy.process.kill().await;
    cp.process.kill().await;
}
