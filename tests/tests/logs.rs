//! Logs written to a pipe (as under `docker logs`, systemd or a file) are
//! plain text: no terminal colour codes around levels and field names.

use std::time::Duration;

use remora_e2e::{Mesh, Proxy, ProxySpec};

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
