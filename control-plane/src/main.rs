//! `remora`: the control plane. `remora serve` reads the config directory
//! and pushes each proxy its snapshot; `remora validate` checks files the
//! way `serve` would, without serving.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remora_control_plane::config::{self, Severity};
use remora_control_plane::discovery;
use remora_control_plane::events::emit;
use remora_control_plane::mesh::Mesh;
use remora_control_plane::watch::{self, ConfigDir};
use serde_json::json;
use tokio::net::TcpListener;

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
    },
    /// Check YAML files or directories and print every problem; exits 1 on
    /// any error.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { paths } => validate(&paths),
        Command::Serve {
            config_dir,
            grpc_addr,
            warmup_secs,
        } => {
            let Ok(warmup) = std::time::Duration::try_from_secs_f64(warmup_secs) else {
                eprintln!("error: --warmup-secs {warmup_secs} is not a duration in seconds");
                return ExitCode::FAILURE;
            };
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config_dir, grpc_addr, warmup)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn validate(paths: &[PathBuf]) -> ExitCode {
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
    diagnostics.extend(config::check_references(&resources));
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

async fn serve(
    config_dir: Option<PathBuf>,
    grpc_addr: SocketAddr,
    warmup: std::time::Duration,
) -> anyhow::Result<()> {
    let mesh = Arc::new(Mesh::with_warmup(warmup));
    if let Some(dir) = config_dir {
        anyhow::ensure!(
            dir.is_dir(),
            "--config-dir {} is not a directory",
            dir.display()
        );
        // The first read happens before serving, so no proxy ever gets a
        // snapshot that ignores the files.
        let mut dir = ConfigDir::new(dir);
        if let Some(resources) = dir.poll() {
            mesh.set_config(resources);
        }
        tokio::spawn(watch::run(dir, Arc::clone(&mesh)));
    }

    let listener = TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {grpc_addr}"))?;
    let local = listener.local_addr()?;
    emit("listening", json!({ "grpc": local.to_string() }));
    tracing::info!(%local, "serving discovery");

    discovery::serve(listener, mesh, shutdown_signal())
        .await
        .context("gRPC server failed")?;
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
