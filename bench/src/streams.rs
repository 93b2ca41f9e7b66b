//! `remora-bench control-plane streams`: the control plane under many
//! discovery streams (issue 20).
//!
//! A real `remora serve` runs as a child process, following a config
//! directory of S services (one file each: a VirtualService with a timeout
//! and a DestinationRule with a subset). This process then opens N discovery
//! streams at once, one TCP connection each, as N sidecars would: sidecar
//! `i` serves `svc-(i mod S)` at its own address, and answers every snapshot
//! with an ACK at once, as the proxy does. The simulated proxies decode only
//! a snapshot's version and nonce (prost skips the rest), so that this
//! process's CPU goes to the streams, not to building configs; they count
//! every byte received.
//!
//! Discovery is plaintext (`--allow-plaintext-discovery`,
//! `--trust-advertised-address`): a stream proving an identity needs a
//! certificate per simulated proxy and a TLS handshake each, which measures
//! the TLS stack, not the control plane; the output says so.
//!
//! Phases, each bounded in time:
//! 1. **Connect burst**: all N streams start together; settled when every
//!    proxy has acked a snapshot and none has arrived for a quiet second.
//!    The figure is the last arrival, from the start.
//! 2. **Changes**: a one-route change (the timeout of `svc-0`'s route) is
//!    written to its file; each proxy's latency is its first snapshot after
//!    the write (the directory poll included). Control-plane CPU (minus its
//!    idle rate) and bytes received are summed until the quiet after.
//! 3. **Churn** (optional): registrations and deregistrations at a given
//!    rate; streams that end without being asked to are drops.
//! 4. **Leave**: all proxies disconnect; the control plane's resident set
//!    after a quiet while shows whether memory is given back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Buf;
use remora_harness::{Process, Stderr};
use remora_proto::pb;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Endpoint;

use crate::procstat;

/// How long no snapshot may arrive for a phase to count as settled.
const QUIET: Duration = Duration::from_secs(1);
/// The longest the control plane gets to settle a phase.
const PHASE_LIMIT: Duration = Duration::from_secs(120);
/// The largest snapshot a simulated proxy accepts (the proxies' limit).
const MAX_MESSAGE: usize = remora_proto::MAX_SNAPSHOT_BYTES;

/// What one run measures.
#[derive(Debug, Clone)]
pub struct StreamsOptions {
    /// Simulated proxies.
    pub proxies: usize,
    /// Services in the config (and among the proxies).
    pub services: usize,
    /// One-route changes measured.
    pub changes: usize,
    /// Seconds of churn (0: none).
    pub churn_secs: f64,
    /// Registrations plus deregistrations per second during churn.
    pub churn_rate: f64,
    /// The simulated proxies take incremental snapshots only in the older
    /// form (the routes part whole), as a proxy before per-resource
    /// increments did: the same binaries measure both.
    pub routes_whole: bool,
    /// The `remora` binary.
    pub remora: PathBuf,
    /// The `remora-proxy` binary: two real proxies join after the burst, one
    /// scoped by a Sidecar to one service and one told about every service,
    /// and their RSS is measured. `None`: skipped.
    pub proxy: Option<PathBuf>,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamsRow {
    /// Simulated proxies.
    pub proxies: usize,
    /// Services.
    pub services: usize,
    /// From the start of the burst to the last snapshot before quiet, in
    /// seconds; `None` if the phase did not settle.
    pub burst_settled_s: Option<f64>,
    /// Proxies that had acked a snapshot when the burst phase ended.
    pub burst_synced: usize,
    /// One-route change to each proxy's next snapshot: p50, p90, p99, max (ms),
    /// over every proxy and change.
    pub change_ms: [f64; 4],
    /// Proxies that did not get a change within the phase limit.
    pub change_missed: usize,
    /// Control-plane CPU per change, seconds (idle rate subtracted).
    pub cpu_per_change_s: f64,
    /// Bytes received by all proxies per change.
    pub bytes_per_change: u64,
    /// Encoded size of the largest snapshot received (a complete one), bytes.
    pub snapshot_bytes: u64,
    /// Control-plane resident set when settled, MiB.
    pub rss_settled_mib: f64,
    /// Control-plane peak resident set, MiB.
    pub rss_peak_mib: f64,
    /// Control-plane resident set after every proxy left, MiB.
    pub rss_after_leave_mib: f64,
    /// The RSS of a real proxy, MiB: scoped by a Sidecar to one service,
    /// and told about every service.
    pub proxy_rss_mib: Option<[f64; 2]>,
    /// Streams that ended, after a snapshot, without being asked to.
    pub drops: usize,
    /// Connections or streams that failed before their first snapshot and
    /// were retried, as the proxy does.
    pub connect_retries: usize,
    /// Churn: events per second asked and done, and streams dropped.
    pub churn: Option<Churn>,
    /// This process's CPU over the run, seconds (it shares the machine).
    pub client_cpu_s: f64,
}

/// The churn phase's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Churn {
    /// Registrations plus deregistrations asked per second.
    pub rate: f64,
    /// Done per second.
    pub done_per_s: f64,
    /// Streams dropped during churn.
    pub drops: usize,
    /// From the last churn event to quiet, seconds: how far behind the control plane was.
    pub catch_up_s: Option<f64>,
    /// Bytes received by all proxies per registration or deregistration
    /// (the newcomers' first, complete snapshots included).
    #[serde(default)]
    pub bytes_per_event: u64,
}

/// The snapshot fields a simulated proxy reads; prost skips the others.
#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotHead {
    #[prost(string, tag = "1")]
    version: String,
    #[prost(string, tag = "2")]
    nonce: String,
}

/// A snapshot's head and its encoded size.
struct Received {
    head: SnapshotHead,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct HeadCodec;

impl Codec for HeadCodec {
    type Encode = pb::DiscoveryRequest;
    type Decode = Received;
    type Encoder = HeadCodec;
    type Decoder = HeadCodec;
    fn encoder(&mut self) -> Self::Encoder {
        HeadCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        HeadCodec
    }
}

impl Encoder for HeadCodec {
    type Item = pb::DiscoveryRequest;
    type Error = tonic::Status;
    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        prost::Message::encode(&item, buf).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for HeadCodec {
    type Item = Received;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let bytes = buf.remaining();
        let head = <SnapshotHead as prost::Message>::decode(buf)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(Some(Received { head, bytes }))
    }
}

/// One simulated proxy's state.
#[derive(Debug, Default)]
struct Slot {
    /// Snapshots received.
    received: u64,
    /// The first snapshot since the current phase's mark.
    first_since_mark: Option<Instant>,
    /// The stream ended.
    ended: bool,
    /// The stream ended because it was asked to.
    asked_to_end: bool,
}

/// What the proxies share with the phases.
struct Shared {
    slots: Mutex<Vec<Slot>>,
    /// Bytes of every snapshot received.
    bytes: AtomicU64,
    /// Size of the largest snapshot received.
    last_size: AtomicU64,
    /// When the last snapshot arrived, as ns since `origin`.
    last_arrival_ns: AtomicU64,
    origin: Instant,
    /// Streams that ended without being asked to, after a snapshot.
    drops: AtomicUsize,
    /// Connections or streams that failed before their first snapshot.
    connect_retries: AtomicUsize,
    /// The first reason a stream ended or failed, for the report.
    first_error: Mutex<Option<String>>,
    /// Set when every stream is asked to end.
    leaving: AtomicBool,
}

impl Shared {
    fn last_arrival(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last_arrival_ns.load(Ordering::Relaxed))
    }

    fn arrived(&self, index: usize, bytes: usize) {
        let now = Instant::now();
        let ns = u64::try_from(now.duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        self.last_arrival_ns.fetch_max(ns, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_size.fetch_max(bytes as u64, Ordering::Relaxed);
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut slots[index];
        slot.received += 1;
        slot.first_since_mark.get_or_insert(now);
    }

    /// Snapshots proxy `index` has received.
    fn received(&self, index: usize) -> u64 {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[index]
            .received
    }

    /// Forgets every proxy's first arrival: a new phase starts.
    fn mark(&self) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for slot in slots.iter_mut() {
            slot.first_since_mark = None;
        }
    }
}

/// The node of simulated proxy `index`.
fn node(index: usize, services: usize, routes_whole: bool) -> pb::Node {
    let service = format!("svc-{}", index % services);
    // A distinct pod address each, as a cluster would give.
    let address = format!(
        "10.{}.{}.{}:8080",
        (index >> 16) & 0xff,
        (index >> 8) & 0xff,
        index & 0xff
    );
    pb::Node {
        id: format!("sim-{index}.default"),
        namespace: "default".into(),
        labels: BTreeMap::from([
            ("app".to_owned(), service.clone()),
            ("version".to_owned(), "v1".to_owned()),
        ]),
        service_account: service.clone(),
        service,
        inbound_address: address,
        mtls: false,
        app_port: 8080,
        // As the proxy does: registrations and route changes send what changed.
        accepts_incremental: true,
        accepts_resource_increments: !routes_whole,
        protocol: remora_proto::PROTOCOL,
        ..Default::default()
    }
}

/// One simulated proxy: connects, registers, ACKs every snapshot at once,
/// until `stop` fires. Like the real proxy, it reconnects after a failure,
/// with a backoff from 100 ms to 5 s and jitter: a failure before the first
/// snapshot counts as a connect retry, a stream that ends afterwards as a drop.
async fn proxy(
    index: usize,
    url: String,
    node: pb::Node,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(100);
    let asked = loop {
        let got_before = shared.received(index);
        let outcome = proxy_stream(index, &url, node.clone(), &shared, &mut stop).await;
        if matches!(outcome, Ok(true)) || shared.leaving.load(Ordering::Relaxed) {
            break true;
        }
        let established = shared.received(index) > got_before;
        if established {
            shared.drops.fetch_add(1, Ordering::Relaxed);
            backoff = Duration::from_millis(100);
        } else {
            shared.connect_retries.fetch_add(1, Ordering::Relaxed);
        }
        let reason = match outcome {
            Err(e) => format!("{e:#}"),
            Ok(_) => "the control plane ended the stream".to_owned(),
        };
        shared
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(reason);
        // Jitter from the index: no random source needed, still spread.
        let jitter = Duration::from_millis((index as u64 * 7919) % 100);
        tokio::select! {
            _ = &mut stop => break true,
            () = tokio::time::sleep(backoff + jitter) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    let mut slots = shared
        .slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    slots[index].ended = true;
    slots[index].asked_to_end = asked;
}

/// `Ok(true)`: asked to stop; `Ok(false)`: the server ended the stream.
async fn proxy_stream(
    index: usize,
    url: &str,
    node: pb::Node,
    shared: &Shared,
    stop: &mut tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<bool> {
    let channel = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect()
        .await
        .context("connect")?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE);
    grpc.ready().await.context("ready")?;
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::DiscoveryRequest {
        node: Some(node),
        ..Default::default()
    })
    .await
    .context("hello")?;
    let path = http::uri::PathAndQuery::from_static("/remora.discovery.v1.Discovery/Stream");
    let response = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path,
            HeadCodec,
        )
        .await
        .context("open stream")?;
    let mut inbound = response.into_inner();
    loop {
        tokio::select! {
            _ = &mut *stop => return Ok(true),
            message = inbound.message() => match message.context("stream")? {
                Some(received) => {
                    shared.arrived(index, received.bytes);
                    let ack = pb::DiscoveryRequest {
                        node: None,
                        version_info: received.head.version,
                        response_nonce: received.head.nonce,
                        ..Default::default()
                    };
                    if tx.send(ack).await.is_err() {
                        return Ok(false);
                    }
                }
                None => return Ok(false),
            },
        }
    }
}

/// The config of service `i`: a VirtualService with a timeout of
/// `timeout_s` to its `v1` subset, and its DestinationRule.
fn service_yaml(i: usize, timeout_s: usize) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: svc-{i}, namespace: default}}\nspec:\n  hosts: [svc-{i}]\n  http:\n  \
         - route:\n    - destination: {{host: svc-{i}, subset: v1}}\n    timeout: {timeout_s}s\n\
         ---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: svc-{i}, namespace: default}}\nspec:\n  host: svc-{i}\n  subsets:\n  \
         - name: v1\n    labels: {{version: v1}}\n"
    )
}

/// Writes `name` in `dir` whole (a temporary name, then a rename), so the
/// poll never reads half a file.
fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).context("cannot rename the config file")?;
    Ok(())
}

/// Scopes the proxies labelled `app: bench-scoped` to one service.
const SCOPED_SIDECAR: &str = "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
    metadata: {name: bench-scoped, namespace: default}\nspec:\n  workloadSelector:\n    \
    labels: {app: bench-scoped}\n  egress:\n  - hosts: [\"./svc-0.default.svc.cluster.local\"]\n";

/// Two real client proxies against the control plane at `url`, one scoped
/// by [`SCOPED_SIDECAR`] and one not: their RSS (MiB) once both are ready
/// and have idled a second.
async fn real_proxies_rss(bin: &Path, url: &str) -> anyhow::Result<[f64; 2]> {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut proxies = Vec::new();
    for app in ["bench-scoped", "bench-all"] {
        let health = free_port()?;
        let child = std::process::Command::new(bin)
            .args(["--service", app, "--namespace", "default", "--no-inbound"])
            .args(["--label", &format!("app={app}"), "--control-plane", url])
            .args(["--outbound", &format!("127.0.0.1:{}", free_port()?)])
            .args(["--admin", &format!("127.0.0.1:{}", free_port()?)])
            .args(["--stats-addr", &format!("127.0.0.1:{}", free_port()?)])
            .args(["--health-addr", &format!("127.0.0.1:{health}")])
            .args(["--access-log", "off"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        proxies.push((Kill(child), health));
    }
    for (proxy, health) in &mut proxies {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(*health).await {
            if let Some(status) = proxy.0.try_wait()? {
                bail!("remora-proxy exited before it was ready: {status} (a port taken?)");
            }
            if Instant::now() > deadline {
                bail!("remora-proxy {} was not ready within 60 s", proxy.0.id());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = |i: usize| procstat::memory_kib(&[proxies[i].0.0.id()]).0 as f64 / 1024.0;
    let figures = [rss(0), rss(1)];
    eprintln!(
        "  a real proxy: RSS {:.1} MiB scoped by a Sidecar to one service, {:.1} MiB told about all",
        figures[0], figures[1]
    );
    Ok(figures)
}

/// Whether the proxy's health port at `port` answers 200.
async fn ready(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET /healthz/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && head.ends_with(b"200")
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a port")?;
    Ok(listener.local_addr()?.port())
}

/// The control plane under test.
struct ControlPlane {
    /// Held: dropping it kills the control plane.
    _process: Process,
    pid: u32,
    url: String,
    clock_ticks: u64,
}

impl ControlPlane {
    /// Starts `remora serve` (stderr into `remora.log` in `dir`) and waits
    /// until it listens and has loaded the config.
    async fn start(remora: &Path, dir: &Path) -> anyhow::Result<Self> {
        let grpc = free_port()?;
        let tls = free_port()?;
        let monitoring = free_port()?;
        let mut command = tokio::process::Command::new(remora);
        command
            .arg("serve")
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--grpc-tls-addr", &format!("127.0.0.1:{tls}")])
            .args(["--monitoring-addr", &format!("127.0.0.1:{monitoring}")])
            .args(["--warmup-secs", "0"])
            .args(["--allow-plaintext-discovery", "--trust-advertised-address"])
            .env("RUST_LOG", "warn");
        let log = Stderr::File(dir.join("remora.log"));
        let mut process = Process::try_spawn("remora serve", command, log)?;
        let pid = process.pid().context("remora exited at once")?;
        process
            .try_wait_event("listening", Duration::from_secs(30))
            .await?;
        process
            .try_wait_event("loaded", Duration::from_secs(60))
            .await?;
        Ok(Self {
            _process: process,
            pid,
            url: format!("http://127.0.0.1:{grpc}"),
            clock_ticks: procstat::clock_ticks(),
        })
    }

    /// CPU time, seconds.
    fn cpu_s(&self) -> f64 {
        procstat::cpu_ticks(&[self.pid]) as f64 / self.clock_ticks as f64
    }

    /// `(VmRSS, VmHWM)` in MiB.
    fn memory_mib(&self) -> (f64, f64) {
        let (rss, hwm) = procstat::memory_kib(&[self.pid]);
        (rss as f64 / 1024.0, hwm as f64 / 1024.0)
    }
}

/// Waits until every live proxy satisfies `done` and no snapshot has
/// arrived for [`QUIET`]; the last arrival, or `None` after `limit`.
async fn settle(shared: &Shared, limit: Duration, done: impl Fn(&Slot) -> bool) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let all = {
            let slots = shared
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slots.iter().all(|s| s.ended || done(s))
        };
        let last = shared.last_arrival();
        if all && last.elapsed() >= QUIET {
            return Some(last);
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs one size against a fresh `remora serve`.
pub fn run(opts: &StreamsOptions) -> anyhow::Result<StreamsRow> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(run_async(opts))
}

async fn run_async(opts: &StreamsOptions) -> anyhow::Result<StreamsRow> {
    let client_cpu_start = procstat::cpu_ticks(&[std::process::id()]);
    let ticks = procstat::clock_ticks() as f64;
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config)?;
    for i in 0..opts.services {
        write_file(&config, &format!("svc-{i}.yaml"), &service_yaml(i, 10))?;
    }
    write_file(&config, "sidecar.yaml", SCOPED_SIDECAR)?;
    let cp = ControlPlane::start(&opts.remora, dir.path()).await?;

    let shared = Arc::new(Shared {
        slots: Mutex::new(Vec::new()),
        bytes: AtomicU64::new(0),
        last_size: AtomicU64::new(0),
        last_arrival_ns: AtomicU64::new(0),
        origin: Instant::now(),
        drops: AtomicUsize::new(0),
        connect_retries: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        leaving: AtomicBool::new(false),
    });
    let mut stops: Vec<Option<tokio::sync::oneshot::Sender<()>>> = Vec::new();
    let mut tasks = Vec::new();
    let spawn = |index: usize,
                 stops: &mut Vec<Option<tokio::sync::oneshot::Sender<()>>>,
                 tasks: &mut Vec<tokio::task::JoinHandle<()>>| {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        shared
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Slot::default());
        stops.push(Some(stop_tx));
        tasks.push(tokio::spawn(proxy(
            index,
            cp.url.clone(),
            node(index, opts.services, opts.routes_whole),
            Arc::clone(&shared),
            stop_rx,
        )));
    };

    // 1. The connect burst.
    eprintln!(
        "  burst: {} proxies × {} services",
        opts.proxies, opts.services
    );
    let start = Instant::now();
    for i in 0..opts.proxies {
        spawn(i, &mut stops, &mut tasks);
    }
    let settled = settle(&shared, PHASE_LIMIT, |s| s.received > 0).await;
    let burst_settled_s = settled.map(|t| t.duration_since(start).as_secs_f64());
    let burst_synced = {
        let slots = shared
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.iter().filter(|s| s.received > 0 && !s.ended).count()
    };
    let (rss_settled_mib, _) = cp.memory_mib();
    let proxy_rss_mib = match &opts.proxy {
        Some(bin) => Some(real_proxies_rss(bin, &cp.url).await?),
        None => None,
    };
    eprintln!(
        "  burst settled: {burst_settled_s:?} s, {burst_synced} synced, {} dropped, {} connect retries, RSS {rss_settled_mib:.0} MiB",
        shared.drops.load(Ordering::Relaxed),
        shared.connect_retries.load(Ordering::Relaxed),
    );

    // 2. One-route changes.
    let mut latencies_ms = Vec::new();
    let mut change_missed = 0;
    let mut cpu_total = 0.0;
    let mut bytes_total = 0u64;
    for k in 0..opts.changes {
        // The idle rate, to subtract: keep-alives and the directory poll.
        let idle_from = (Instant::now(), cp.cpu_s());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rate = (cp.cpu_s() - idle_from.1) / idle_from.0.elapsed().as_secs_f64();
        shared.mark();
        let bytes_before = shared.bytes.load(Ordering::Relaxed);
        let cpu_before = cp.cpu_s();
        let t0 = Instant::now();
        write_file(&config, "svc-0.yaml", &service_yaml(0, 11 + k))?;
        let done = settle(&shared, PHASE_LIMIT, |s| s.first_since_mark.is_some()).await;
        let end = Instant::now();
        cpu_total += (cp.cpu_s() - cpu_before) - idle_rate * end.duration_since(t0).as_secs_f64();
        bytes_total += shared.bytes.load(Ordering::Relaxed) - bytes_before;
        let slots = shared
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in slots.iter().filter(|s| !s.ended) {
            match s.first_since_mark {
                Some(t) => latencies_ms.push(t.duration_since(t0).as_secs_f64() * 1e3),
                None => change_missed += 1,
            }
        }
        eprintln!(
            "  change {k}: settled {:?}",
            done.map(|t| t.duration_since(t0))
        );
    }
    latencies_ms.sort_by(f64::total_cmp);
    let changes = opts.changes.max(1) as f64;

    // 3. Churn.
    let churn = if opts.churn_secs > 0.0 && opts.churn_rate > 0.0 {
        let drops_before = shared.drops.load(Ordering::Relaxed);
        let bytes_before = shared.bytes.load(Ordering::Relaxed);
        let period = Duration::from_secs_f64(1.0 / opts.churn_rate);
        let mut ticker = tokio::time::interval(period);
        let churn_start = Instant::now();
        let mut events = 0usize;
        let mut oldest = 0usize;
        while churn_start.elapsed().as_secs_f64() < opts.churn_secs {
            ticker.tick().await;
            if events.is_multiple_of(2) {
                if let Some(stop) = stops.get_mut(oldest).and_then(Option::take) {
                    let _ = stop.send(());
                }
                oldest += 1;
            } else {
                let index = stops.len();
                spawn(index, &mut stops, &mut tasks);
            }
            events += 1;
        }
        let churn_end = Instant::now();
        let done_per_s = events as f64 / churn_end.duration_since(churn_start).as_secs_f64();
        let caught = settle(&shared, PHASE_LIMIT, |s| s.received > 0).await;
        Some(Churn {
            rate: opts.churn_rate,
            done_per_s,
            drops: shared.drops.load(Ordering::Relaxed) - drops_before,
            catch_up_s: caught.map(|t| t.saturating_duration_since(churn_end).as_secs_f64()),
            bytes_per_event: (shared.bytes.load(Ordering::Relaxed) - bytes_before)
                / (events.max(1) as u64),
        })
    } else {
        None
    };
    let (_, rss_peak_mib) = cp.memory_mib();
    let drops = shared.drops.load(Ordering::Relaxed);
    let connect_retries = shared.connect_retries.load(Ordering::Relaxed);

    // 4. Everyone leaves.
    shared.leaving.store(true, Ordering::Relaxed);
    for stop in stops.iter_mut().filter_map(Option::take) {
        let _ = stop.send(());
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_after_leave_mib, _) = cp.memory_mib();
    if let Some(reason) = shared
        .first_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        eprintln!("  first stream failure: {reason}");
    }
    drop(cp);
    let client_cpu_s =
        (procstat::cpu_ticks(&[std::process::id()]) - client_cpu_start) as f64 / ticks;
    Ok(StreamsRow {
        proxies: opts.proxies,
        services: opts.services,
        burst_settled_s,
        burst_synced,
        change_ms: [50.0, 90.0, 99.0, 100.0].map(|p| percentile(&latencies_ms, p)),
        change_missed,
        cpu_per_change_s: cpu_total / changes,
        bytes_per_change: (bytes_total as f64 / changes) as u64,
        snapshot_bytes: shared.last_size.load(Ordering::Relaxed),
        rss_settled_mib,
        rss_peak_mib,
        rss_after_leave_mib,
        proxy_rss_mib,
        drops,
        connect_retries,
        churn,
        client_cpu_s,
    })
}

/// CSR signings per second on one core: the control plane's CA signing a
/// proxy's CSR (its signature checked, the leaf made and signed), on this
/// thread, for about a second of its CPU time (so a busy machine stretches
/// the run, not the figure). Token checks and the gRPC call are not in it.
pub fn csr_signings_per_second() -> anyhow::Result<f64> {
    use remora_certs::{Ca, SpiffeId, TrustDomain, WorkloadKey};
    let ca = Ca::generate(TrustDomain::new("cluster.local")?)?;
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/svc-0")?;
    let csr = WorkloadKey::generate()?.csr(&id)?;
    let start = crate::control_plane::thread_cpu();
    let wall = Instant::now();
    let mut signed = 0u32;
    let mut used = Duration::ZERO;
    while (used < Duration::from_secs(1) || signed < 10) && wall.elapsed() < Duration::from_secs(20)
    {
        ca.sign_csr(csr.as_bytes(), &id, Duration::from_secs(86_400))?;
        signed += 1;
        used = crate::control_plane::thread_cpu().saturating_sub(start);
    }
    if used.is_zero() {
        bail!("cannot read this thread's CPU time from /proc/thread-self/schedstat");
    }
    Ok(f64::from(signed) / used.as_secs_f64())
}

/// The Markdown table of `rows`.
pub fn markdown(rows: &[StreamsRow], csr_per_s: f64) -> String {
    let mut out = String::from(
        "| proxies × services | burst settled | change → proxy p50 / p90 / p99 / max | missed | CP CPU per change | bytes per change (snapshot) | CP RSS settled / peak / after leave | a proxy's RSS: Sidecar of 1 service / all | drops (connect retries) | churn |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let settled = r.burst_settled_s.map_or_else(
            || {
                format!(
                    "**not settled** ({} of {} synced)",
                    r.burst_synced, r.proxies
                )
            },
            |s| format!("{s:.2} s"),
        );
        let churn = r.churn.as_ref().map_or_else(
            || "–".to_owned(),
            |c| {
                format!(
                    "{:.0}/s asked, {:.0}/s done, {:.1} MB per event, {} dropped, caught up {}",
                    c.rate,
                    c.done_per_s,
                    c.bytes_per_event as f64 / 1e6,
                    c.drops,
                    c.catch_up_s
                        .map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s after"))
                )
            },
        );
        let proxy_rss = r.proxy_rss_mib.map_or_else(
            || "–".to_owned(),
            |[scoped, all]| format!("{scoped:.1} / {all:.1} MiB"),
        );
        let _ = writeln!(
            out,
            "| {} × {} | {settled} | {:.0} / {:.0} / {:.0} / {:.0} ms | {} | {:.3} s | {:.1} MB ({:.0} KB) | {:.0} / {:.0} / {:.0} MiB | {proxy_rss} | {} ({}) | {churn} |",
            r.proxies,
            r.services,
            r.change_ms[0],
            r.change_ms[1],
            r.change_ms[2],
            r.change_ms[3],
            r.change_missed,
            r.cpu_per_change_s,
            r.bytes_per_change as f64 / 1e6,
            r.snapshot_bytes as f64 / 1e3,
            r.rss_settled_mib,
            r.rss_peak_mib,
            r.rss_after_leave_mib,
            r.drops,
            r.connect_retries,
        );
    }
    let _ = writeln!(
        out,
        "\nDiscovery plaintext (`--allow-plaintext-discovery --trust-advertised-address`); the \
         simulated proxies share the machine with the control plane. CSR signings on one core: \
         {csr_per_s:.0}/s."
    );
    out
}
