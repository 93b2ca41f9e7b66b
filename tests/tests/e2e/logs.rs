//! What the binaries write to stderr: logs written to a pipe (as under
//! `docker logs`, systemd or a file) are plain text, without terminal colour
//! codes; a warning or a fatal error names its cause, once.

use std::time::Duration;

use remora_e2e::{Mesh, Proxy, ProxySpec, bin};

#[tokio::test(flavor = "multi_thread")]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let mesh = Mesh::start(&[]).await;
    let proxy = mesh.proxy(&ProxySpec::client("productpage")).await;
    for (who, tail) in [
        ("control plane", mesh.control_plane.process.stderr_tail()),
        ("proxy", proxy.process.stderr_tail()),
    ] {
        assert!(
            tail.contains("INFO"),
            "{who} logged no INFO line to check:\n{tail}"
        );
        assert!(
            !tail.contains('\u{1b}'),
            "{who} wrote terminal escape codes to a pipe:\n{tail:?}"
        );
    }
}

/// A control plane nobody listens on: the proxy's warning names the cause
/// (the refused connection), not only tonic's "transport error".
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_control_plane_is_logged_with_its_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let proxy = Proxy::start(
        &ProxySpec::client("productpage"),
        &format!("http://{closed}"),
    )
    .await;
    let mut tail = String::new();
    for _ in 0..100 {
        tail = proxy.process.stderr_tail();
        if tail.contains("discovery stream failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = tail
        .lines()
        .find(|l| l.contains("discovery stream failed"))
        .unwrap_or_else(|| panic!("no discovery warning within 10 s:\n{tail}"));
    assert!(
        line.contains("cannot connect") && line.contains("Connection refused"),
        "the warning does not say why: {line}"
    );
}

/// Runs `program` with `args` (and `RUST_BACKTRACE=1`, which must not turn a
/// configuration error into a stack trace) until it exits; its stderr.
async fn fails_with(program: &str, args: &[&str]) -> String {
    let run = tokio::process::Command::new(bin(program))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not exit within 20 s"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(!out.status.success(), "{program} {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_error_is_one_line_naming_its_cause_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-token");
    let missing = missing.to_string_lossy();
    let stderr = fails_with(
        "remora-proxy",
        &[
            "--service",
            "reviews",
            "--control-plane",
            "http://127.0.0.1:1",
            "--token-file",
            &missing,
            "--no-inbound",
            "--outbound",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--stats-addr",
            "127.0.0.1:0",
            "--health-addr",
            "127.0.0.1:0",
        ],
    )
    .await;
    assert_eq!(
        stderr.trim_end().lines().last(),
        Some(
            format!("error: cannot read the token file {missing}: No such file or directory (os error 2)")
                .as_str()
        ),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );

    // A data directory under a regular file cannot be created.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("write");
    let data_dir = file.join("data");
    let stderr = fails_with(
        "remora",
        &[
            "serve",
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--grpc-tls-addr",
            "127.0.0.1:0",
            "--monitoring-addr",
            "127.0.0.1:0",
        ],
    )
    .await;
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot start the certificate authority: ")
            && last.contains(&*data_dir.to_string_lossy()),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
}
