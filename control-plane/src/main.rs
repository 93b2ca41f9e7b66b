//! `remora`: the control plane. `remora serve` reads the config directory
//! and pushes each proxy its snapshot; `remora validate` checks files the
//! way `serve` would, without serving; `remora proxy-status` asks a running
//! control plane which proxies run which version; `remora describe` shows
//! which route and destination a request would take; `remora token create`
//! prints a bootstrap token with which a proxy gets its certificate;
//! `remora bootstrap` writes one into a directory with the CA certificate;
//! `remora inject` adds the sidecar to Kubernetes manifests or a Compose file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remora_control_plane::admission::AdmissionPolicy;
use remora_control_plane::config::{self, Severity};
use remora_control_plane::discovery::DiscoveryService;
use remora_control_plane::events::emit;
use remora_control_plane::grpc;
use remora_control_plane::identity::{IdentityArgs, TokenCommand};
use remora_control_plane::mesh::Mesh;
use remora_control_plane::metrics::Metrics;
use remora_control_plane::monitoring::{self, Monitoring};
use remora_control_plane::path_normalization;
use remora_control_plane::status::ProxyTracker;
use remora_control_plane::translate::{MeshSettings, OutboundTrafficPolicy, TraceSampling};
use remora_control_plane::watch::{ConfigDir, Watcher};
use remora_control_plane::{describe, proxy_status};
use remora_proto::error_chain;
use remora_proto::pb;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

/// Remora's control plane.
#[derive(Debug, Parser)]
#[command(name = "remora", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve discovery to proxies, following the config directory.
    Serve {
        /// Directory of Istio-style YAML files (`*.yaml`, `*.yml`), read
        /// every 250 ms. Without it, every registered service gets a
        /// default route to all of its endpoints.
        #[arg(long, env = "REMORA_CONFIG_DIR")]
        config_dir: Option<PathBuf>,
        /// Where proxies connect (plaintext gRPC).
        #[arg(long, env = "REMORA_GRPC_ADDR", default_value = "0.0.0.0:15010")]
        grpc_addr: SocketAddr,
        /// Seconds after start during which proxies that reconnect with a
        /// config keep it, while the registry refills from reconnecting
        /// sidecars. Must exceed the proxies' maximum reconnect backoff (5 s).
        #[arg(long, env = "REMORA_WARMUP_SECS", default_value_t = 6.0)]
        warmup_secs: f64,
        /// Where `GET /metrics` (Prometheus) and `GET /debug/proxies`
        /// (JSON proxy status: every workload and its address) are served
        /// (plain HTTP, no authentication). Localhost by default; give
        /// `0.0.0.0:15014` for a Prometheus elsewhere, behind a firewall.
        #[arg(
            long,
            env = "REMORA_MONITORING_ADDR",
            default_value = "127.0.0.1:15014"
        )]
        monitoring_addr: SocketAddr,
        /// Development only: let proxies without a workload certificate
        /// (plaintext on --grpc-addr, or TLS without a client certificate)
        /// register and get config, trusting the service, namespace and
        /// service account they claim. Their endpoints are never reached
        /// with mTLS, and never at all by STRICT policy. Without it, only
        /// proxies that prove an identity on the TLS port register.
        #[arg(long, env = "REMORA_ALLOW_PLAINTEXT_DISCOVERY")]
        allow_plaintext_discovery: bool,
        /// Accept a registered inbound address on another IP than the one
        /// the proxy connects from (proxies behind NAT). By default a
        /// workload may register only its own IP.
        #[arg(long, env = "REMORA_TRUST_ADVERTISED_ADDRESS")]
        trust_advertised_address: bool,
        /// The CA, its data directory and the gRPC TLS port.
        #[command(flatten)]
        identity: IdentityArgs,
        /// The mesh root namespace: its PeerAuthentication without selector
        /// applies mesh-wide, its AuthorizationPolicies to every namespace.
        #[arg(long, env = "REMORA_ROOT_NAMESPACE", default_value = config::DEFAULT_ROOT_NAMESPACE,
              value_parser = config::namespace_arg)]
        root_namespace: String,
        /// Percentage of new traces every proxy records, 0 to 100 (Istio's
        /// `tracing.sampling`), sent in every snapshot. Unset: each proxy
        /// keeps its own (1% unless its `--trace-sampling` says otherwise);
        /// a proxy's own `--trace-sampling` always wins. Its variable is
        /// not the proxy's `REMORA_TRACE_SAMPLING`: set in an environment
        /// both share, that would pin every proxy and the push would
        /// change nothing.
        #[arg(long, env = "REMORA_MESH_TRACE_SAMPLING", value_parser = TraceSampling::parse)]
        trace_sampling: Option<TraceSampling>,
        /// How every proxy normalises request paths before routing and
        /// AuthorizationPolicy see them, and forwards them (Istio's
        /// `meshConfig.pathNormalization`): NONE, BASE (RFC 3986: unreserved
        /// characters decoded, `\` to `/`, dot segments resolved),
        /// MERGE_SLASHES (BASE and `//` to `/`) or DECODE_AND_MERGE_SLASHES
        /// (MERGE_SLASHES after decoding `%2F` and `%5C`).
        #[arg(long, env = "REMORA_PATH_NORMALIZATION", default_value = "BASE",
              value_parser = path_normalization::parse_path_normalization)]
        path_normalization: pb::PathNormalization,
        /// What `%2F` and `%5C` in a path become (Envoy's
        /// `path_with_escaped_slashes_action`): KEEP_UNCHANGED,
        /// REJECT_REQUEST (400) or UNESCAPE_AND_FORWARD. Unset: what
        /// `--path-normalization` implies (UNESCAPE_AND_FORWARD for
        /// DECODE_AND_MERGE_SLASHES, KEEP_UNCHANGED otherwise).
        #[arg(long, env = "REMORA_ESCAPED_SLASHES",
              value_parser = path_normalization::parse_escaped_slashes)]
        escaped_slashes: Option<pb::EscapedSlashesAction>,
        /// What a captured connection to a destination outside the mesh
        /// gets (Istio's `outboundTrafficPolicy.mode`): `ALLOW_ANY` lets it
        /// through to its original destination, `REGISTRY_ONLY` refuses it
        /// (HTTP: 502 with the reason; TCP: closed). Sent in every snapshot.
        #[arg(
            long,
            env = "REMORA_OUTBOUND_TRAFFIC_POLICY",
            value_enum,
            default_value = "ALLOW_ANY"
        )]
        outbound_traffic_policy: OutboundTrafficPolicy,
    },
    /// Add Remora's init container and sidecar to Kubernetes manifests or a
    /// Compose file (`-f FILE`, or `-f -` for stdin); the result goes to stdout.
    Inject(remora_control_plane::inject::InjectArgs),
    /// Write a service account's bootstrap token and the CA certificate into
    /// a directory, for its proxies' `--token-file` and `--ca-cert`.
    Bootstrap(remora_control_plane::bootstrap::BootstrapArgs),
    /// Bootstrap tokens, with which proxies get their first certificate.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Show each connected proxy's applied version and sync status, asking
    /// a running control plane's monitoring port; exits 1 if it cannot.
    ProxyStatus {
        /// The control plane's monitoring URL (`--monitoring-addr` of
        /// `remora serve`).
        #[arg(
            long,
            env = "REMORA_CONTROL_PLANE_ADMIN",
            default_value = proxy_status::DEFAULT_ADMIN_URL
        )]
        control_plane_admin: String,
    },
    /// Show which virtual host, route, match clause and weighted
    /// destinations a request would take, and why; exits 1 if it cannot.
    Describe(describe::DescribeArgs),
    /// Check YAML files or directories and print every problem; exits 1 on
    /// any error.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The mesh root namespace (as for `serve`).
        #[arg(long, env = "REMORA_ROOT_NAMESPACE", default_value = config::DEFAULT_ROOT_NAMESPACE,
              value_parser = config::namespace_arg)]
        root_namespace: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate {
            paths,
            root_namespace,
        } => validate(&paths, &root_namespace),
        Command::ProxyStatus {
            control_plane_admin,
        } => print_proxy_status(&control_plane_admin),
        Command::Token { command } => command.run(),
        Command::Inject(args) => args.run(),
        Command::Bootstrap(args) => args.run(),
        Command::Describe(args) => args.run(),
        Command::Serve {
            config_dir,
            grpc_addr,
            warmup_secs,
            monitoring_addr,
            allow_plaintext_discovery,
            trust_advertised_address,
            identity,
            root_namespace,
            trace_sampling,
            path_normalization,
            escaped_slashes,
            outbound_traffic_policy,
        } => {
            let Ok(warmup) = std::time::Duration::try_from_secs_f64(warmup_secs) else {
                eprintln!("error: --warmup-secs {warmup_secs} is not a duration in seconds");
                return ExitCode::FAILURE;
            };
            // Colours only on a terminal: `docker logs`, files and pipes
            // get plain text.
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(
                    std::io::IsTerminal::is_terminal(&std::io::stderr())
                        && std::env::var_os("NO_COLOR").is_none(),
                )
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            if allow_plaintext_discovery {
                let message = "--allow-plaintext-discovery: proxies without a certificate \
                               register as whatever service they claim; use it for \
                               development only, never where untrusted workloads can reach \
                               the gRPC port";
                tracing::warn!("{message}");
                emit("warning", json!({ "message": message }));
            }
            let proxies_variable = std::env::var_os(PROXY_SAMPLING_VARIABLE).is_some();
            if let Some(message) = misplaced_sampling(trace_sampling.is_some(), proxies_variable) {
                tracing::warn!("{message}");
                emit("warning", json!({ "message": message }));
            }
            if path_normalization == pb::PathNormalization::None {
                let message = "--path-normalization NONE: proxies match AuthorizationPolicy \
                               paths and routes on paths as received; `/api/../admin` is not \
                               `/admin` to a policy, but may be to the app";
                tracing::warn!("{message}");
                emit("warning", json!({ "message": message }));
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let addrs = Addrs {
                grpc: grpc_addr,
                monitoring: monitoring_addr,
            };
            let mesh = MeshFlags {
                root_namespace,
                trace_sampling,
                path_normalization,
                escaped_slashes: escaped_slashes.unwrap_or(pb::EscapedSlashesAction::Default),
                admission: AdmissionPolicy {
                    allow_plaintext: allow_plaintext_discovery,
                    bind_inbound_ip: !trust_advertised_address,
                },
                outbound_traffic_policy,
            };
            match runtime.block_on(serve(config_dir, addrs, warmup, identity, mesh)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", error_chain(e.as_ref()));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_proxy_status(admin: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(proxy_status::fetch(admin)) {
        Ok(proxies) => {
            print!("{}", proxy_status::render(&proxies));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(paths: &[PathBuf], root_namespace: &str) -> ExitCode {
    let files = match config::yaml_files(paths) {
        Ok(files) => files,
        Err(d) => {
            println!("{d}");
            return ExitCode::FAILURE;
        }
    };
    let mut diagnostics = Vec::new();
    let mut resources = Vec::new();
    for file in &files {
        let outcome = config::parse_file(file);
        diagnostics.extend(outcome.diagnostics);
        resources.extend(outcome.resources);
    }
    diagnostics.extend(config::check_references(&resources, root_namespace));
    for d in &diagnostics {
        println!("{d}");
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    println!(
        "{} file(s), {} resource(s): {errors} error(s), {warnings} warning(s)",
        files.len(),
        resources.len()
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Where `serve` listens.
struct Addrs {
    grpc: SocketAddr,
    monitoring: SocketAddr,
}

/// The mesh-wide flags of `serve`; with the trust domain they make the
/// [`MeshSettings`].
struct MeshFlags {
    root_namespace: String,
    trace_sampling: Option<TraceSampling>,
    path_normalization: pb::PathNormalization,
    escaped_slashes: pb::EscapedSlashesAction,
    admission: AdmissionPolicy,
    outbound_traffic_policy: OutboundTrafficPolicy,
}

async fn serve(
    config_dir: Option<PathBuf>,
    addrs: Addrs,
    warmup: std::time::Duration,
    identity: IdentityArgs,
    mesh_flags: MeshFlags,
) -> anyhow::Result<()> {
    let MeshFlags {
        root_namespace,
        trace_sampling,
        path_normalization,
        escaped_slashes,
        admission,
        outbound_traffic_policy,
    } = mesh_flags;
    let metrics = Metrics::new();
    let proxies = ProxyTracker::new(metrics.clone());
    let mesh = Arc::new(Mesh::with_warmup(warmup));
    // Stops polling when `serve` returns.
    let _watcher = if let Some(dir) = config_dir {
        anyhow::ensure!(
            dir.is_dir(),
            "--config-dir {} is not a directory",
            dir.display()
        );
        // The first read happens before serving, so no proxy ever gets a
        // snapshot that ignores the files.
        let mut dir =
            ConfigDir::with_metrics(dir, metrics.clone()).with_root_namespace(&root_namespace);
        if let Some(resources) = dir.poll() {
            mesh.set_config(resources);
        }
        Some(Watcher::spawn(dir, Arc::clone(&mesh)).context("cannot start the config watcher")?)
    } else {
        None
    };

    let grpc = remora_control_plane::grpc::bind(addrs.grpc)
        .with_context(|| format!("cannot listen for gRPC on {}", addrs.grpc))?;
    let monitoring = TcpListener::bind(addrs.monitoring)
        .await
        .with_context(|| format!("cannot listen for monitoring on {}", addrs.monitoring))?;
    let settings = MeshSettings {
        trust_domain: identity.trust_domain.clone(),
        root_namespace,
        trace_sampling,
        path_normalization,
        escaped_slashes,
        outbound_traffic_policy,
    };
    let identity = identity
        .start(addrs.grpc, metrics.clone())
        .await
        .context("cannot start the certificate authority")?;
    let grpc_local = grpc.local_addr()?;
    let grpc_tls_local = identity.tls_port.local_addr()?;
    let monitoring_local = monitoring.local_addr()?;
    emit(
        "listening",
        json!({
            "grpc": grpc_local.to_string(),
            "grpc_tls": grpc_tls_local.to_string(),
            "monitoring": monitoring_local.to_string(),
        }),
    );
    tracing::info!(grpc = %grpc_local, monitoring = %monitoring_local, "serving discovery");

    // One signal stops both servers.
    let (stop, stopped) = signal::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: signal::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Free pages go back to the system once proxies leave (ends with the runtime).
    tokio::spawn(remora_control_plane::trim::when_proxies_leave(
        metrics.clone(),
    ));
    let monitor = tokio::spawn(monitoring::serve(
        monitoring,
        Monitoring {
            metrics,
            proxies: proxies.clone(),
        },
        until_stopped(stopped.clone()),
    ));
    grpc::serve(
        grpc,
        identity.tls_port,
        DiscoveryService::with_tracker(mesh, proxies)
            .with_settings(settings)
            .with_admission(admission),
        identity.service,
        until_stopped(stopped),
    )
    .await
    .context("gRPC server failed")?;
    let _ = monitor.await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// The proxies' sampling variable, which `remora serve` does not read.
const PROXY_SAMPLING_VARIABLE: &str = "REMORA_TRACE_SAMPLING";

/// What to say when the proxies' sampling variable is set for `remora serve` and its own
/// (`--trace-sampling`, `REMORA_MESH_TRACE_SAMPLING`) is not: someone meant to set the
/// mesh-wide percentage, and it would otherwise be ignored without a word.
fn misplaced_sampling(mesh_sampling_given: bool, proxies_variable_set: bool) -> Option<String> {
    (proxies_variable_set && !mesh_sampling_given).then(|| {
        format!(
            "{PROXY_SAMPLING_VARIABLE} is set, but it is the proxies' variable and the control \
             plane does not read it; set REMORA_MESH_TRACE_SAMPLING (or --trace-sampling) for \
             the mesh-wide percentage"
        )
    })
}

#[cfg(test)]
mod tests;
