//! Certificates rotate under load without a failed request, and a restarted
//! control plane keeps its CA: what it issued before still verifies, and
//! what it issues after is trusted by proxies certified before.

use std::time::Duration;

use remora_e2e::load::failures;
use remora_e2e::secure::{Tokens, with_identity};
use remora_e2e::{DemoApp, EVENT_TIMEOUT, Load, Mesh, Protocol, Proxy, ProxySpec};
use tokio::process::Command;

const REVIEWS: &str = "|reviews.default.svc.cluster.local";
const SETTLE: Duration = Duration::from_secs(15);
/// Short enough for several rotations in a test, long enough for a loaded
/// 2-core machine to renew in time (renewal starts half-way, at ~3 s).
const LIFETIME: &str = "6s";

async fn sidecar(mesh: &Mesh, tokens: &Tokens, app: &DemoApp, lifetime: Option<&str>) -> Proxy {
    let mut spec = with_identity(
        ProxySpec::sidecar("reviews", "v1", app.addr),
        mesh,
        tokens,
        "reviews",
    );
    if let Some(l) = lifetime {
        spec = spec.arg("--cert-lifetime", l);
    }
    mesh.proxy(&spec).await
}

async fn client(mesh: &Mesh, tokens: &Tokens, name: &str, lifetime: Option<&str>) -> Proxy {
    let mut spec = with_identity(ProxySpec::client(name), mesh, tokens, name);
    if let Some(l) = lifetime {
        spec = spec.arg("--cert-lifetime", l);
    }
    let p = mesh.proxy(&spec).await;
    p.wait_endpoints(REVIEWS, 1, SETTLE).await;
    p
}

/// The serial of the certificate a fresh TLS connection to `addr` is shown,
/// lower-case hex without leading zeros.
async fn presented_serial(addr: std::net::SocketAddr) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .kill_on_drop(true)
        .output()
        .await
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    normal_serial(text.trim().trim_start_matches("serial="))
}

fn normal_serial(hex: &str) -> String {
    let s = hex.trim().to_ascii_lowercase().replace(':', "");
    let s = s.trim_start_matches('0');
    s.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_rotate_under_load_without_a_failed_request() {
    let mesh = Mesh::start_secure(&[]).await;
    let tokens = Tokens::new();
    let app = DemoApp::start("reviews", "v1").await;
    let mut server = sidecar(&mesh, &tokens, &app, Some(LIFETIME)).await;
    let mut front = client(&mesh, &tokens, "productpage", Some(LIFETIME)).await;
    let (server_mark, front_mark) = (server.process.mark(), front.process.mark());

    let load = Load::start(front.outbound, "reviews", "/", 4, Duration::from_secs(60));
    load.wait_more(100, Duration::from_secs(10)).await;
    // Three renewals on each side while the load runs.
    for (proxy, mark) in [(&mut server, server_mark), (&mut front, front_mark)] {
        proxy
            .process
            .wait_for(mark, EVENT_TIMEOUT, "third renewal (`certificate`)", |e| {
                // Event fields are strings.
                e.name() == "certificate" && e.str("renewal").parse::<u32>().is_ok_and(|n| n >= 3)
            })
            .await;
    }
    let samples = load.stop().await;
    let failed = failures(&samples);

    // The server sidecar's discovery stream ends with each certificate it
    // was opened with; its successor, opened with the renewed one, is
    // connected first (make before break), so its registration never
    // lapses and no client config loses `reviews` for a moment.
    let events = mesh.control_plane.process.events_since(0);
    let server_node = events
        .iter()
        .find(|e| e.name() == "connected" && e.str("service") == "reviews")
        .map(|e| e.str("node").to_owned())
        .expect("the server sidecar connected");
    let (mut open, mut replaced) = (0i32, 0);
    for e in events.iter().filter(|e| e.str("node") == server_node) {
        match e.name() {
            "connected" => open += 1,
            "disconnected" => {
                open -= 1;
                replaced += 1;
                assert!(
                    open > 0,
                    "{server_node}'s registration lapsed: its stream ended with no successor connected"
                );
            }
            _ => {}
        }
    }
    println!("server sidecar: {replaced} discovery streams replaced make-before-break");
    assert!(
        replaced >= 2,
        "streams replaced across rotations: {replaced}"
    );
    let serials = |p: &Proxy| -> Vec<String> {
        p.process
            .events_since(0)
            .iter()
            .filter(|e| e.name() == "certificate")
            .map(|e| e.str("serial").to_owned())
            .collect()
    };
    let (server_serials, front_serials) = (serials(&server), serials(&front));
    println!(
        "rotation: {} requests, {} failed; server certificates {}, client certificates {}",
        samples.len(),
        failed.len(),
        server_serials.len(),
        front_serials.len()
    );
    assert!(
        failed.is_empty(),
        "failed requests across rotations: {failed:?}"
    );
    assert!(samples.len() >= 200, "too little load: {}", samples.len());
    for (who, s) in [("server", &server_serials), ("client", &front_serials)] {
        assert!(
            s.len() >= 4,
            "{who}: first certificate and three renewals: {s:?}"
        );
        let mut unique = s.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            s.len(),
            "{who}: every renewal is a new certificate"
        );
    }

    // New connections use the newest certificate: a fresh handshake with the
    // server sidecar is shown the serial of its last `certificate` event (or
    // the one before, if a renewal landed during the handshake)...
    let shown = presented_serial(server.inbound.expect("inbound")).await;
    let recent: Vec<String> = serials(&server)
        .iter()
        .rev()
        .take(2)
        .map(|s| normal_serial(s))
        .collect();
    println!("fresh handshake shown serial {shown}; latest certificates {recent:?}");
    assert!(
        recent.contains(&shown),
        "fresh handshake showed serial {shown}, the latest are {recent:?}"
    );
    // ...and a proxy that arrives now trusts it.
    let late = client(&mesh, &tokens, "late", None).await;
    let reply = late
        .client(Protocol::Http1)
        .get("reviews", "/echo", &[])
        .await
        .expect("request from a late proxy");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_control_plane_keeps_its_ca() {
    let mut mesh = Mesh::start_secure(&[]).await;
    let tokens = Tokens::new();
    let app = DemoApp::start("reviews", "v1").await;
    let server = sidecar(&mesh, &tokens, &app, None).await;
    let before = client(&mesh, &tokens, "productpage", None).await;
    let ca_before = std::fs::read_to_string(mesh.control_plane.ca_cert()).expect("CA cert");

    mesh.kill_control_plane().await;
    mesh.restart_control_plane().await;
    let ca_after = std::fs::read_to_string(mesh.control_plane.ca_cert()).expect("CA cert");
    assert_eq!(ca_before, ca_after, "the CA changed across a restart");

    // Certificates from before the restart still verify: a proxy certified
    // by the restarted control plane talks to one certified before it, over
    // a new connection, and the old pair keeps working.
    let after = client(&mesh, &tokens, "ratings", None).await;
    for (who, proxy) in [("before", &before), ("after", &after)] {
        let reply = proxy
            .client(Protocol::Http1)
            .get("reviews", "/echo", &[])
            .await
            .unwrap_or_else(|e| panic!("{who}: {e:#}"));
        assert_eq!(reply.status, 200, "{who}: {}", reply.body);
        let xfcc = reply
            .headers
            .get("x-echo-x-forwarded-client-cert")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(xfcc.contains("URI=spiffe://"), "{who}: not mTLS: {xfcc:?}");
    }
    drop(server);
}
