//! The workspace's binaries, built on first use in each test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// What this process has built already.
static BUILT: Mutex<Built> = Mutex::new(Built {
    workspace: None,
    bins: Vec::new(),
});

#[derive(Debug)]
struct Built {
    /// Whether `--workspace --bins --tests` succeeded (`None`: not tried yet).
    workspace: Option<bool>,
    /// Binaries built one by one after the workspace build failed.
    bins: Vec<String>,
}

/// The path of workspace binary `name` (`remora`, `remora-proxy`,
/// `remora-demo-app`), built for the test's own profile.
///
/// The first call in a process runs `$CARGO build --workspace --bins --tests`
/// (a no-op when everything is current). `--tests` makes cargo resolve
/// features as `cargo test` does, dev-dependencies included (tokio's
/// `test-util`, for one): the binaries are then the ones `cargo nextest run
/// --workspace` has just built, not a second build of every dependency with
/// the features of a release build, which took a second copy of the whole
/// dependency tree on disk and minutes in CI. If that fails (another crate does not
/// compile), each binary is built alone with `--bin <name>`, so a test that
/// needs only the proxy still runs. Panics with cargo's output if the
/// binary cannot be built or does not exist.
pub fn bin(name: &str) -> PathBuf {
    let dir = profile_dir();
    {
        // Held across the build: concurrent callers wait rather than race.
        let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
        let workspace = *built.workspace.get_or_insert_with(|| {
            cargo_build(&dir, &["--workspace", "--bins", "--tests"]).is_ok()
        });
        if !workspace && !built.bins.iter().any(|b| b == name) {
            if let Err(output) = cargo_build(&dir, &["--bin", name]) {
                panic!("`cargo build --bin {name}` failed:\n{output}");
            }
            built.bins.push(name.to_owned());
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

/// Runs `$CARGO build <args>` for the test's profile and target directory;
/// on failure returns cargo's stderr.
fn cargo_build(profile_dir: &Path, args: &[&str]) -> Result<(), String> {
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("cannot tell the profile from {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    // What cargo sets for running this test crate is not the build's business, and some of
    // it is: ring's build script reruns when `CARGO_MANIFEST_DIR` changes, so a build from a
    // test of `proxy/` and one from a shell (or from a test of `tests/`) each rebuilt ring
    // and everything above it, about a minute, every time they alternated.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_the_test) {
            command.env_remove(name);
        }
    }
    let output = command
        .current_dir(workspace_root())
        .arg("build")
        .args(args)
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The variables cargo (and nextest) set for a test process, as opposed to the
/// user's configuration (`CARGO_HOME`, `CARGO_BUILD_*`, `CARGO_NET_*`…).
fn set_by_cargo_for_the_test(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&name)
        || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
        || name.starts_with("NEXTEST")
}

#[cfg(test)]
mod tests;
