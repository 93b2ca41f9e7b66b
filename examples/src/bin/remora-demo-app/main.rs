//! `remora-demo-app`: the app behind the sidecar in every example and test.
//!
//! Prints `{"event":"listening","addr":"IP:PORT"}` on stdout once bound,
//! then serves until SIGTERM or Ctrl-C. See [`remora_examples::demo_app`]
//! for the endpoints.
//!
//! `remora-demo-app client --url http://reviews:9080/` also calls that URL
//! and counts the answers by version (the Compose example's `productpage`,
//! see [`remora_examples::demo_client`]); `remora-demo-app report` prints a
//! running client's tally.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use remora_examples::demo_app::{self, DemoApp};
use remora_examples::demo_client::{self, Plan, Report};
use tokio::net::TcpListener;

/// A small HTTP service that says which version answered.
#[derive(Debug, Parser)]
// `--version` is the app's version, not ours, so clap's flag is off.
#[command(name = "remora-demo-app", about, disable_version_flag = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Where to listen (port 0 picks a free port; see the `listening` event).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The service name reported in `x-remora-demo-service`.
    #[arg(long, default_value = "demo")]
    service: String,
    /// The version reported in bodies and `x-remora-demo-version`.
    #[arg(long = "version", default_value = "v1")]
    app_version: String,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Serve as usual, and call `--url` in a loop counting the answers by
    /// version; the tally is printed and served at `/report`.
    Client {
        /// What to call, plainly (no proxy settings).
        #[arg(long, default_value = "http://reviews:9080/")]
        url: String,
        /// Calls measured after the warm-up.
        #[arg(long, default_value_t = 1000)]
        requests: u32,
        /// Calls with `end-user: jason` after those.
        #[arg(long, default_value_t = 100)]
        jason: u32,
        /// Versions that must all answer before measuring (comma-separated).
        #[arg(long, default_value = "v1,v2", value_delimiter = ',')]
        expect: Vec<String>,
        /// The longest the warm-up may take, in seconds.
        #[arg(long, default_value_t = 300)]
        warmup_timeout_secs: u64,
        /// The sidecar's metrics, for the mTLS count ("" skips it).
        #[arg(long, default_value = "http://127.0.0.1:15090/stats/prometheus")]
        metrics: String,
    },
    /// Print the tally of a client running in this network namespace.
    Report {
        /// The client's report URL.
        #[arg(long, default_value = "http://127.0.0.1:9080/report")]
        url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let mut app = DemoApp::new(&args.service, &args.app_version)?;
    let mut plan = None;
    match args.command {
        None => {}
        Some(Mode::Report { url }) => {
            return Ok(if demo_client::print_report(&url).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Some(Mode::Client {
            url,
            requests,
            jason,
            expect,
            warmup_timeout_secs,
            metrics,
        }) => {
            let report = Arc::new(Mutex::new(Report::default()));
            app = app.with_report(Arc::clone(&report));
            plan = Some((
                Plan {
                    url,
                    requests,
                    jason,
                    expect,
                    warmup_timeout: Duration::from_secs(warmup_timeout_secs),
                    metrics: (!metrics.is_empty()).then_some(metrics),
                },
                report,
            ));
        }
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        // Written by hand to keep the key order the docs show.
        let addr = serde_json::Value::String(addr.to_string());
        writeln!(out, r#"{{"event":"listening","addr":{addr}}}"#)?;
        out.flush()?;
    }
    if let Some((plan, report)) = plan {
        tokio::spawn(async move {
            let outcome = demo_client::run(plan, Arc::clone(&report)).await;
            let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = outcome {
                report.state = format!("failed: {e:#}");
                eprintln!("remora-demo-app: client failed: {e:#}");
            }
            print!("{}", report.to_text());
            let _ = std::io::stdout().flush();
        });
    }
    demo_app::serve(listener, app, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests;
