//! The sidecar's end of life: SIGTERM or `POST /quitquitquit` starts a
//! drain of `--drain-duration` (Istio's `terminationDrainDuration`, 5 s by
//! default), during which
//!
//! - `/healthz/ready` answers 503 (`draining`) and the discovery stream is
//!   closed, so the control plane takes this endpoint out of its peers'
//!   configs;
//! - the inbound listener stops accepting; its open connections finish the
//!   requests in flight, HTTP/1.1 ones answering with `Connection: close`
//!   and HTTP/2 ones getting a GOAWAY;
//! - the outbound listener keeps serving, new connections included: the
//!   app, stopped at the same time, may still be making its last calls;
//! - opaque TCP connections (plain, or tunnelled over mTLS) carry on: TCP
//!   has no request boundary to stop at.
//!
//! When the drain ends the proxy closes what is still open (TCP
//! connections with a FIN each way, each one recorded in the metrics and
//! the access log) and exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Whether the proxy is draining, and the `/quitquitquit` trigger.
#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    quit: Notify,
    quit_allowed: bool,
}

impl Lifecycle {
    /// `quit_allowed`: whether `/quitquitquit` may end the proxy (only when
    /// the admin port listens on loopback, so that only the pod can).
    pub fn new(quit_allowed: bool) -> Self {
        Self {
            draining: AtomicBool::new(false),
            quit: Notify::new(),
            quit_allowed,
        }
    }

    /// Whether the drain has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the drain begun: readiness turns 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether `/quitquitquit` is honoured.
    pub(crate) fn quit_allowed(&self) -> bool {
        self.quit_allowed
    }

    /// Asks the proxy to drain and exit, as SIGTERM does.
    pub(crate) fn request_quit(&self) {
        // A stored permit: the request is not lost if nobody waits yet.
        self.quit.notify_one();
    }

    /// Resolves once [`Lifecycle::request_quit`] was called.
    pub async fn quit_requested(&self) {
        self.quit.notified().await;
    }
}

/// A duration such as `5s`, `500ms`, `2m` or `1m30s`; a bare number is
/// seconds (Istio's `TERMINATION_DRAIN_DURATION_SECONDS`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let usage = "write a duration such as 5s, 500ms, 2m or 1m30s";
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(format!("the duration is empty; {usage}"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration; {usage}"));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}`: {number} is too large"))?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => return Err(format!("`{text}`: the unit is missing; {usage}")),
            _ => return Err(format!("`{text}`: unknown unit `{unit}`; {usage}")),
        };
        total = total.saturating_add(part);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
