//! The lab: the upstream and every target, started once per run on free
//! ports in a temporary directory, pinned to the servers' core, and stopped
//! at the end.
//!
//! | target        | path of a request                                              |
//! |---------------|----------------------------------------------------------------|
//! | `direct`      | generator → upstream                                           |
//! | `remora`      | generator → remora-proxy (outbound, plaintext) → upstream      |
//! | `remora-pair` | generator → client sidecar → mTLS → server sidecar → upstream  |
//! | `nginx`       | generator → nginx (1 worker, keep-alive upstream) → upstream   |
//! | `haproxy`     | generator → haproxy (1 thread, http-reuse always) → upstream   |
//!
//! A target that cannot be started (nginx not installable, identity flags
//! missing from remora-proxy) is reported as unavailable with the reason.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use remora_harness::Process;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::configs::{self, Listen};
use crate::loadgen::{self, Protocol};
use crate::process::{self, Pinning, STOP_GRACE};
use crate::procstat;

/// How long a process may take to start and a target to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The service the upstream is registered as (ServiceEntry, no sidecar).
const UPSTREAM_HOST: &str = "upstream";
/// The service the server sidecar of the pair stands for.
const MESH_HOST: &str = "upstream-mesh";

/// Which target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetId {
    /// No proxy.
    Direct,
    /// One remora-proxy, plaintext.
    Remora,
    /// Client and server sidecars with mTLS between them.
    RemoraPair,
    /// Client and server sidecars in plaintext: measured when the mTLS
    /// pair cannot run yet, so that the two-hop cost is still known.
    RemoraPairPlaintext,
    /// nginx.
    Nginx,
    /// haproxy.
    Haproxy,
}

impl TargetId {
    /// The name in tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Remora => "remora",
            Self::RemoraPair => "remora pair (mTLS)",
            Self::RemoraPairPlaintext => "remora pair (plaintext)",
            Self::Nginx => "nginx",
            Self::Haproxy => "haproxy",
        }
    }

    /// How many proxies a request crosses.
    pub fn proxies(self) -> usize {
        match self {
            Self::Direct => 0,
            Self::RemoraPair | Self::RemoraPairPlaintext => 2,
            _ => 1,
        }
    }
}

/// A running target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which one.
    pub id: TargetId,
    /// Where HTTP/1.1 requests go.
    pub h1: SocketAddr,
    /// Where h2c requests go.
    pub h2: SocketAddr,
    /// The `Host` of requests.
    pub host: String,
    /// The proxy processes whose CPU and memory are the target's cost
    /// (children included); empty for `direct`.
    pub proxy_pids: Vec<u32>,
}

impl Target {
    /// The address for `protocol`.
    pub fn addr(&self, protocol: Protocol) -> SocketAddr {
        match protocol {
            Protocol::Http2 => self.h2,
            _ => self.h1,
        }
    }
}

/// What the lab needs to know.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Where `remora` and `remora-proxy` are.
    pub bin_dir: PathBuf,
    /// This executable (it is also the upstream).
    pub self_exe: PathBuf,
    /// Where the servers run.
    pub pin: Pinning,
    /// Install nginx and haproxy with apt-get when missing.
    pub install: bool,
}

/// Everything started for a run.
#[derive(Debug)]
pub struct Lab {
    dir: TempDir,
    procs: Vec<Process>,
    /// The upstream's pid.
    pub upstream_pid: u32,
    /// The targets that run, `direct` first.
    pub targets: Vec<Target>,
    /// Targets that could not run, and why.
    pub unavailable: Vec<(TargetId, String)>,
}

/// A port that was free a moment ago (for nginx and haproxy, which cannot
/// report a port they chose themselves).
fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a free port")?;
    Ok(l.local_addr()?)
}

fn event_addr(v: &serde_json::Value, key: &str) -> anyhow::Result<SocketAddr> {
    v.get(key)
        .and_then(|a| a.as_str())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("no `{key}` address in {v}"))
}

/// Sends requests until one is answered with 200 and the full body, over
/// both protocols, for up to [`START_TIMEOUT`].
async fn wait_serving(t: &Target) -> anyhow::Result<()> {
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let result = loadgen::probe(t.addr(protocol), protocol, &t.host).await;
            match result {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    bail!(
                        "{} does not answer {} within {START_TIMEOUT:?}: {e}",
                        t.id.label(),
                        protocol.label()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// Finds `name` on the PATH or in /usr/sbin.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Installs nginx and haproxy from Debian's packages, without starting
/// their services: a `policy-rc.d` that forbids starts is put in place for
/// the install when there is none, and removed afterwards.
fn install_packages() -> anyhow::Result<()> {
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists() && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok();
    if ours {
        let _ = std::process::Command::new("chmod")
            .arg("+x")
            .arg(policy)
            .status();
    }
    let apt = |pkgs: &[&str]| {
        std::process::Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(pkgs)
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = apt(&["nginx-light", "haproxy"])
        || apt(&["nginx", "haproxy"])
        || (std::process::Command::new("apt-get")
            .arg("update")
            .status()
            .is_ok_and(|s| s.success())
            && (apt(&["nginx-light", "haproxy"]) || apt(&["nginx", "haproxy"])));
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    if ok {
        Ok(())
    } else {
        bail!("apt-get could not install nginx and haproxy (run as root, or install them first)")
    }
}

impl Lab {
    /// Starts the upstream and every target it can; fails only when the
    /// upstream itself cannot run.
    pub async fn start(opts: &LabOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("remora-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let mut lab = Self {
            dir,
            procs: Vec::new(),
            upstream_pid: 0,
            targets: Vec::new(),
            unavailable: Vec::new(),
        };
        let mut up = process::spawn(
            "upstream",
            &opts.self_exe,
            ["upstream", "--listen", "127.0.0.1:0"],
            &opts.pin,
            lab.dir.path(),
        )?;
        let upstream = event_addr(
            &up.try_wait_event("listening", START_TIMEOUT).await?,
            "addr",
        )?;
        lab.upstream_pid = up.pid().context("the upstream exited at once")?;
        lab.procs.push(up);
        let direct = Target {
            id: TargetId::Direct,
            h1: upstream,
            h2: upstream,
            host: UPSTREAM_HOST.to_owned(),
            proxy_pids: Vec::new(),
        };
        wait_serving(&direct).await?;
        lab.targets.push(direct);

        if let Err(e) = lab.start_remora(opts, upstream).await {
            let why = format!("{e:#}");
            lab.unavailable.push((TargetId::Remora, why.clone()));
            lab.unavailable.push((TargetId::RemoraPair, why));
        }
        let have = which("nginx").is_some() && which("haproxy").is_some();
        let installed = if have || !opts.install {
            Ok(())
        } else {
            install_packages()
        };
        for id in [TargetId::Nginx, TargetId::Haproxy] {
            let started = match &installed {
                Ok(()) => lab.start_reverse_proxy(id, opts, upstream).await,
                Err(e) => Err(anyhow!("{e:#}")),
            };
            if let Err(e) = started {
                lab.unavailable.push((id, format!("{e:#}")));
            }
        }
        Ok(lab)
    }

    /// The control plane, the plaintext proxy and the sidecar pair.
    async fn start_remora(
        &mut self,
        opts: &LabOptions,
        upstream: SocketAddr,
    ) -> anyhow::Result<()> {
        let remora = opts.bin_dir.join("remora");
        let proxy = opts.bin_dir.join("remora-proxy");
        for b in [&remora, &proxy] {
            if !b.is_file() {
                bail!(
                    "{} not found: build it with `cargo build --release -p remora-proxy -p remora-control-plane`",
                    b.display()
                );
            }
        }
        let help = std::process::Command::new(&proxy)
            .arg("--help")
            .output()
            .with_context(|| format!("cannot run {} --help", proxy.display()))?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let has = |flag: &str| help.contains(flag);

        let config = self.dir.path().join("mesh");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&config)?;
        std::fs::write(
            config.join("upstream.yaml"),
            configs::service_entry(UPSTREAM_HOST, upstream),
        )?;
        // The single proxy runs without an identity: the control plane must admit plaintext
        // discovery (development mode), on versions that refuse it by default.
        let serve_help = std::process::Command::new(&remora)
            .args(["serve", "--help"])
            .output()
            .with_context(|| format!("cannot run {} serve --help", remora.display()))?;
        let plaintext_flag = "--allow-plaintext-discovery";
        let mut cp_args: Vec<std::ffi::OsString> = vec![
            "serve".into(),
            "--config-dir".into(),
            config.clone().into(),
            "--grpc-addr".into(),
            "127.0.0.1:0".into(),
            "--monitoring-addr".into(),
            "127.0.0.1:0".into(),
            "--grpc-tls-addr".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.clone().into(),
        ];
        if String::from_utf8_lossy(&serve_help.stdout).contains(plaintext_flag) {
            cp_args.push(plaintext_flag.into());
        }
        let mut cp = process::spawn(
            "remora serve",
            &remora,
            &cp_args,
            &opts.pin,
            self.dir.path(),
        )?;
        let listening = cp.try_wait_event("listening", START_TIMEOUT).await?;
        let grpc = event_addr(&listening, "grpc")?;
        let grpc_tls = event_addr(&listening, "grpc_tls").ok();
        self.procs.push(cp);

        let common = |service: &str| -> Vec<String> {
            let mut a: Vec<String> = [
                "--service",
                service,
                "--namespace",
                "default",
                "--control-plane",
                &format!("http://{grpc}"),
                "--outbound",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--access-log",
                "off",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            for flag in ["--stats-addr", "--health-addr"] {
                if has(flag) {
                    a.extend([flag.to_owned(), "127.0.0.1:0".to_owned()]);
                }
            }
            a
        };

        // One proxy, plaintext, straight to the upstream.
        let mut args = common("bench-client");
        args.push("--no-inbound".into());
        let (pid, outbound) = self
            .start_proxy("remora-proxy", &proxy, &args, opts)
            .await?;
        let t = Target {
            id: TargetId::Remora,
            h1: outbound,
            h2: outbound,
            host: UPSTREAM_HOST.to_owned(),
            proxy_pids: vec![pid],
        };
        wait_serving(&t).await?;
        self.targets.push(t);

        // The pair: mTLS when the proxy has the identity flags.
        let identity = ["--token-file", "--ca-cert", "--ca-address"];
        let missing: Vec<&str> = identity.iter().copied().filter(|f| !has(f)).collect();
        let (id, tls) = if missing.is_empty() {
            (TargetId::RemoraPair, true)
        } else {
            self.unavailable.push((
                TargetId::RemoraPair,
                format!(
                    "remora-proxy --help lists no {} yet (the identity flags); \
                     the pair is measured in plaintext instead",
                    missing.join(", ")
                ),
            ));
            (TargetId::RemoraPairPlaintext, false)
        };
        let pair = self
            .start_pair(
                &proxy, &remora, &data, grpc_tls, tls, upstream, &common, opts,
            )
            .await;
        match pair {
            Ok(t) => self.targets.push(Target { id, ..t }),
            Err(e) => self.unavailable.push((id, format!("{e:#}"))),
        }
        Ok(())
    }

    /// Starts a proxy and returns its pid and outbound address once it has
    /// its first config.
    async fn start_proxy(
        &mut self,
        name: &str,
        proxy: &Path,
        args: &[String],
        opts: &LabOptions,
    ) -> anyhow::Result<(u32, SocketAddr)> {
        let mut p = process::spawn(name, proxy, args, &opts.pin, self.dir.path())?;
        let listening = p.try_wait_event("listening", START_TIMEOUT).await?;
        let outbound = event_addr(&listening, "outbound")?;
        p.try_wait_event("ready", START_TIMEOUT).await?;
        let pid = p.pid().with_context(|| format!("{name} exited"))?;
        self.procs.push(p);
        Ok((pid, outbound))
    }

    /// A server sidecar in front of the upstream and a client sidecar;
    /// with `tls`, both get a bootstrap token and the CA certificate.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    async fn start_pair(
        &mut self,
        proxy: &Path,
        remora: &Path,
        data: &Path,
        grpc_tls: Option<SocketAddr>,
        tls: bool,
        upstream: SocketAddr,
        common: &dyn Fn(&str) -> Vec<String>,
        opts: &LabOptions,
    ) -> anyhow::Result<Target> {
        let dir = self.dir.path().to_owned();
        let identity = |sa: &str| -> anyhow::Result<Vec<String>> {
            if !tls {
                return Ok(Vec::new());
            }
            let out = std::process::Command::new(remora)
                .args(["token", "create", "--data-dir"])
                .arg(data)
                .args(["--namespace", "default", "--service-account", sa])
                .output()
                .context("cannot run remora token create")?;
            if !out.status.success() {
                bail!(
                    "remora token create failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let file = dir.join(format!("{sa}.token"));
            std::fs::write(&file, out.stdout)?;
            let ca_address = grpc_tls.context("the control plane reported no grpc_tls address")?;
            Ok(vec![
                "--token-file".into(),
                file.display().to_string(),
                "--ca-cert".into(),
                data.join("ca-cert.pem").display().to_string(),
                "--ca-address".into(),
                ca_address.to_string(),
            ])
        };
        let mut server = common(MESH_HOST);
        server.extend(["--inbound".into(), "127.0.0.1:0".into()]);
        server.extend(["--app".into(), upstream.to_string()]);
        server.extend(identity(MESH_HOST)?);
        let (server_pid, _) = self
            .start_proxy("sidecar upstream-mesh", proxy, &server, opts)
            .await?;
        let mut client = common("bench-mesh-client");
        client.push("--no-inbound".into());
        client.extend(identity("bench-mesh-client")?);
        let (client_pid, outbound) = self
            .start_proxy("sidecar bench-mesh-client", proxy, &client, opts)
            .await?;
        let t = Target {
            id: TargetId::RemoraPair,
            h1: outbound,
            h2: outbound,
            host: MESH_HOST.to_owned(),
            proxy_pids: vec![client_pid, server_pid],
        };
        wait_serving(&t).await?;
        Ok(t)
    }

    /// nginx or haproxy with a generated config.
    async fn start_reverse_proxy(
        &mut self,
        id: TargetId,
        opts: &LabOptions,
        upstream: SocketAddr,
    ) -> anyhow::Result<()> {
        let listen = Listen {
            h1: free_addr()?,
            h2: free_addr()?,
        };
        let dir = self.dir.path().join(id.label());
        std::fs::create_dir_all(&dir)?;
        let (binary, args): (PathBuf, Vec<String>) = match id {
            TargetId::Nginx => {
                let conf = dir.join("nginx.conf");
                std::fs::write(&conf, configs::nginx(&dir, listen, upstream))?;
                let bin = which("nginx").context("nginx is not installed")?;
                let args = vec![
                    "-p".into(),
                    dir.display().to_string(),
                    "-e".into(),
                    dir.join("nginx-start.log").display().to_string(),
                    "-c".into(),
                    conf.display().to_string(),
                ];
                (bin, args)
            }
            _ => {
                let conf = dir.join("haproxy.cfg");
                std::fs::write(&conf, configs::haproxy(listen, upstream))?;
                let bin = which("haproxy").context("haproxy is not installed")?;
                (
                    bin,
                    vec!["-db".into(), "-f".into(), conf.display().to_string()],
                )
            }
        };
        let mut p = process::spawn(id.label(), &binary, &args, &opts.pin, self.dir.path())?;
        let mut t = Target {
            id,
            h1: listen.h1,
            h2: listen.h2,
            host: UPSTREAM_HOST.to_owned(),
            proxy_pids: Vec::new(),
        };
        let serving = wait_serving(&t).await;
        let pid = match p.pid() {
            Some(pid) if !p.has_exited() => pid,
            _ => bail!("{} exited; its log:\n{}", id.label(), p.stderr_tail()),
        };
        self.procs.push(p);
        serving?;
        t.proxy_pids = procstat::with_children(pid);
        self.targets.push(t);
        Ok(())
    }

    /// Stops every process, last started first.
    pub async fn stop(mut self) {
        while let Some(mut p) = self.procs.pop() {
            let _ = p.stop(STOP_GRACE).await;
        }
    }

    /// The processes, for a final check that none died during the run.
    pub fn dead(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| p.has_exited().then(|| p.name().to_owned()))
            .collect()
    }
}
