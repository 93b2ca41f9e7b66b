//! `remora validate` on the shipped example config.

use std::process::Command;

use remora_e2e::{bin, workspace_root};

#[test]
fn validate_accepts_the_canary_example() {
    let path = workspace_root().join("examples/canary/mesh.yaml");
    assert!(path.is_file(), "{} is missing", path.display());
    let out = Command::new(bin("remora"))
        .arg("validate")
        .arg(&path)
        .output()
        .expect("run remora validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "remora validate {} exited {}:\n{stdout}\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains(": error:"),
        "no errors expected:\n{stdout}"
    );
}
