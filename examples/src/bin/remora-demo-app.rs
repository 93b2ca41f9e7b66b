//! `remora-demo-app`: the app behind the sidecar in every example and test.
//!
//! Prints `{"event":"listening","addr":"IP:PORT"}` on stdout once bound,
//! then serves until SIGTERM or Ctrl-C. See [`remora_examples::demo_app`]
//! for the endpoints.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use remora_examples::demo_app::{self, DemoApp};
use tokio::net::TcpListener;

/// A small HTTP service that says which version answered.
#[derive(Debug, Parser)]
// `--version` is the app's version, not ours, so clap's flag is off.
#[command(name = "remora-demo-app", about, disable_version_flag = true)]
struct Args {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = DemoApp::new(&args.service, &args.app_version)?;
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
    demo_app::serve(listener, app, shutdown_signal()).await?;
    Ok(())
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
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Args::command().debug_assert();
    }
}
