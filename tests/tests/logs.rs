//! Logs written to a pipe (as under `docker logs`, systemd or a file) are
//! plain text: no terminal colour codes around levels and field names.

use remora_e2e::{Mesh, ProxySpec};

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
