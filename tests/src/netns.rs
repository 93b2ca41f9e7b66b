//! "Pods" as Linux network namespaces, for the transparent-capture tests.
//!
//! A [`Network`] is a namespace of its own holding a bridge; each [`Pod`] is
//! a namespace joined to that bridge by a veth pair, with an IPv4 and an
//! IPv6 address in a private range ([`SUBNET_V4`], [`SUBNET_V6`]). Nothing
//! is added to the host's own namespace: the bridge, the veth ends and the
//! addresses live only in namespaces the test made, so pods of one network
//! reach each other and nothing else, and two tests' networks never meet
//! (they may use the same addresses).
//!
//! Processes run in a pod with `ip netns exec` (which also bind-mounts
//! `/etc/netns/<ns>/hosts` over `/etc/hosts`, so pods resolve names with
//! [`Pod::set_hosts`]), optionally as another uid with `setpriv` (the proxy
//! runs as 1337, the uid the capture rules leave alone). The test process
//! itself opens sockets inside a pod with [`Pod::connect`] and
//! [`Pod::bind`]: a short-lived thread enters the namespace (`setns`), makes
//! the socket, and hands it back; the socket stays in that namespace.
//!
//! Names are unique per test process and network (`rmr-<pid>-<n>-<pod>`).
//! Dropping a [`Pod`] or [`Network`] deletes its namespace and its
//! `/etc/netns` directory, also when the test panics; namespaces left by a
//! test process that was killed outright are deleted by the next
//! [`Network::create`].
//!
//! These tests need root and `ip netns`. [`skip`] says whether they are
//! missing (the test then returns early with a message); with
//! `REMORA_REQUIRE_NETNS=1` (CI) a missing one fails the test instead.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};

use remora_harness::Process;

/// Every pod network's IPv4 subnet (a /24); pod `n` is `.n`.
pub const SUBNET_V4: [u8; 3] = [10, 88, 0];
/// Every pod network's IPv6 subnet (a /64); pod `n` is `::n`.
pub const SUBNET_V6: [u16; 4] = [0xfd88, 0, 0, 0];
/// The uid (and gid) the sidecar runs as, as in Istio.
pub const PROXY_UID: u32 = 1337;
/// Set to `1` to fail, not skip, where root or `ip netns` is missing.
pub const REQUIRE_ENV: &str = "REMORA_REQUIRE_NETNS";
/// How long [`Pod::connect`] may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The prefix of every namespace this harness makes.
const PREFIX: &str = "rmr-";

/// Networks made by this process, for unique names.
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// Why netns tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!(
            "needs root to make network namespaces (running as uid {euid})"
        ));
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `ip` (iproute2): {e}")),
    }
}

/// Whether `test` must be skipped: prints why and returns true when root or
/// `ip netns` is missing, unless [`REQUIRE_ENV`] is set, then panics.
pub fn skip(test: &str) -> bool {
    let Some(reason) = unavailable() else {
        return false;
    };
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: {reason}, and {REQUIRE_ENV}=1 requires these tests to run");
    }
    eprintln!("SKIPPED {test}: {reason}");
    true
}

/// A bridge in a namespace of its own, which pods join.
#[derive(Debug)]
pub struct Network {
    id: String,
    hub: Namespace,
    next_host: AtomicU8,
    files: TempDir,
}

impl Network {
    /// Makes the network's namespace and bridge. Panics (with `ip`'s
    /// message) if that fails; call [`skip`] first.
    pub fn create() -> Self {
        remove_stale_namespaces();
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{PREFIX}{}-{n}", std::process::id());
        let hub = Namespace::add(format!("{id}-hub"));
        ip(&["-n", &hub.name, "link", "set", "lo", "up"]);
        ip(&["-n", &hub.name, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub.name, "link", "set", "br0", "up"]);
        let files = tempfile::Builder::new()
            .prefix("remora-netns-")
            .tempdir()
            .expect("temp dir");
        // Readable by the proxy's uid: tokens, CA certificates.
        set_mode(files.path(), 0o755);
        Self {
            id,
            hub,
            next_host: AtomicU8::new(1),
            files,
        }
    }

    /// A new pod named `name` (unique in this network) on the bridge, with
    /// the next free addresses, loopback up and default routes out of its
    /// `eth0`.
    pub fn pod(&self, name: &str) -> Pod {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        assert!((1..=250).contains(&host), "too many pods in one network");
        let ns = Namespace::add(format!("{}-{name}", self.id));
        let hub_end = format!("v{host}");
        ip(&[
            "-n",
            &self.hub.name,
            "link",
            "add",
            &hub_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns.name,
        ]);
        ip(&[
            "-n",
            &self.hub.name,
            "link",
            "set",
            &hub_end,
            "master",
            "br0",
            "up",
        ]);
        let [a, b, c] = SUBNET_V4;
        let ipv4 = Ipv4Addr::new(a, b, c, host);
        let [s0, s1, s2, s3] = SUBNET_V6;
        let ipv6 = Ipv6Addr::new(s0, s1, s2, s3, 0, 0, 0, u16::from(host));
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ip(&["-n", n, "addr", "add", &format!("{ipv4}/24"), "dev", "eth0"]);
        // nodad: usable at once, not after duplicate address detection.
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{ipv6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", n, "link", "set", "eth0", "up"]);
        ip(&["-n", n, "route", "add", "default", "dev", "eth0"]);
        ip(&["-n", n, "-6", "route", "add", "default", "dev", "eth0"]);
        Pod {
            name: name.to_owned(),
            ns,
            ipv4,
            ipv6,
            hub_link: hub_end,
        }
    }

    /// Captures the TCP packets on `pod`'s link to the bridge into `file`
    /// with `tcpdump`, from the network's own namespace (the pod sees
    /// nothing of it). Returns once tcpdump listens; stop it with
    /// [`Process::terminate`], which flushes the file.
    pub async fn capture_link(&self, pod: &Pod, file: &Path) -> Process {
        let mut tcpdump = Process::spawn(
            &format!("tcpdump [{}]", pod.name),
            Path::new("ip"),
            [
                "netns".as_ref(),
                "exec".as_ref(),
                self.hub.name.as_ref(),
                "tcpdump".as_ref(),
                "-i".as_ref(),
                pod.hub_link.as_ref(),
                "-U".as_ref(),
                "-s".as_ref(),
                "0".as_ref(),
                "-Z".as_ref(),
                "root".as_ref(),
                "-w".as_ref(),
                file.as_os_str(),
                "tcp".as_ref(),
            ] as [&OsStr; 14],
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !tcpdump.stderr_tail().contains("listening on") {
            if std::time::Instant::now() > deadline
                || tcpdump.wait_exit(Duration::from_millis(20)).await.is_some()
            {
                panic!("tcpdump did not start:\n{}", tcpdump.stderr_tail());
            }
        }
        tcpdump
    }

    /// A directory every uid can read, for files the pods' processes use.
    pub fn files(&self) -> &Path {
        self.files.path()
    }

    /// Writes `contents` to `name` in [`Network::files`], readable by all,
    /// and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.files.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        set_mode(&path, 0o644);
        path
    }
}

/// A network namespace with a pod's addresses.
#[derive(Debug)]
pub struct Pod {
    /// The name the test gave it.
    pub name: String,
    ns: Namespace,
    /// Its IPv4 address on the network.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address on the network.
    pub ipv6: Ipv6Addr,
    /// The bridge's end of its veth pair, in the network's namespace.
    hub_link: String,
}

/// Who a process in a pod runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// root, as the test (an app, `remora-proxy init`).
    Root,
    /// This uid and gid, with no supplementary groups and no capabilities.
    Uid(u32),
}

impl Pod {
    /// The namespace's name (for `ip netns exec`, `nsenter`).
    pub fn netns(&self) -> &str {
        &self.ns.name
    }

    /// Writes `/etc/netns/<ns>/hosts`: localhost and `entries`, which
    /// processes started in this pod see as `/etc/hosts`.
    pub fn set_hosts(&self, entries: &[(&str, IpAddr)]) {
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, addr) in entries {
            hosts.push_str(&format!("{addr} {name}\n"));
        }
        let dir = self.ns.etc_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        std::fs::write(dir.join("hosts"), hosts).expect("write hosts");
    }

    /// `ip netns exec <ns> [setpriv ...] program`, as argument vector.
    fn argv(&self, user: User, program: &OsStr) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> =
            vec!["netns".into(), "exec".into(), self.ns.name.clone().into()];
        if let User::Uid(uid) = user {
            argv.extend(
                [
                    "setpriv".to_owned(),
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".to_owned(),
                    "--".to_owned(),
                ]
                .map(Into::into),
            );
        }
        argv.push(program.to_owned());
        argv
    }

    /// Spawns `program args` in this pod as `user`; `name` labels it.
    /// Killed when the [`Process`] drops (`ip netns exec` and `setpriv`
    /// exec the program: its pid is the process's).
    pub fn spawn<I, S>(&self, name: &str, user: User, program: &Path, args: I) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv = self.argv(user, program.as_os_str());
        argv.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        Process::spawn(&format!("{name} [{}]", self.name), Path::new("ip"), argv)
    }

    /// Runs `program args` in this pod as `user` to completion.
    pub async fn run<I, S>(&self, user: User, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv = self.argv(user, OsStr::new(program));
        argv.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        tokio::process::Command::new("ip")
            .args(&argv)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {program}: {e}"))
    }

    /// [`Pod::run`] as root, panicking with its stderr unless it succeeds;
    /// returns its stdout.
    pub async fn run_ok<I, S>(&self, program: &str, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(User::Root, program, &args).await;
        assert!(
            out.status.success(),
            "[{}] {program} {args:?}: {}\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `nft list ruleset` in this pod.
    pub async fn ruleset(&self) -> String {
        self.run_ok("nft", ["list", "ruleset"]).await
    }

    /// A TCP connection to `addr` opened from inside this pod, by the test
    /// process (uid 0: an app, as far as the capture rules go).
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let stream = self
            .ns
            .enter(move || std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT))
            .await?;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        TcpStream::from_std(stream)
    }

    /// A TCP listener bound to `addr` inside this pod.
    pub async fn bind(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let listener = self
            .ns
            .enter(move || std::net::TcpListener::bind(addr))
            .await?;
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop with
/// its `/etc/netns/<name>` directory.
#[derive(Debug)]
struct Namespace {
    name: String,
}

impl Namespace {
    fn add(name: String) -> Self {
        ip(&["netns", "add", &name]);
        Self { name }
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// Runs `f` on a new thread that has entered this namespace; sockets it
    /// makes belong to the namespace wherever they are used afterwards.
    async fn enter<T, F>(&self, f: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        let path = Path::new("/run/netns").join(&self.name);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own, never a pooled one: it leaves the host's
        // namespace for good.
        std::thread::spawn(move || {
            let result = std::fs::File::open(&path)
                .and_then(|ns| {
                    rustix::thread::move_into_link_name_space(
                        ns.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .map_err(std::io::Error::from)
                })
                .and_then(|()| f());
            let _ = tx.send(result);
        });
        rx.await
            .unwrap_or_else(|_| Err(std::io::Error::other("the netns thread panicked")))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

fn delete_namespace(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
}

/// Deletes the namespaces of test processes that no longer run (killed
/// before their guards could drop).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            delete_namespace(name);
        }
    }
}

/// Runs `ip args`, panicking with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
