//! `remora-proxy`: the sidecar. Binds its listeners, registers with the
//! control plane, and starts serving once the first config has arrived.
//!
//! Two subcommands run beside it in the same pod: `remora-proxy init`
//! installs the capture rules ([`remora_proxy::capture`]) and
//! `remora-proxy wait-ready` waits until the sidecar is ready.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use remora_proto::error_chain;
use remora_proto::pb;
use remora_proxy::app_health::{AppHealth, AppProbe};
use remora_proxy::capture::{self, InitArgs, nft};
use remora_proxy::discovery;
use remora_proxy::http::{ProxyBody, local_reply};
use remora_proxy::identity::{self, Identity, IdentityArgs};
use remora_proxy::lifecycle::{Lifecycle, parse_duration};
use remora_proxy::limits::{self, ConnectionLimits, HeaderLimits, Timeouts};
use remora_proxy::listener::{self, CaptureSettings, inbound::Inbound, outbound::Outbound};
use remora_proxy::retry::{Backoff, BudgetSettings, Retries};
use remora_proxy::state::ConfigState;
use remora_proxy::telemetry::access_log::{AccessLog, Format as AccessLogFormat};
use remora_proxy::telemetry::trace::{SamplingControl, SamplingRatio, TraceConfig, Tracer};
use remora_proxy::telemetry::{Telemetry, Workload, log_level, metrics};
use remora_proxy::wait_ready::{WaitReadyArgs, wait_ready};
use remora_proxy::{admin, events, health};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Remora's sidecar proxy.
#[derive(Debug, Parser)]
#[command(
    name = "remora-proxy",
    version,
    about,
    after_help = "Subcommands (each has its own --help):\n  \
                  remora-proxy init        install the transparent capture rules in this network namespace\n  \
                  remora-proxy wait-ready  wait until the proxy answers ready on its health port"
)]
struct Args {
    /// The service this proxy stands beside, e.g. `reviews`.
    #[arg(long, env = "REMORA_SERVICE")]
    service: String,
    /// The workload's namespace.
    #[arg(long, env = "REMORA_NAMESPACE", default_value = "default")]
    namespace: String,
    /// A workload label `key=value` (repeat for more); subsets select on these.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// This proxy's name, unique in the mesh; it registers as
    /// `<pod name>.<namespace>`. Kubernetes: the pod's name (`remora inject`
    /// sets it from the downward API). Default: in a container (the proxy
    /// is its pid 1) `<service>-<hostname>`, the hostname being what Docker
    /// and Compose make the container's ID; elsewhere `<service>-<pid>`.
    #[arg(long, env = "REMORA_POD_NAME", value_parser = parse_pod_name)]
    pod_name: Option<String>,
    /// The workload's service account (default: the service name).
    #[arg(long, env = "REMORA_SERVICE_ACCOUNT")]
    service_account: Option<String>,
    /// The control plane's discovery address.
    #[arg(
        long,
        env = "REMORA_CONTROL_PLANE",
        default_value = "http://127.0.0.1:15010"
    )]
    control_plane: String,
    /// Where the app sends its outbound requests. When this is
    /// `127.0.0.1:<port>` with a fixed port, the proxy also listens on
    /// `[::1]:<port>` where the host has IPv6: capture redirects the app's
    /// IPv6 connections there.
    #[arg(long, default_value = "127.0.0.1:15001")]
    outbound: SocketAddr,
    /// Where peers' requests for this app arrive.
    #[arg(long, default_value = "0.0.0.0:15006")]
    inbound: SocketAddr,
    /// The address peers should use to reach `--inbound` (default: the
    /// bound address, or when that is unspecified, this host's address on
    /// the route to the control plane).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// The app, which inbound requests are forwarded to.
    #[arg(long, default_value = "127.0.0.1:8080")]
    app: String,
    /// How the app's health is probed: unset, a TCP connect to `--app`; an
    /// HTTP path (e.g. `/ready`), `GET` on `--app` answered 200–399; `off`,
    /// never (the app always counts as ready). While a probe fails, the
    /// control plane keeps the endpoint out of every snapshot.
    #[arg(long, env = "REMORA_APP_HEALTH")]
    app_health: Option<String>,
    /// The pause between two probes of the app (an inbound request that
    /// cannot connect to the app also starts one at once).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    app_health_interval: Duration,
    /// The admin API.
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Prometheus metrics: `GET /stats/prometheus`.
    #[arg(long, default_value = "0.0.0.0:15090")]
    stats_addr: SocketAddr,
    /// Health: `GET /healthz/ready` (200 once the proxy may serve, else 503).
    #[arg(long, default_value = "0.0.0.0:15021")]
    health_addr: SocketAddr,
    /// Do not listen for inbound requests (a client-only workload).
    #[arg(long)]
    no_inbound: bool,
    /// Retry budget: retries may add this percentage of the requests to a
    /// service in the window (Linkerd's default: 20).
    #[arg(long, default_value_t = 20.0, value_parser = parse_percent)]
    retry_budget_percent: f64,
    /// Retry budget: retries allowed per second regardless of traffic.
    #[arg(long, default_value_t = 10)]
    retry_budget_min_per_sec: u32,
    /// Retry budget: the window requests and retries are counted over, in
    /// whole seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    retry_budget_window_secs: u64,
    /// Retry backoff: retry n waits a random time below (2^n − 1) × this,
    /// and never 10 × this or more (Envoy's `base_interval`).
    #[arg(long, default_value = "25ms", value_parser = parse_backoff_base)]
    retry_backoff_base: Duration,
    /// Request bodies up to this many bytes (by `Content-Length`) are kept
    /// so that a retry can send them again; larger ones are streamed and
    /// never retried.
    #[arg(long, default_value_t = remora_proxy::retry::DEFAULT_BUFFER_BYTES)]
    retry_buffer_bytes: usize,
    /// Access log: one line per request, written when its response ends.
    #[arg(long, value_enum, default_value = "json", env = "REMORA_ACCESS_LOG")]
    access_log: AccessLogFormat,
    /// Where access log lines go: `-` for stdout (beside the JSON events,
    /// which carry an `event` key and log lines do not), or a file path
    /// (appended to).
    #[arg(long, default_value = "-")]
    access_log_path: String,
    /// OTLP/gRPC collector for traces, e.g. `http://jaeger:4317`; else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`. Without one no span is built, but trace
    /// headers still pass through.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Percentage of new traces recorded; a caller's sampling decision is
    /// followed. Given, it wins over the control plane's `--trace-sampling`;
    /// unset, the control plane's applies, else Istio's default: 1.
    #[arg(
        long,
        value_parser = SamplingRatio::parse_percent,
        env = "REMORA_TRACE_SAMPLING"
    )]
    trace_sampling: Option<SamplingRatio>,
    /// Threads serving requests, as Envoy's `--concurrency`: 0 means one
    /// per CPU this process may run on (its affinity mask). With one, every
    /// task runs on the main thread with no hand-off between threads: the
    /// cheapest per request, and what a sidecar limited to one CPU wants.
    #[arg(long, env = "REMORA_CONCURRENCY", default_value_t = 0)]
    concurrency: usize,
    /// Request line and headers, in KiB, as Envoy's `max_request_headers_kb`:
    /// a request over it is answered 431 with the reason, by the sidecar it
    /// enters the mesh at, and never reaches the connection between
    /// sidecars. Every proxy of a mesh should have the same value.
    #[arg(
        long,
        env = "REMORA_MAX_REQUEST_HEADERS_KB",
        default_value_t = remora_proxy::limits::DEFAULT_HEADERS_KB,
        value_parser = clap::value_parser!(u32).range(1..=8192)
    )]
    max_request_headers_kb: u32,
    /// Response headers, in KiB, as Envoy's `max_response_headers_kb`: an
    /// upstream's response over it is answered 502 with the reason.
    #[arg(
        long,
        env = "REMORA_MAX_RESPONSE_HEADERS_KB",
        default_value_t = remora_proxy::limits::DEFAULT_HEADERS_KB,
        value_parser = clap::value_parser!(u32).range(1..=8192)
    )]
    max_response_headers_kb: u32,
    /// Headers per request or response, as Envoy's `max_headers_count`.
    #[arg(
        long,
        env = "REMORA_MAX_HEADERS_COUNT",
        default_value_t = remora_proxy::limits::DEFAULT_HEADERS_COUNT as u32,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    max_headers_count: u32,
    /// On SIGTERM or `POST /quitquitquit`: how long to drain before exiting
    /// (Istio's terminationDrainDuration). Inbound stops accepting at once
    /// and finishes its requests in flight; outbound keeps serving the app's
    /// last calls until the end.
    #[arg(
        long,
        env = "REMORA_DRAIN_DURATION",
        default_value = "5s",
        value_parser = parse_duration
    )]
    drain_duration: Duration,
    /// Captured connections: how long one may stay silent before it is
    /// forwarded as opaque TCP (a server-first protocol, whose greeting
    /// waits this long), e.g. `100ms`, `1s`.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    protocol_detection_timeout: Duration,
    /// Captured connections to these ports (comma-separated) are opaque
    /// TCP without detection, both ways (Linkerd's opaque ports); ports a
    /// ServiceEntry declares TCP need not be listed.
    #[arg(long, value_delimiter = ',')]
    opaque_ports: Vec<u16>,
    /// From accept until the protocol is known (TLS handshake, HTTP
    /// version, opaque TCP), as Envoy's `listener_filters_timeout`; a
    /// client that sends a byte or a partial preface and stops is closed.
    /// `0s` turns it off.
    #[arg(long, env = "REMORA_LISTENER_FILTERS_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    listener_filters_timeout: Duration,
    /// From the first byte of an HTTP/1 request head to its end, as
    /// Envoy's `request_headers_timeout` (off in Envoy; finite here, since
    /// a head is sent at once and a slowloris is not).
    #[arg(long, env = "REMORA_REQUEST_HEADERS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    request_headers_timeout: Duration,
    /// Requests in flight on a connection and no byte either way, as
    /// Envoy's `stream_idle_timeout`.
    #[arg(long, env = "REMORA_STREAM_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    stream_idle_timeout: Duration,
    /// An HTTP connection with no request in flight and no byte either
    /// way, as Envoy's `idle_timeout`.
    #[arg(long, env = "REMORA_IDLE_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// An opaque TCP connection with no byte either way, as Envoy's
    /// tcp_proxy `idle_timeout`.
    #[arg(long, env = "REMORA_TCP_IDLE_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    tcp_idle_timeout: Duration,
    /// Connections each listener holds, as Envoy's listener
    /// `max_connections`. Default: a quarter of the open-file limit (which
    /// the proxy raises to its hard limit at start), at most 16384.
    #[arg(long, env = "REMORA_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: Option<u64>,
    /// Percent of `--max-connections` on the inbound listener kept for
    /// mTLS peers with an identity: connections without one hold the rest.
    #[arg(
        long,
        env = "REMORA_MTLS_RESERVE_PERCENT",
        default_value_t = remora_proxy::limits::DEFAULT_MTLS_RESERVE_PERCENT,
        value_parser = clap::value_parser!(u8).range(0..=90)
    )]
    mtls_reserve_percent: u8,
    #[command(flatten)]
    identity: IdentityArgs,
}

/// `remora-proxy init`.
#[derive(Debug, Parser)]
#[command(
    name = "init",
    bin_name = "remora-proxy init",
    version,
    about = "Installs the rules that send the pod's TCP through the sidecar \
             (outbound to 15001, inbound to 15006), in the network namespace this runs in."
)]
struct InitCommand {
    #[command(flatten)]
    args: InitArgs,
}

/// `remora-proxy wait-ready`.
#[derive(Debug, Parser)]
#[command(
    name = "wait-ready",
    bin_name = "remora-proxy wait-ready",
    version,
    about = "Exits 0 once the proxy answers 200 on /healthz/ready, or 1 with the reason \
             when it does not within --timeout."
)]
struct WaitReadyCommand {
    #[command(flatten)]
    args: WaitReadyArgs,
}

impl Args {
    /// `--concurrency`, with 0 resolved to the CPUs this process may use.
    fn worker_threads(&self) -> usize {
        match self.concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!("`{s}` is not a percentage (a number, 0 or more)")),
    }
}

/// `--retry-backoff-base`: a duration from 1 ms to 10 s (Envoy, too, wants
/// a base above zero).
fn parse_backoff_base(s: &str) -> Result<Duration, String> {
    let base = parse_duration(s)?;
    if (Duration::from_millis(1)..=Duration::from_secs(10)).contains(&base) {
        Ok(base)
    } else {
        Err(format!("`{s}` is not between 1ms and 10s"))
    }
}

/// `--pod-name`: a DNS label or subdomain, as Kubernetes' pod names are.
fn parse_pod_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.']);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a pod name (lower-case letters, digits, '-' and '.', at most 253)"
        ))
    }
}

/// The name this proxy registers under: `--pod-name`, else in a container
/// (pid 1, where the pid names nothing) `<service>-<hostname>`, else
/// `<service>-<pid>`.
fn pod_name(args: &Args) -> String {
    if let Some(name) = &args.pod_name {
        return name.clone();
    }
    let pid = std::process::id();
    let host = (pid == 1)
        .then(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .flatten();
    default_pod_name(&args.service, pid, host.as_deref())
}

fn default_pod_name(service: &str, pid: u32, hostname: Option<&str>) -> String {
    match hostname.map(str::trim).filter(|h| !h.is_empty()) {
        Some(host) => format!("{service}-{host}"),
        None => format!("{service}-{pid}"),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("label `{s}` is not key=value")),
    }
}

fn main() -> ExitCode {
    // `RUST_LOG` or `info`, changeable at run time by the admin `/logging`.
    log_level::init("info");
    // Without a subcommand the proxy runs, with exactly the flags it always had.
    let subcommand = std::env::args_os().nth(1);
    let result = match subcommand.as_deref().and_then(OsStr::to_str) {
        Some("init") => init(InitCommand::parse_from(std::env::args_os().skip(1)).args),
        Some("wait-ready") => {
            run_wait_ready(WaitReadyCommand::parse_from(std::env::args_os().skip(1)).args)
        }
        _ => start(Args::parse()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, each cause once (anyhow's report would repeat the
            // causes our messages already name).
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `remora-proxy init`: prints, installs or removes the capture rules.
fn init(args: InitArgs) -> anyhow::Result<()> {
    let script = if args.cleanup {
        capture::cleanup_script()
    } else {
        args.capture().ruleset()
    };
    if args.dry_run {
        print!("{script}");
        return Ok(());
    }
    let (what, done) = if args.cleanup {
        ("cannot remove the capture rules", "removed")
    } else {
        ("cannot install the capture rules", "installed")
    };
    let nft = nft::locate(args.nft.as_deref()).context(what)?;
    nft::apply(&nft, &script).context(what)?;
    events::emit("capture", &[("action", done), ("table", capture::TABLE)]);
    Ok(())
}

/// `remora-proxy wait-ready`.
fn run_wait_ready(args: WaitReadyArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(wait_ready(&args))
        .map_err(anyhow::Error::msg)?;
    events::emit("ready", &[("health", &args.health_addr.to_string())]);
    Ok(())
}

fn start(args: Args) -> anyhow::Result<()> {
    limits::set_headers(HeaderLimits::new(
        args.max_request_headers_kb,
        args.max_response_headers_kb,
        args.max_headers_count as usize,
    ));
    limits::set_timeouts(Timeouts {
        listener_filters: args.listener_filters_timeout,
        request_headers: args.request_headers_timeout,
        stream_idle: args.stream_idle_timeout,
        idle: args.idle_timeout,
        tcp_idle: args.tcp_idle_timeout,
    });
    let open_files = limits::raise_open_files();
    let mut connections = ConnectionLimits::for_open_files(open_files);
    if let Some(max) = args.max_connections {
        connections.max = max as usize;
    }
    connections.mtls_reserve_percent = args.mtls_reserve_percent;
    tracing::info!(
        open_files,
        max_connections = connections.max,
        "connection limits"
    );
    limits::set_connections(connections);
    let workers = args.worker_threads();
    let mut runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, workers))
}

async fn run(args: Args, workers: usize) -> anyhow::Result<()> {
    let outbound = bind(args.outbound, "outbound").await?;
    let outbound_v6 = bind_ipv6_loopback_twin(args.outbound).await;
    let inbound = if args.no_inbound {
        None
    } else {
        Some(bind(args.inbound, "inbound").await?)
    };
    let admin_listener = bind(args.admin, "admin").await?;
    let stats_listener = bind(args.stats_addr, "stats").await?;
    let health_listener = bind(args.health_addr, "health").await?;

    // The proxy's own ports: a tunnel or a captured connection never
    // reaches them.
    let mut own_ports = vec![
        outbound.local_addr()?.port(),
        admin_listener.local_addr()?.port(),
        stats_listener.local_addr()?.port(),
        health_listener.local_addr()?.port(),
    ];
    if let Some(l) = &inbound {
        own_ports.push(l.local_addr()?.port());
    }
    let mut listening = vec![("outbound", outbound.local_addr()?.to_string())];
    if let Some(l) = &outbound_v6 {
        listening.push(("outbound_ipv6", l.local_addr()?.to_string()));
    }
    if let Some(l) = &inbound {
        listening.push(("inbound", l.local_addr()?.to_string()));
    }
    listening.push(("admin", admin_listener.local_addr()?.to_string()));
    listening.push(("stats", stats_listener.local_addr()?.to_string()));
    listening.push(("health", health_listener.local_addr()?.to_string()));
    let fields: Vec<(&str, &str)> = listening.iter().map(|(k, v)| (*k, v.as_str())).collect();
    events::emit("listening", &fields);

    let inbound_address = match &inbound {
        Some(l) => advertised(args.advertise, l.local_addr()?, &args.control_plane)?.to_string(),
        None => String::new(),
    };
    let service_account = args
        .service_account
        .clone()
        .unwrap_or_else(|| args.service.clone());

    // The certificate before anything else: the CA's refusal stops the proxy here, and the
    // mTLS state exists before the config that uses it. Meanwhile the health, admin and
    // metrics ports answer at once, 503 with the reason.
    // One signal listener for the whole life of the process: a SIGTERM
    // that comes between two waits is kept, not lost.
    // Without a token there is nothing to wait for, and no early answers: a
    // probe must not be told the proxy is requesting a certificate it will
    // never request.
    let mut signals = ShutdownSignals::new()?;
    let settings =
        args.identity
            .settings(&args.control_plane, &args.namespace, &service_account)?;
    let (early_stop, early) = watch::channel(false);
    let (admin_listener, stats_listener, health_listener) = if settings.is_some() {
        let (admin_listener, early_admin) = twin(admin_listener)?;
        let (stats_listener, early_stats) = twin(stats_listener)?;
        let (health_listener, early_health) = twin(health_listener)?;
        for (name, l) in [
            ("admin", early_admin),
            ("stats", early_stats),
            ("health", early_health),
        ] {
            tokio::spawn(listener::serve(
                name,
                l,
                Arc::new(()),
                starting,
                early.clone(),
            ));
        }
        (admin_listener, stats_listener, health_listener)
    } else {
        (admin_listener, stats_listener, health_listener)
    };
    let started = tokio::select! {
        identity = start_identity(&args, settings) => identity?,
        _ = signals.recv() => return Ok(()),
    };
    let _ = early_stop.send(true);
    let (identity, discovery_tls) = match started {
        Some((identity, tls)) => (Some(identity), tls),
        None => (None, None),
    };
    let mesh_tls: Option<remora_certs::MeshTls> = identity.as_ref().map(|i| i.mesh_tls().clone());
    // With an identity, discovery goes over mTLS to the control plane's TLS port: the
    // certificate, not the node's claims, is who the control plane registers.
    let control_plane = match (&identity, discovery_tls) {
        (Some(identity), Some(address)) => discovery::ControlPlane::tls(
            address,
            identity.mesh_tls(),
            &identity.id().trust_domain(),
        )
        .context("cannot set up mTLS to the control plane")?,
        _ => discovery::ControlPlane::Plaintext(args.control_plane.clone()),
    };

    let node = pb::Node {
        id: format!("{}.{}", pod_name(&args), args.namespace),
        service: args.service.clone(),
        namespace: args.namespace.clone(),
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        service_account,
        inbound_address,
        mtls: mesh_tls.is_some(),
        app_port: app_port(&args.app)?,
        // Filled in from the app's probe on each (re)connect.
        app_health: None,
        // Registrations and route changes then send what changed, not the whole
        // snapshot, and a route change one virtual host, not every route.
        accepts_incremental: true,
        accepts_resource_increments: true,
        protocol: remora_proto::PROTOCOL,
    };
    tracing::info!(
        node = node.id,
        workers,
        inbound = node.inbound_address,
        control_plane = %control_plane,
        "starting"
    );

    let trace_sampling = SamplingControl::new(args.trace_sampling);
    let state =
        Arc::new(ConfigState::new(mesh_tls.clone()).with_trace_sampling(trace_sampling.clone()));
    if let Some(identity) = &identity {
        let _ = state.identity.set(Arc::clone(identity));
    }
    let (stop_tx, stop) = watch::channel(false);
    let lifecycle = Arc::new(Lifecycle::new(args.admin.ip().is_loopback()));
    tokio::spawn(listener::serve(
        "admin",
        admin_listener,
        Arc::new(admin::Admin {
            config: Arc::clone(&state),
            lifecycle: Arc::clone(&lifecycle),
        }),
        admin::handle,
        stop.clone(),
    ));
    metrics::watch_config(Arc::<ConfigState>::clone(&state));
    tokio::spawn(listener::serve(
        "stats",
        stats_listener,
        Arc::new(()),
        admin::handle_scrape,
        stop.clone(),
    ));
    tokio::spawn(listener::serve(
        "health",
        health_listener,
        Arc::new(health::Health {
            config: Arc::clone(&state),
            lifecycle: Arc::clone(&lifecycle),
        }),
        health::handle,
        stop.clone(),
    ));
    // The app's first probe before registering: the registration says
    // whether the app is up.
    let app_health = app_health(&args)?;
    if let Some(app) = &app_health {
        app.probe_once().await;
        let _ = state.app.set(Arc::clone(app));
        let app = Arc::clone(app);
        tokio::spawn(async move { app.run().await });
    }
    let discovery = tokio::spawn(discovery::run(control_plane, node, Arc::clone(&state)));

    // Serve only with a config (and, with mTLS, the certificate obtained above):
    // connections wait in the backlog until then. Biased: once the config is
    // there the proxy serves, and a quit that came meanwhile (the `ready`
    // event is out before this task runs again) is kept for the drain below;
    // a random pick would end the proxy here, without its drain.
    let mut ready = state.ready.subscribe();
    tokio::select! {
        biased;
        _ = async { let _ = ready.wait_for(|r| *r).await; } => {}
        _ = signals.recv() => return Ok(()),
        () = lifecycle.quit_requested() => return Ok(()),
    }

    let out: Box<dyn std::io::Write + Send> = if args.access_log_path == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&args.access_log_path)
                .with_context(|| format!("cannot open the access log {}", args.access_log_path))?,
        )
    };
    let trace_config = TraceConfig::from_env(
        args.otlp_endpoint.as_deref(),
        &args.service,
        Some(&args.namespace),
        trace_sampling.ratio(),
    )?;
    let tracer = Tracer::with_sampling(trace_config, trace_sampling)?;
    tracing::info!(enabled = tracer.is_enabled(), "traces");
    let telemetry = Arc::new(Telemetry {
        access_log: AccessLog::spawn(args.access_log, out),
        tracer: tracer.clone(),
        workload: Workload::new(
            &args.service,
            &args.namespace,
            args.labels
                .iter()
                .find(|(k, _)| k == "version")
                .map(|(_, v)| v.as_str()),
        ),
    });
    let mut tasks = Vec::new();
    let budget = BudgetSettings {
        ratio: args.retry_budget_percent / 100.0,
        min_per_sec: args.retry_budget_min_per_sec,
        ttl: Duration::from_secs(args.retry_budget_window_secs),
    };
    let capture = CaptureSettings {
        silence: args.protocol_detection_timeout,
        opaque_ports: args.opaque_ports.iter().copied().collect(),
    };
    let out = Arc::new(Outbound {
        config: Arc::clone(&state.current),
        retries: Retries::new(budget, args.retry_buffer_bytes)
            .with_backoff(Backoff::new(args.retry_backoff_base)),
        telemetry: Arc::clone(&telemetry),
        capture: capture.clone(),
    });
    if let Some(l) = outbound_v6 {
        tasks.push(tokio::spawn(listener::serve_outbound(
            l,
            Arc::clone(&out),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(listener::serve_outbound(
        outbound,
        out,
        stop.clone(),
    )));
    // The inbound side stops first, when the drain begins.
    let (drain_tx, drain) = watch::channel(false);
    if let Some(l) = inbound {
        let inb = Inbound::new(&args.app, Arc::clone(&state.current), telemetry, mesh_tls)?
            .with_capture(capture, own_ports)
            .with_app_health(app_health);
        let app = Arc::clone(&inb.app);
        metrics::watch_app(move || app.open_connections());
        tasks.push(tokio::spawn(listener::serve_inbound(
            l,
            Arc::new(inb),
            drain,
        )));
    }

    let cause = tokio::select! {
        _ = signals.recv() => "signal",
        () = lifecycle.quit_requested() => "/quitquitquit",
    };
    drain_then_stop(
        cause,
        args.drain_duration,
        &lifecycle,
        &discovery,
        &drain_tx,
        &stop_tx,
        tasks,
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tracer.shutdown()).await;
    Ok(())
}

/// The drain ([`remora_proxy::lifecycle`]): readiness turns 503, the
/// discovery stream ends (the control plane drops this endpoint), inbound
/// stops accepting and finishes what is in flight, outbound serves on; at
/// `duration` everything stops.
async fn drain_then_stop(
    cause: &str,
    duration: Duration,
    lifecycle: &Lifecycle,
    discovery: &tokio::task::JoinHandle<()>,
    drain: &watch::Sender<bool>,
    stop: &watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    let millis = duration.as_millis().to_string();
    events::emit("draining", &[("cause", cause), ("drain_ms", &millis)]);
    tracing::info!(cause, ?duration, "shutting down: draining connections");
    lifecycle.start_draining();
    discovery.abort();
    let _ = drain.send(true);
    let deadline = tokio::time::Instant::now() + duration;
    tokio::time::sleep_until(deadline).await;
    let _ = stop.send(true);
    // What is still open at the deadline is cut: the drain is over. The
    // listeners' tasks get a moment to close their sockets in order, and
    // opaque TCP connections are closed (a FIN each way) and recorded.
    let _ = tokio::time::timeout(
        Duration::from_millis(100),
        futures_util::future::join_all(tasks),
    )
    .await;
    listener::tcp::end_all(Duration::from_secs(1)).await;
    events::emit("drained", &[("cause", cause)]);
}

/// With a token: the first certificate (retrying while the CA is unreachable, failing when it
/// refuses) and the renewal task. Without: `None`, and mTLS is off.
async fn start_identity(
    args: &Args,
    settings: Option<identity::IdentitySettings>,
) -> anyhow::Result<Option<(Arc<Identity>, Option<identity::CaAddress>)>> {
    let Some(settings) = settings else {
        if args.identity.ca_cert.is_some() || args.identity.ca_address.is_some() {
            tracing::warn!("--ca-cert and --ca-address are unused without a token");
        }
        events::emit(
            "identity",
            &[
                ("mtls", "off"),
                (
                    "reason",
                    "no token (--token or --token-file): no certificate, mTLS is off",
                ),
            ],
        );
        return Ok(None);
    };
    let started = identity::start(settings)
        .await
        .context("no workload certificate")?;
    Ok(Some(started))
}

/// The app's probe (`--app-health`), unless the proxy has no inbound side
/// or the probe is `off`.
fn app_health(args: &Args) -> anyhow::Result<Option<Arc<AppHealth>>> {
    if args.no_inbound {
        return Ok(None);
    }
    let probe =
        AppProbe::from_flag(&args.app, args.app_health.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(probe.map(|p| Arc::new(AppHealth::new(p, args.app_health_interval))))
}

/// `listener` and a second handle on its socket: the early answers accept
/// on the second until the proxy's own servers take over.
fn twin(listener: TcpListener) -> anyhow::Result<(TcpListener, TcpListener)> {
    let std = listener.into_std()?; // non-blocking, and so is its clone
    let twin = std.try_clone()?;
    Ok((TcpListener::from_std(std)?, TcpListener::from_std(twin)?))
}

/// What the health, admin and metrics ports answer while the proxy waits
/// for its first certificate: 503 and why, at once, rather than a request
/// that hangs until its client gives up.
async fn starting(
    _: Arc<()>,
    _: http::Request<hyper::body::Incoming>,
) -> http::Response<ProxyBody> {
    let reason = match identity::bootstrap_error() {
        Some(error) => format!("starting: no workload certificate yet: {error}"),
        None => "starting: requesting the workload certificate".to_owned(),
    };
    local_reply(http::StatusCode::SERVICE_UNAVAILABLE, reason)
}

/// The port of `--app` (`host:port`), which the control plane matches port-level policy on.
fn app_port(app: &str) -> anyhow::Result<u32> {
    app.rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .map(u32::from)
        .with_context(|| format!("--app `{app}` is not host:port"))
}

/// For `--outbound 127.0.0.1:<port>` (a fixed port): a listener on
/// `[::1]:<port>`, where the app's captured IPv6 connections arrive. `None`
/// for other addresses, or when it cannot be bound (no IPv6: logged).
async fn bind_ipv6_loopback_twin(outbound: SocketAddr) -> Option<TcpListener> {
    if outbound.ip() != std::net::Ipv4Addr::LOCALHOST || outbound.port() == 0 {
        return None;
    }
    let twin = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, outbound.port()));
    match TcpListener::bind(twin).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::info!(addr = %twin, error = %e, "no IPv6 outbound listener");
            None
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// The inbound address to register: `--advertise`, else the bound address,
/// else (bound to 0.0.0.0) the local address the kernel would use to reach
/// the control plane — in a container, the container's own IP.
fn advertised(
    flag: Option<SocketAddr>,
    bound: SocketAddr,
    control_plane: &str,
) -> anyhow::Result<SocketAddr> {
    if let Some(a) = flag {
        return Ok(a);
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    let uri: http::Uri = control_plane
        .parse()
        .context("--control-plane is not a URI")?;
    let host = uri.host().context("--control-plane has no host")?;
    let port = uri.port_u16().unwrap_or(15010);
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.trim_matches(['[', ']']), port))
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("cannot resolve control plane host {host}; pass --advertise"))?;
    let probe = std::net::UdpSocket::bind((bound.ip(), 0))?;
    probe.connect(target)?; // no packet is sent: this only asks the routing table
    Ok(SocketAddr::new(probe.local_addr()?.ip(), bound.port()))
}

/// SIGTERM and SIGINT, listened for from the start: a signal that comes
/// while nothing awaits it is kept until the next [`ShutdownSignals::recv`].
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// Resolves at the next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests;
