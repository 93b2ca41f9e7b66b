//! The mesh as processes: a control plane over a temporary config
//! directory, sidecars and client proxies, demo apps.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::binaries::bin;
use crate::client::{HttpClient, Protocol};
use remora_harness::Process;

/// How long a process may take to print an event the test is waiting for.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The `remora serve` flag that admits proxies without an identity over
/// plaintext: development only, and what most tests' meshes run with.
pub const DEVELOPMENT_FLAG: &str = "--allow-plaintext-discovery";

/// How often [`Proxy::wait_endpoints`] asks the admin API.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// `remora serve` over a config directory.
#[derive(Debug)]
pub struct ControlPlane {
    /// The process; its events are `listening`, `loaded`, `rejected`,
    /// `connected`, `disconnected`, `ack`, `nack`.
    pub process: Process,
    /// The gRPC (discovery) address it listens on.
    pub grpc: SocketAddr,
    /// The monitoring address (`/metrics`, `/debug/proxies`), on a free port.
    pub monitoring: SocketAddr,
    /// The gRPC-over-TLS address (Discovery and Identity), on a free port.
    pub grpc_tls: SocketAddr,
    /// The data directory (CA files, token key).
    pub data_dir: PathBuf,
}

impl ControlPlane {
    /// Starts `remora serve --config-dir dir --grpc-addr addr
    /// --allow-plaintext-discovery` and waits for its `listening` event: a
    /// development control plane, where proxies without a token register over
    /// plaintext (most tests are about routing, not identity). `addr` is
    /// `127.0.0.1:0` for a fresh port, or a previous instance's address to
    /// restart on the same port.
    pub async fn start(config_dir: &Path, addr: SocketAddr) -> Self {
        Self::start_with_args(config_dir, addr, &[]).await
    }

    /// [`ControlPlane::start`] with `extra` appended to the command line
    /// (e.g. `["--trace-sampling", "100"]`).
    pub async fn start_with_args(config_dir: &Path, addr: SocketAddr, extra: &[&str]) -> Self {
        let mut args = vec![DEVELOPMENT_FLAG];
        args.extend_from_slice(extra);
        Self::start_secure(config_dir, addr, &args).await
    }

    /// `remora serve` as in production: only proxies that prove an identity
    /// on the TLS port register (no [`DEVELOPMENT_FLAG`]); `extra` appended.
    pub async fn start_secure(config_dir: &Path, addr: SocketAddr, extra: &[&str]) -> Self {
        let any = "127.0.0.1:0".parse().expect("addr");
        Self::launch(config_dir, addr, any, extra).await
    }

    /// [`ControlPlane::start_secure`] with the TLS port on `tls_addr` (a
    /// previous instance's, so that proxies find it again after a restart).
    async fn launch(
        config_dir: &Path,
        addr: SocketAddr,
        tls_addr: SocketAddr,
        extra: &[&str],
    ) -> Self {
        // The CA and token key live beside the config (a hidden directory
        // the config reader skips), so a restarted control plane finds them.
        let data_dir = config_dir.join(".data");
        let mut process = Process::spawn(
            "remora serve",
            &bin("remora"),
            [
                "serve".as_ref(),
                "--config-dir".as_ref(),
                config_dir.as_os_str(),
                "--grpc-addr".as_ref(),
                addr.to_string().as_ref(),
                "--monitoring-addr".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--grpc-tls-addr".as_ref(),
                tls_addr.to_string().as_ref(),
                "--data-dir".as_ref(),
                data_dir.as_os_str(),
            ]
            .into_iter()
            .chain(extra.iter().map(OsStr::new)),
        );
        let listening = process.wait_event("listening", EVENT_TIMEOUT).await;
        let grpc = listening["grpc"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("`listening` event has no grpc address: {listening}"));
        let monitoring = listening["monitoring"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("`listening` event has no monitoring address: {listening}"));
        let grpc_tls = listening["grpc_tls"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("`listening` event has no grpc_tls address: {listening}"));
        Self {
            process,
            grpc,
            monitoring,
            grpc_tls,
            data_dir,
        }
    }

    /// A bootstrap token for `namespace/service_account`, made with
    /// `remora token create` over this control plane's data directory.
    pub fn token(&self, namespace: &str, service_account: &str) -> String {
        self.token_with(namespace, service_account, &[])
    }

    /// [`Self::token`] with more arguments for `remora token create`
    /// (e.g. `["--ttl", "2s"]`).
    pub fn token_with(&self, namespace: &str, service_account: &str, extra: &[&str]) -> String {
        let out = std::process::Command::new(bin("remora"))
            .arg("token")
            .arg("create")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--namespace",
                namespace,
                "--service-account",
                service_account,
            ])
            .args(extra)
            .output()
            .expect("run remora token create");
        assert!(
            out.status.success(),
            "remora token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("token is UTF-8")
            .trim()
            .to_owned()
    }

    /// The CA certificate (the trust bundle) proxies verify the control
    /// plane's TLS port with.
    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir.join("ca-cert.pem")
    }

    /// The URL proxies take as `--control-plane`.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

/// A `remora-proxy` process and the addresses it bound.
#[derive(Debug)]
pub struct Proxy {
    /// The process; its events are `listening`, `ready`, `applied`, `rejected`.
    pub process: Process,
    /// Where the app sends outbound requests.
    pub outbound: SocketAddr,
    /// Where peers reach the app (absent for a client-only proxy).
    pub inbound: Option<SocketAddr>,
    /// The admin API.
    pub admin: SocketAddr,
    /// The stats port (`/stats/prometheus`).
    pub stats: SocketAddr,
    /// The health port (`/healthz/ready`).
    pub health: SocketAddr,
}

/// Who a proxy stands beside.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// `--service`.
    pub service: String,
    /// `--namespace`.
    pub namespace: String,
    /// `--label k=v`, repeated.
    pub labels: Vec<(String, String)>,
    /// `--app`; `None` runs the proxy with `--no-inbound` (client only).
    pub app: Option<SocketAddr>,
    /// More command-line arguments, appended as given.
    pub args: Vec<String>,
}

impl ProxySpec {
    /// A sidecar for `service` in `default`, labelled `version=<version>`,
    /// forwarding inbound requests to `app`.
    pub fn sidecar(service: &str, version: &str, app: SocketAddr) -> Self {
        Self {
            service: service.to_owned(),
            namespace: "default".to_owned(),
            labels: vec![("version".to_owned(), version.to_owned())],
            app: Some(app),
            args: Vec::new(),
        }
    }

    /// A client-only proxy for workload `service` in `default`.
    pub fn client(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            namespace: "default".to_owned(),
            labels: Vec::new(),
            app: None,
            args: Vec::new(),
        }
    }

    /// The same spec with `flag value` appended to the command line
    /// (e.g. `--retry-budget-percent 20`).
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.extend([flag.to_owned(), value.to_owned()]);
        self
    }
}

impl Proxy {
    /// Starts a proxy talking to `control_plane` (a URL) and waits for its
    /// `listening` event. It serves only after [`Proxy::wait_ready`].
    pub async fn start(spec: &ProxySpec, control_plane: &str) -> Self {
        let mut args: Vec<String> = vec![
            "--service".into(),
            spec.service.clone(),
            "--namespace".into(),
            spec.namespace.clone(),
            "--control-plane".into(),
            control_plane.to_owned(),
            "--outbound".into(),
            "127.0.0.1:0".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
            // Free ports: the defaults (15090, 15021) would collide between
            // the proxies of one test and across tests.
            "--stats-addr".into(),
            "127.0.0.1:0".into(),
            "--health-addr".into(),
            "127.0.0.1:0".into(),
        ];
        for (k, v) in &spec.labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        match spec.app {
            Some(app) => args.extend([
                "--inbound".into(),
                "127.0.0.1:0".into(),
                "--app".into(),
                app.to_string(),
            ]),
            None => args.push("--no-inbound".into()),
        }
        // Load tests send tens of thousands of requests: no access log
        // unless a test asks for one.
        if !spec.args.iter().any(|a| a == "--access-log") {
            args.extend(["--access-log".into(), "off".into()]);
        }
        args.extend(spec.args.iter().cloned());
        let labels: Vec<String> = spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let name = format!("remora-proxy {} [{}]", spec.service, labels.join(","));
        let mut process = Process::spawn(&name, &bin("remora-proxy"), &args);
        let ev = process.wait_event("listening", EVENT_TIMEOUT).await;
        let addr = |key: &str| -> Option<SocketAddr> { ev[key].as_str()?.parse().ok() };
        let outbound =
            addr("outbound").unwrap_or_else(|| panic!("{name}: no outbound address in {ev}"));
        let admin = addr("admin").unwrap_or_else(|| panic!("{name}: no admin address in {ev}"));
        let stats = addr("stats").unwrap_or_else(|| panic!("{name}: no stats address in {ev}"));
        let health = addr("health").unwrap_or_else(|| panic!("{name}: no health address in {ev}"));
        let inbound = addr("inbound");
        assert_eq!(
            inbound.is_some(),
            spec.app.is_some(),
            "{name}: inbound listener present iff an app is given: {ev}"
        );
        Self {
            process,
            outbound,
            inbound,
            admin,
            stats,
            health,
        }
    }

    /// Waits for the first config (`ready`) and returns its version.
    pub async fn wait_ready(&mut self) -> String {
        let ev = self.process.wait_event("ready", EVENT_TIMEOUT).await;
        ev["version"].as_str().unwrap_or_default().to_owned()
    }

    /// A client for this proxy's outbound listener.
    pub fn client(&self, protocol: Protocol) -> HttpClient {
        HttpClient::new(self.outbound, protocol)
    }

    /// `GET /config_dump` from the admin API.
    pub async fn config_dump(&self) -> anyhow::Result<Value> {
        let reply = HttpClient::new(self.admin, Protocol::Http1)
            .get("admin", "/config_dump", &[])
            .await?;
        anyhow::ensure!(
            reply.status.is_success(),
            "config_dump answered {}: {}",
            reply.status,
            reply.body
        );
        Ok(serde_json::from_str(&reply.body)?)
    }

    /// `GET /stats/prometheus` from the stats port: every sample as
    /// `name{labels}` → value (comments left out).
    pub async fn prometheus(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let reply = HttpClient::new(self.stats, Protocol::Http1)
            .get("stats", "/stats/prometheus", &[])
            .await?;
        anyhow::ensure!(
            reply.status.is_success(),
            "/stats/prometheus answered {}: {}",
            reply.status,
            reply.body
        );
        let content_type = reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        anyhow::ensure!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "/stats/prometheus has content type {content_type:?}"
        );
        parse_samples(&reply.body)
    }

    /// `GET /healthz/ready` from the health port: its status and body.
    pub async fn health(&self) -> anyhow::Result<(u16, String)> {
        let reply = HttpClient::new(self.health, Protocol::Http1)
            .get("health", "/healthz/ready", &[])
            .await?;
        Ok((reply.status.as_u16(), reply.body))
    }

    /// `GET /stats` from the admin API: its `name{labels} value` lines.
    pub async fn stats(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let reply = HttpClient::new(self.admin, Protocol::Http1)
            .get("admin", "/stats", &[])
            .await?;
        anyhow::ensure!(
            reply.status.is_success(),
            "stats answered {}: {}",
            reply.status,
            reply.body
        );
        parse_samples(&reply.body)
    }

    /// One counter of `/stats`. Panics, listing what `/stats` has, if the
    /// admin API fails or the counter is absent.
    pub async fn stat(&self, name: &str) -> u64 {
        let stats = self.stats().await.unwrap_or_else(|e| {
            panic!(
                "{}: GET /stats failed: {e:#}\nstderr tail:\n{}",
                self.process.name(),
                self.process.stderr_tail()
            )
        });
        match stats.get(name) {
            Some(v) => *v as u64,
            None => panic!(
                "{}: /stats has no `{name}`; it has: {:?}",
                self.process.name(),
                stats.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// The endpoint addresses of `cluster` in the applied config (empty if
    /// the cluster is absent).
    pub async fn endpoints(&self, cluster: &str) -> anyhow::Result<Vec<String>> {
        let dump = self.config_dump().await?;
        Ok(endpoints_in(&dump, cluster))
    }

    /// Polls the admin API until `cluster` has exactly `n` endpoints, for up
    /// to `timeout`; returns the config dump. Panics on timeout with the
    /// last dump and the proxy's stderr tail.
    pub async fn wait_endpoints(&self, cluster: &str, n: usize, timeout: Duration) -> Value {
        self.wait_config(
            &format!("cluster `{cluster}` with {n} endpoints"),
            timeout,
            |d| endpoints_in(d, cluster).len() == n,
        )
        .await
    }

    /// Polls the admin API's `/config_dump` until `check` holds, for up to
    /// `timeout`; returns that dump. Panics on timeout naming `what`, with
    /// the last dump and the proxy's stderr tail.
    pub async fn wait_config(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let dump = self.config_dump().await;
            if let Ok(d) = &dump
                && check(d)
            {
                return dump.expect("checked");
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: no {what} within {timeout:?}\nlast config_dump: {dump:?}\nstderr tail:\n{}",
                    self.process.name(),
                    self.process.stderr_tail()
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Prometheus text samples (`name{labels} value` lines; `#` lines skipped)
/// as `name{labels}` → value.
pub fn parse_samples(text: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| anyhow::anyhow!("stats line without a value: {line:?}"))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("stats line {line:?}: {e}"))?;
        out.insert(name.trim().to_owned(), value);
    }
    Ok(out)
}

/// The endpoint addresses of `cluster` in a `/config_dump` answer.
pub fn endpoints_in(dump: &Value, cluster: &str) -> Vec<String> {
    dump["snapshot"]["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == cluster)
        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["address"].as_str().map(str::to_owned))
        .collect()
}

/// A `remora-demo-app` process.
#[derive(Debug)]
pub struct DemoApp {
    /// The process.
    pub process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl DemoApp {
    /// Starts `remora-demo-app --service service --version version` on a
    /// free port and waits for its `listening` event.
    pub async fn start(service: &str, version: &str) -> Self {
        let mut process = Process::spawn(
            &format!("remora-demo-app {service} {version}"),
            &bin("remora-demo-app"),
            [
                "--listen",
                "127.0.0.1:0",
                "--service",
                service,
                "--version",
                version,
            ],
        );
        let ev = process.wait_event("listening", EVENT_TIMEOUT).await;
        let addr = ev["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("demo app: no addr in {ev}"));
        Self { process, addr }
    }
}

/// A control plane over its own temporary config directory: by default
/// ([`Mesh::start`]) a development one that admits proxies without a token
/// ([`DEVELOPMENT_FLAG`]); [`Mesh::start_secure`] runs it as in production.
#[derive(Debug)]
pub struct Mesh {
    dir: TempDir,
    /// Extra `remora serve` arguments, kept for restarts.
    control_plane_args: Vec<String>,
    /// The running control plane.
    pub control_plane: ControlPlane,
}

impl Mesh {
    /// Writes `files` (name, YAML) into a fresh config directory, then
    /// starts the control plane on a free port over it.
    pub async fn start(files: &[(&str, &str)]) -> Self {
        Self::start_with_args(files, &[]).await
    }

    /// A mesh whose control plane runs as in production: without
    /// [`DEVELOPMENT_FLAG`], so only proxies with a token (and so a
    /// certificate) register.
    pub async fn start_secure(files: &[(&str, &str)]) -> Self {
        Self::start_secure_with_args(files, &[]).await
    }

    /// [`Mesh::start`] with `args` appended to the control plane's command
    /// line (e.g. `["--trace-sampling", "100"]`); a restart keeps them.
    pub async fn start_with_args(files: &[(&str, &str)], args: &[&str]) -> Self {
        let mut all = vec![DEVELOPMENT_FLAG];
        all.extend_from_slice(args);
        Self::start_secure_with_args(files, &all).await
    }

    /// [`Mesh::start_secure`] with `args` appended to the control plane's
    /// command line; a restart keeps them.
    pub async fn start_secure_with_args(files: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("remora-e2e-")
            .tempdir()
            .expect("temp dir");
        for (name, contents) in files {
            write_atomically(dir.path(), name, contents);
        }
        let addr = "127.0.0.1:0".parse().expect("addr");
        let control_plane = ControlPlane::start_secure(dir.path(), addr, args).await;
        Self {
            dir,
            control_plane_args: args.iter().map(|a| (*a).to_owned()).collect(),
            control_plane,
        }
    }

    /// The watched config directory.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces `name` in the config directory atomically (write a hidden
    /// `.tmp` file, then rename) and returns the time of the rename.
    pub fn write_file(&self, name: &str, contents: &str) -> Instant {
        write_atomically(self.dir.path(), name, contents)
    }

    /// The path of `name` in the config directory.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// SIGKILLs the control plane.
    pub async fn kill_control_plane(&mut self) {
        self.control_plane.process.kill().await;
    }

    /// Starts the control plane again on the ports it had (plaintext and
    /// TLS: proxies with an identity reconnect to the TLS one).
    pub async fn restart_control_plane(&mut self) {
        let addr = self.control_plane.grpc;
        let tls = self.control_plane.grpc_tls;
        let args: Vec<&str> = self.control_plane_args.iter().map(String::as_str).collect();
        self.control_plane = ControlPlane::launch(self.dir.path(), addr, tls, &args).await;
    }

    /// Starts a proxy for `spec` against this mesh's control plane and waits
    /// until it has its first config.
    pub async fn proxy(&self, spec: &ProxySpec) -> Proxy {
        let mut proxy = Proxy::start(spec, &self.control_plane.url()).await;
        proxy.wait_ready().await;
        proxy
    }
}

fn write_atomically(dir: &Path, name: &str, contents: &str) -> Instant {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
    Instant::now()
}
