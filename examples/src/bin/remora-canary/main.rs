//! `remora-canary`: the README's demo, a 90/10 canary on one machine.
//!
//! Starts, all on 127.0.0.1 with free ports, a control plane reading
//! `examples/canary/mesh.yaml`, the demo app as `reviews` v1 and v2 each
//! behind a sidecar, and a client sidecar for `productpage`; sends requests
//! for `reviews` through the client sidecar and prints which version
//! answered. Everything it started is stopped when it ends, fails, or is
//! interrupted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use remora_examples::demo_client::{Call, HttpClient, Tally, mtls_count, send, write_tally};
use remora_harness::{Process, Stderr, stop_all};
use serde_json::Value;
use tokio::process::Command;
use tokio::time::Instant;

/// The canary's mesh config, written into a temporary config directory.
const MESH_YAML: &str = include_str!("../../../canary/mesh.yaml");
/// The longest any process gets to start, and config to propagate.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request through the mesh may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long children get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How many requests carry `end-user: jason`.
const JASON_REQUESTS: u32 = 100;
/// The service the canary splits, and its subsets in `mesh.yaml`.
const SERVICE: &str = "reviews";
const SUBSETS: [&str; 2] = ["v1", "v2"];

/// Runs the Remora canary demo on this machine and prints the traffic split.
#[derive(Debug, Parser)]
#[command(name = "remora-canary", version, about)]
struct Args {
    /// How many requests to send for the 90/10 split.
    #[arg(long, default_value_t = 1000)]
    requests: u32,
    /// Where `remora`, `remora-proxy` and `remora-demo-app` are (default:
    /// next to this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Echo the children's stderr (their logs), prefixed with their names.
    #[arg(long)]
    show_logs: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let dir = match tempfile::Builder::new().prefix("remora-canary-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create a temporary config directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut children = Vec::new();
    let outcome = tokio::select! {
        r = run(&args, dir.path(), &mut children) => r.map(Some),
        _ = tokio::signal::ctrl_c() => Ok(None),
    };

    let forced = stop_all(&mut children, STOP_GRACE).await;
    if !forced.is_empty() {
        eprintln!(
            "note: killed {} after {STOP_GRACE:?} without a clean exit",
            forced.join(", ")
        );
    }
    if let Err(e) = dir.close() {
        eprintln!("warning: cannot remove the temporary config directory: {e}");
    }

    match outcome {
        Ok(Some(true)) => ExitCode::SUCCESS,
        Ok(Some(false)) => ExitCode::FAILURE,
        Ok(None) => {
            eprintln!("interrupted; stopped everything");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the mesh (pushing each child onto `children` as it starts, so the
/// caller can stop them whatever happens), sends the traffic and prints the
/// tables. `Ok(false)` when any request failed.
async fn run(args: &Args, config_dir: &Path, children: &mut Vec<Process>) -> anyhow::Result<bool> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("cannot find this executable's path")?
            .parent()
            .context("this executable has no parent directory")?
            .to_owned(),
    };
    // Check all binaries before starting anything.
    let remora = find_binary(&bin_dir, "remora")?;
    let proxy = find_binary(&bin_dir, "remora-proxy")?;
    let demo_app = find_binary(&bin_dir, "remora-demo-app")?;

    let config = config_dir.join("mesh.yaml");
    std::fs::write(&config, MESH_YAML)
        .with_context(|| format!("cannot write {}", config.display()))?;
    let logs = args.show_logs;

    // The control plane and both apps don't depend on each other: start all
    // three, then collect their addresses.
    let mut cmd = Command::new(&remora);
    cmd.arg("serve")
        .arg("--config-dir")
        .arg(config_dir)
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(["--monitoring-addr", "127.0.0.1:0"])
        .args(["--grpc-tls-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(config_dir.join(".data"));
    children.push(spawn("control plane (remora serve)", cmd, logs)?);
    for version in SUBSETS {
        let mut cmd = Command::new(&demo_app);
        cmd.args(["--listen", "127.0.0.1:0", "--service", SERVICE])
            .args(["--version", version]);
        children.push(spawn(&format!("demo app {SERVICE} {version}"), cmd, logs)?);
    }
    let listening = children[0]
        .try_wait_event("listening", STEP_TIMEOUT)
        .await?;
    let cp_field = |name: &str| {
        listening
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the control plane's `listening` has no `{name}`"))
    };
    let (grpc, grpc_tls) = (cp_field("grpc")?, cp_field("grpc_tls")?);
    let control_plane = format!("http://{grpc}");
    println!(
        "control plane   gRPC {grpc}  TLS {grpc_tls}  config {}",
        config.display()
    );

    // Every proxy gets an identity: a bootstrap token per service account,
    // and the CA certificate to verify the control plane's TLS port with.
    // The sidecars then talk mTLS to each other.
    let data_dir = config_dir.join(".data");
    let identity = Identity {
        tokens: token_files(&remora, &data_dir, config_dir, &[SERVICE, "productpage"])?,
        ca_cert: data_dir.join("ca-cert.pem"),
        ca_address: grpc_tls,
    };
    let mut apps = Vec::new();
    for (i, version) in SUBSETS.into_iter().enumerate() {
        let addr = children[1 + i]
            .try_wait_field("listening", "addr", STEP_TIMEOUT)
            .await?;
        println!("{SERVICE} {version}      app  {addr}");
        apps.push((version, addr));
    }

    // One sidecar per app, then the client's.
    let mut inbound = BTreeMap::new();
    for (version, app) in &apps {
        let mut cmd = Command::new(&proxy);
        cmd.args(["--service", SERVICE, "--namespace", "default"])
            .arg("--label")
            .arg(format!("version={version}"))
            .args(["--control-plane", &control_plane])
            .args(["--outbound", "127.0.0.1:0", "--inbound", "127.0.0.1:0"])
            .args(["--access-log", "off"])
            // The demo stops everything at once: a short drain keeps the
            // proxies' clean exit within STOP_GRACE.
            .args(["--drain-duration", "1s"])
            .args(["--admin", "127.0.0.1:0", "--app", app])
            // Free ports: three proxies on one host cannot share 15090/15021.
            .args(["--stats-addr", "127.0.0.1:0"])
            .args(["--health-addr", "127.0.0.1:0"]);
        identity.add_to(&mut cmd, SERVICE);
        traces(&mut cmd);
        let mut sidecar = spawn(&format!("sidecar {SERVICE} {version}"), cmd, logs)?;
        let addr = sidecar
            .try_wait_field("listening", "inbound", STEP_TIMEOUT)
            .await?;
        println!("{SERVICE} {version}      sidecar inbound {addr}");
        inbound.insert(version.to_string(), addr);
        children.push(sidecar);
    }
    for version in SUBSETS {
        let sidecar = children
            .iter_mut()
            .find(|c| c.name() == format!("sidecar {SERVICE} {version}"))
            .context("sidecar was started above")?;
        sidecar.try_wait_event("ready", STEP_TIMEOUT).await?;
    }

    let mut cmd = Command::new(&proxy);
    cmd.args(["--service", "productpage", "--label", "version=v1"])
        .args(["--no-inbound", "--control-plane", &control_plane])
        .args(["--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--stats-addr", "127.0.0.1:0"])
        .args(["--health-addr", "127.0.0.1:0"])
        .args(["--drain-duration", "1s"])
        .args(["--access-log", "off"]);
    identity.add_to(&mut cmd, "productpage");
    traces(&mut cmd);
    children.push(spawn("sidecar productpage", cmd, logs)?);
    let client_proxy = children.last_mut().context("just pushed")?;
    let listening = client_proxy
        .try_wait_event("listening", STEP_TIMEOUT)
        .await?;
    let field = |name: &str| {
        listening
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("productpage sidecar's `listening` has no `{name}`"))
    };
    let (outbound, admin) = (field("outbound")?, field("admin")?);
    let stats = field("stats")?;
    client_proxy.try_wait_event("ready", STEP_TIMEOUT).await?;
    println!("productpage     sidecar outbound {outbound}  admin {admin}");
    println!("productpage     metrics http://{stats}/stats/prometheus");

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // Registration is asynchronous: wait until the client sidecar knows both
    // subsets' endpoints.
    if let Err(e) = wait_for_endpoints(&client, &admin, &inbound, STEP_TIMEOUT).await {
        let err = children
            .last_mut()
            .context("just pushed")?
            .failure(&format!("{e:#}"))
            .await;
        return Err(err.into());
    }

    let url = format!("http://{outbound}/version");
    let call = Call {
        url: &url,
        host: Some(SERVICE),
        end_user: None,
    };
    let canary = send(&client, call, args.requests).await;
    let jason = send(
        &client,
        Call {
            end_user: Some("jason"),
            ..call
        },
        JASON_REQUESTS,
    )
    .await;
    println!();
    print_tally(
        &format!(
            "canary 90/10: {} requests through the productpage sidecar",
            args.requests
        ),
        &canary,
        true,
    );
    print_tally(
        &format!("end-user: jason: {JASON_REQUESTS} requests"),
        &jason,
        false,
    );
    let mtls = mtls_requests(&client, &stats).await?;
    println!(
        "mTLS between the sidecars: {mtls} of {} requests (remora_requests_total{{mtls=\"true\"}})",
        args.requests + JASON_REQUESTS
    );
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        println!("traces: every request sampled, exported to $OTEL_EXPORTER_OTLP_ENDPOINT");
    }
    Ok(
        canary.failed == 0
            && jason.failed == 0
            && mtls == u64::from(args.requests + JASON_REQUESTS),
    )
}

/// Starts `cmd` as the child called `name`: its logs at `warn` unless
/// `RUST_LOG` says otherwise, echoed to our stderr with `--show-logs`.
fn spawn(name: &str, mut cmd: Command, show_logs: bool) -> anyhow::Result<Process> {
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let stderr = if show_logs {
        Stderr::Echo
    } else {
        Stderr::Keep
    };
    Ok(Process::try_spawn(name, cmd, stderr)?)
}

/// Finds `name` (plus the platform's executable suffix) in `dir`, or says how
/// to build it.
fn find_binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "cannot find `{name}` in {}; build it with `cargo build --release --workspace --bins` \
             (or point --bin-dir at the directory that holds it)",
            dir.display()
        )
    }
}

/// What each proxy needs to get its certificate.
struct Identity {
    /// Token file per service account.
    tokens: BTreeMap<String, PathBuf>,
    /// The CA certificate (trust bundle) to verify the control plane with.
    ca_cert: PathBuf,
    /// The control plane's gRPC-over-TLS address.
    ca_address: String,
}

impl Identity {
    fn add_to(&self, cmd: &mut Command, service_account: &str) {
        if let Some(token) = self.tokens.get(service_account) {
            cmd.args(["--service-account", service_account])
                .arg("--token-file")
                .arg(token)
                .arg("--ca-cert")
                .arg(&self.ca_cert)
                .args(["--ca-address", &self.ca_address]);
        }
    }
}

/// Makes a bootstrap token for each service account in `default` with
/// `remora token create`, written to a file in `dir` (hidden from the
/// config reader).
fn token_files(
    remora: &Path,
    data_dir: &Path,
    dir: &Path,
    accounts: &[&str],
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for account in accounts {
        let run = std::process::Command::new(remora)
            .args(["token", "create", "--namespace", "default"])
            .args(["--service-account", account])
            .arg("--data-dir")
            .arg(data_dir)
            .output()
            .with_context(|| format!("cannot run {} token create", remora.display()))?;
        if !run.status.success() {
            bail!(
                "remora token create for {account} failed: {}",
                String::from_utf8_lossy(&run.stderr).trim()
            );
        }
        let path = dir.join(format!(".{account}.token"));
        std::fs::write(&path, &run.stdout)
            .with_context(|| format!("cannot write {}", path.display()))?;
        out.insert((*account).to_owned(), path);
    }
    Ok(out)
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set (inherited by the proxies), the
/// example records every request rather than Istio's default 1%.
fn traces(cmd: &mut Command) {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        cmd.args(["--trace-sampling", "100"]);
    }
}

/// Outbound requests the client sidecar sent over mTLS, from its metrics.
async fn mtls_requests(client: &HttpClient, stats: &str) -> anyhow::Result<u64> {
    let url = format!("http://{stats}/stats/prometheus");
    let resp = client
        .get(url.parse().context("metrics URL")?)
        .await
        .with_context(|| format!("GET {url}"))?;
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading {url}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    Ok(mtls_count(&text))
}

/// Polls the client sidecar's `/config_dump` every 50 ms until, for each
/// subset, the `<subset>|reviews.…` cluster holds exactly that subset's
/// sidecar (by inbound address).
async fn wait_for_endpoints(
    client: &HttpClient,
    admin: &str,
    expected: &BTreeMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last_seen = match get_json(client, &format!("http://{admin}/config_dump")).await {
            Ok(dump) => {
                let seen = cluster_endpoints(&dump);
                let done = expected.iter().all(|(subset, addr)| {
                    seen.get(subset.as_str())
                        .is_some_and(|eps| eps.len() == 1 && eps[0] == *addr)
                });
                if done {
                    return Ok(());
                }
                format!("{seen:?}")
            }
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "the productpage sidecar did not learn the {SERVICE} endpoints {expected:?} \
                 within {timeout:?}; its /config_dump last showed: {last_seen}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subset → endpoint addresses of the `reviews` clusters in a config dump.
fn cluster_endpoints(dump: &Value) -> BTreeMap<String, Vec<String>> {
    let clusters = dump
        .pointer("/snapshot/clusters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let prefix = format!("{SERVICE}.");
    clusters
        .iter()
        .filter_map(|c| {
            let (subset, host) = c.get("name")?.as_str()?.split_once('|')?;
            if !host.starts_with(&prefix) {
                return None;
            }
            let eps = c
                .get("endpoints")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e.get("address")?.as_str().map(str::to_owned))
                .collect();
            Some((subset.to_owned(), eps))
        })
        .collect()
}

async fn get_json(client: &HttpClient, url: &str) -> anyhow::Result<Value> {
    let req = Request::get(url).body(Empty::new())?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
        .await
        .with_context(|| format!("GET {url} timed out"))??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!("GET {url}: {status} {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))
}

fn print_tally(title: &str, tally: &Tally, with_failures: bool) {
    let mut text = String::new();
    write_tally(&mut text, tally, with_failures);
    println!("{title}\n{}", text.trim_end());
}

#[cfg(test)]
mod tests;
