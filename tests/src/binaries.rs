//! The workspace's binaries, built on first use in each test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The binaries this process has built already.
static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The path of workspace binary `name` (`remora`, `remora-proxy`,
/// `remora-demo-app`), built for the test's own profile.
///
/// The first call for a name in a process runs `$CARGO build --bin <name>`
/// (a no-op when it is current); later calls reuse it. One binary at a time
/// rather than `--workspace --bins`, so that a test needing only the proxy
/// does not fail on another crate's compile error. Panics with cargo's
/// output if the build fails or the binary does not exist.
pub fn bin(name: &str) -> PathBuf {
    let dir = profile_dir();
    {
        // Held across the build: concurrent callers wait rather than race.
        let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
        if !built.iter().any(|b| b == name) {
            build(name, &dir);
            built.push(name.to_owned());
        }
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "binary `{name}` not found at {} after building it",
        path.display()
    );
    path
}

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
}

/// `target/<profile>`, from the test binary's own path
/// (`<target>/<profile>/deps/<test binary>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()))
        .to_path_buf()
}

fn build(name: &str, profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("cannot tell the profile from {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "--bin", name, "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        output.status.success(),
        "`cargo build --bin {name} --profile {profile}` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
