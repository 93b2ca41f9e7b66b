//! The app's health as its sidecar sees it: a probe of the app (a TCP
//! connect to its port by default, or `GET <--app-health path>` answered
//! 200–399, as a Kubernetes readinessProbe that Istio's agent rewrites to
//! itself), run every `--app-health-interval` and at once when an inbound
//! request finds the app's port closed.
//!
//! What it is for: the control plane takes the endpoint of an app that is
//! not ready out of every snapshot ([`crate::discovery`] reports each
//! change), and `/healthz/ready` answers 503 with the reason
//! ([`crate::health`]). Before the app has answered once, the proxy's own
//! readiness does not wait for it (an app may wait for its sidecar with
//! `wait-ready`, so the sidecar must not wait for the app), but its
//! endpoint is not registered until it answers.
//!
//! One failed probe makes the app not ready, one good probe ready again:
//! a refused connect on localhost is not a transient, and a timeout of a
//! second on localhost is generous.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use remora_proto::pb;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// How long one probe (connect, and for HTTP the answer's headers) may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The default pause between two probes.
#[cfg(test)]
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest pause between two probes, however often inbound requests
/// find the app's port closed.
const MIN_GAP: Duration = Duration::from_millis(100);

/// How the app is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppProbe {
    /// A TCP connect to `host:port` succeeds.
    Tcp(String),
    /// `GET path` on `host:port` over HTTP/1.1 answers 200–399.
    Http {
        /// The app's `host:port`.
        address: String,
        /// The readiness path, e.g. `/ready`.
        path: String,
    },
}

impl AppProbe {
    /// The probe for `--app address` and `--app-health` (`None`: a TCP
    /// connect; a path starting with `/`: that HTTP path; `off`: none).
    pub fn from_flag(address: &str, flag: Option<&str>) -> Result<Option<Self>, String> {
        match flag {
            None | Some("tcp") => Ok(Some(Self::Tcp(address.to_owned()))),
            Some("off") => Ok(None),
            Some(path) if path.starts_with('/') && path.parse::<http::Uri>().is_ok() => {
                Ok(Some(Self::Http {
                    address: address.to_owned(),
                    path: path.to_owned(),
                }))
            }
            Some(other) => Err(format!(
                "--app-health `{other}`: expected an HTTP path such as `/ready`, `tcp` or `off`"
            )),
        }
    }

    /// One probe: `Ok` when the app is ready, else why not.
    pub async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.run_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(format!("{self}: no answer within {PROBE_TIMEOUT:?}")),
        }
    }

    async fn run_unbounded(&self) -> Result<(), String> {
        let address = match self {
            Self::Tcp(address) | Self::Http { address, .. } => address,
        };
        let stream = TcpStream::connect(address.as_str())
            .await
            .map_err(|e| format!("connect to {address}: {e}"))?;
        let Self::Http { path, .. } = self else {
            return Ok(());
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{self}: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path.as_str())
            .header(header::HOST, address.as_str())
            .header(header::USER_AGENT, "remora-proxy app-health")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{self}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{self}: {e}"))?;
        let status = resp.status().as_u16();
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("{self}: answered {status}"))
        }
    }
}

impl std::fmt::Display for AppProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "connect to {address}"),
            Self::Http { address, path } => write!(f, "GET http://{address}{path}"),
        }
    }
}

/// The app's health as last probed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppStatus {
    /// The last probe succeeded.
    pub ready: bool,
    /// Why the last probe failed; empty when ready (or not probed yet).
    pub reason: String,
    /// Some probe has succeeded since the proxy started.
    pub ever_ready: bool,
}

impl AppStatus {
    /// The report for the control plane.
    pub fn report(&self) -> pb::AppHealth {
        pb::AppHealth {
            ready: self.ready,
            reason: if self.ready {
                String::new()
            } else if self.reason.is_empty() {
                "not probed yet".to_owned()
            } else {
                self.reason.clone()
            },
        }
    }
}

/// The probe, its latest result, and the way to ask for a probe now.
///
/// # Concurrency
/// The probe task alone writes the status; watchers are woken only when
/// readiness flips, never for a new reason alone.
#[derive(Debug)]
pub struct AppHealth {
    probe: AppProbe,
    interval: Duration,
    status: watch::Sender<AppStatus>,
    poke: Notify,
}

impl AppHealth {
    /// Not probed yet (not ready); [`Self::run`] probes.
    pub fn new(probe: AppProbe, interval: Duration) -> Self {
        Self {
            probe,
            interval: interval.max(MIN_GAP),
            status: watch::Sender::new(AppStatus::default()),
            poke: Notify::new(),
        }
    }

    /// The status now.
    pub fn status(&self) -> AppStatus {
        self.status.borrow().clone()
    }

    /// Wakes on every change of readiness.
    pub fn subscribe(&self) -> watch::Receiver<AppStatus> {
        self.status.subscribe()
    }

    /// Asks for a probe now (an inbound request could not connect to the
    /// app); probes stay at least 100 ms apart.
    pub(crate) fn poke(&self) {
        self.poke.notify_one();
    }

    /// Probes once and records the result; returns the status.
    pub async fn probe_once(&self) -> AppStatus {
        let result = self.probe.run().await;
        self.record(result);
        self.status()
    }

    /// Records one probe's result, logging a change of readiness.
    fn record(&self, result: Result<(), String>) {
        let ready = result.is_ok();
        let reason = result.err().unwrap_or_default();
        self.status.send_if_modified(|s| {
            let flipped = s.ready != ready;
            if s.ready != ready {
                if ready {
                    tracing::info!(probe = %self.probe, "app ready");
                    crate::events::emit("app_health", &[("ready", "true")]);
                } else {
                    tracing::warn!(probe = %self.probe, reason, "app not ready");
                    crate::events::emit("app_health", &[("ready", "false"), ("reason", &reason)]);
                }
            }
            s.ready = ready;
            s.ever_ready |= ready;
            s.reason = reason;
            flipped
        });
    }

    /// Probes forever: every interval, and soon after a [`Self::poke`].
    pub async fn run(&self) {
        loop {
            let probed_at = Instant::now();
            let _ = self.probe_once().await;
            tokio::select! {
                () = tokio::time::sleep_until(probed_at + self.interval) => {}
                () = self.poke.notified() => {
                    tokio::time::sleep_until(probed_at + MIN_GAP).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
