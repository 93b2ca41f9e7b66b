//! What a credential is worth, and for how long (issue 15): a single-use
//! bootstrap token gets one certificate and is refused after, also once the
//! control plane restarts, while the proxy that used it renews with its
//! certificate; a discovery stream lasts no longer than the certificate
//! that authenticated it.

use std::path::Path;

use remora_e2e::backend::Backend;
use remora_e2e::secure::token_file;
use remora_e2e::{EVENT_TIMEOUT, Mesh, Proxy, ProxySpec};

/// A sidecar for `reviews` with `token`, renewing every couple of seconds.
fn spec(mesh: &Mesh, app: &Backend, token: &Path) -> ProxySpec {
    ProxySpec::sidecar("reviews", "v1", app.addr)
        .arg("--service-account", "reviews")
        .arg("--token-file", &token.to_string_lossy())
        .arg("--ca-cert", &mesh.control_plane.ca_cert().to_string_lossy())
        .arg("--ca-address", &mesh.control_plane.grpc_tls.to_string())
        .arg("--cert-lifetime", "4s")
}

/// Starts a proxy with `spec` and waits for it to exit, refused; returns its stderr.
async fn refused(mesh: &Mesh, spec: &ProxySpec) -> String {
    let mut proxy = Proxy::start(spec, &mesh.control_plane.url()).await;
    let status = proxy.process.wait_exit(EVENT_TIMEOUT).await;
    let stderr = proxy.process.stderr_tail();
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second proxy with a used single-use token should stop: {status:?}\n{stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_use_token_gets_one_certificate_and_is_refused_after_even_across_a_restart() {
    let mut mesh = Mesh::start(&[]).await;
    let app = Backend::start("reviews").await;
    let dir = tempfile::tempdir().expect("dir");
    let token =
        mesh.control_plane
            .token_with("default", "reviews", &["--ttl", "1h", "--single-use"]);
    let file = token_file(dir.path(), "reviews.token", &token);
    let spec = spec(&mesh, &app, &file);

    // The first proxy bootstraps with it, and keeps renewing.
    let mut first = mesh.proxy(&spec).await;
    let mark = first.process.mark();
    first
        .process
        .wait_for(mark, EVENT_TIMEOUT, "a renewal (`certificate`)", |e| {
            e.name() == "certificate" && e.str("renewal").parse::<u32>().is_ok_and(|n| n >= 2)
        })
        .await;

    // A second proxy with the same token is refused, with the reason.
    let stderr = refused(&mesh, &spec).await;
    println!("second use: {}", stderr.lines().last().unwrap_or_default());
    assert!(stderr.contains("was already used"), "{stderr}");

    // The control plane remembers across a restart.
    mesh.kill_control_plane().await;
    mesh.restart_control_plane().await;
    let stderr = refused(&mesh, &spec).await;
    assert!(stderr.contains("was already used"), "{stderr}");
    // ... and the first proxy still renews with its certificate.
    let mark = first.process.mark();
    first
        .process
        .wait_for(mark, EVENT_TIMEOUT, "a renewal after the restart", |e| {
            e.name() == "certificate" && !e.str("renewal").is_empty()
        })
        .await;

    // A token made without --single-use can be used again: what the flag changes.
    let reusable = mesh
        .control_plane
        .token_with("default", "reviews", &["--ttl", "1h"]);
    let file = token_file(dir.path(), "reusable.token", &reusable);
    let _a = mesh.proxy(&self::spec(&mesh, &app, &file)).await;
    let _b = mesh.proxy(&self::spec(&mesh, &app, &file)).await;

    // --single-use without --ttl is refused by `remora token create`.
    let out = std::process::Command::new(remora_e2e::binaries::bin("remora"))
        .args([
            "token",
            "create",
            "-n",
            "default",
            "-s",
            "reviews",
            "--single-use",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("remora token create");
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_discovery_stream_ends_when_its_client_certificate_expires_and_the_proxy_reconnects() {
    let mut mesh = Mesh::start(&[]).await;
    let app = Backend::start("reviews").await;
    let dir = tempfile::tempdir().expect("dir");
    let token = mesh.control_plane.token("default", "reviews");
    let file = token_file(dir.path(), "reviews.token", &token);
    let mark = mesh.control_plane.process.mark();
    let proxy = mesh.proxy(&spec(&mesh, &app, &file)).await;

    // A proxy that renews opens its next stream with the renewed
    // certificate before the control plane would end the first (make
    // before break): a second `connected`, and no `expired`.
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let events = mesh.control_plane.process.events_since(mark);
        let streams = events
            .iter()
            .filter(|e| e.name() == "connected" && e.str("service") == "reviews")
            .count();
        assert!(
            !events.iter().any(|e| e.name() == "expired"),
            "a renewing proxy's stream was ended by its certificate's expiry"
        );
        if streams >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second stream after a renewal"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A proxy that does not renew in time (stopped here) has its stream
    // ended by the control plane when the certificate that opened it
    // expires...
    let pid = proxy.process.pid().expect("pid").to_string();
    let signal = |sig: &str| {
        let out = std::process::Command::new("kill")
            .args([sig, &pid])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill {sig} {pid}");
    };
    let stopped = mesh.control_plane.process.mark();
    signal("-STOP");
    let expired = mesh
        .control_plane
        .process
        .wait_for(
            stopped,
            EVENT_TIMEOUT,
            "the stream's certificate expired",
            |e| e.name() == "expired",
        )
        .await;
    signal("-CONT");
    println!("control plane: {}", expired.value);
    assert!(
        expired
            .str("reason")
            .contains("reconnect with the renewed certificate"),
        "{}",
        expired.value
    );
    // ... and the proxy, resumed, is registered again with a renewed
    // certificate: by the successor it had opened before it stopped, or by a
    // new stream once it reads why the old one ended (a `refused` event).
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let open: i32 = mesh
            .control_plane
            .process
            .events_since(0)
            .iter()
            .map(|e| match e.name() {
                "connected" if e.str("service") == "reviews" => 1,
                "disconnected" => -1,
                _ => 0,
            })
            .sum();
        let ended = mesh
            .control_plane
            .process
            .events_since(stopped)
            .iter()
            .any(|e| e.name() == "disconnected");
        let (status, _) = proxy.health().await.expect("health");
        if ended && open >= 1 && status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the resumed proxy is not registered again ({open} streams) or not ready ({status})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut proxy_log = proxy.process.events_since(0);
    proxy_log.retain(|e| e.name() == "refused");
    println!(
        "proxy refusals seen: {:?}",
        proxy_log.iter().map(|e| &e.value).collect::<Vec<_>>()
    );
}
