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
    let mut proxy = mesh.proxy(&spec(&mesh, &app, &file)).await;

    // The stream opened with a 4 s certificate ends when it expires ...
    let expired = mesh
        .control_plane
        .process
        .wait_for(
            mark,
            EVENT_TIMEOUT,
            "the stream's certificate expired",
            |e| e.name() == "expired",
        )
        .await;
    println!("control plane: {}", expired.value);
    assert!(
        expired
            .str("reason")
            .contains("reconnect with the renewed certificate"),
        "{}",
        expired.value
    );
    // ... the proxy is told why, and comes back with its renewed certificate.
    let told = proxy
        .process
        .wait_for(0, EVENT_TIMEOUT, "the proxy told why", |e| {
            e.name() == "refused" && e.str("reason").contains("expired")
        })
        .await;
    println!("proxy: {}", told.value);
    let after = mesh.control_plane.process.mark();
    mesh.control_plane
        .process
        .wait_for(after, EVENT_TIMEOUT, "the proxy reconnected", |e| {
            e.name() == "connected" && e.str("service") == "reviews"
        })
        .await;
    let (status, _) = proxy.health().await.expect("health");
    assert_eq!(status, 200, "the proxy kept serving");
}
