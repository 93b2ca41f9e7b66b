//! Access logs: one line per request, written when its response ends.
//!
//! Lines go through a bounded channel to one writer task, so a slow or
//! blocked log destination never holds up a request: when the channel is
//! full the line is dropped and counted (`access_log.dropped` in `/stats`).
//! JSON fields follow Envoy's default access log where they overlap.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use super::stats;

/// Lines buffered between requests and the writer.
const QUEUE: usize = 4096;

/// How lines are written (`--access-log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// No access log.
    Off,
    /// One JSON object per line.
    Json,
    /// One space-separated line, Envoy's default text layout.
    Text,
}

/// What one request came to, as the access log tells it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// When the request arrived, RFC 3339 with milliseconds.
    pub start_time: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The request method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// The `Host` or `:authority`.
    pub authority: String,
    /// The status sent to the client; 0 if none was.
    pub response_code: u16,
    /// Envoy-style response flags, e.g. `UO` (overflow), `NR` (no route),
    /// `UF` (connect failure), `UT` (timeout), `URX` (retries exhausted),
    /// `FI` (fault abort), `DC` (client went away); `-` when none.
    pub response_flags: String,
    /// Response body bytes sent to the client (TCP: every byte).
    pub bytes_sent: u64,
    /// TCP: bytes received from the client (0 for HTTP requests).
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_received: u64,
    /// From arrival to the end of the response, in milliseconds.
    pub duration_ms: u64,
    /// The endpoint that answered (the last try), if any.
    pub upstream_host: Option<String>,
    /// The cluster (`<subset>|<service>`) chosen, if any.
    pub upstream_cluster: Option<String>,
    /// Tries after the first.
    pub retries: u32,
    /// `x-request-id`.
    pub request_id: String,
    /// The trace this request belongs to, if it carries one.
    pub trace_id: Option<String>,
    /// The peer's SPIFFE ID (inbound over mTLS).
    pub peer_identity: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

impl Entry {
    /// The line for `format` (without newline).
    pub(crate) fn render(&self, format: Format) -> String {
        match format {
            Format::Off => String::new(),
            Format::Json => serde_json::to_string(self).unwrap_or_default(),
            Format::Text => format!(
                "[{}] \"{} {} {}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" {}",
                self.start_time,
                self.method,
                self.path,
                self.protocol,
                self.response_code,
                self.response_flags,
                self.bytes_sent,
                self.duration_ms,
                self.user_agent.as_deref().unwrap_or("-"),
                self.request_id,
                self.authority,
                self.upstream_host.as_deref().unwrap_or("-"),
                self.direction,
            ),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Formats a wall-clock time as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The access log sink shared by both directions.
#[derive(Debug, Clone)]
pub struct AccessLog {
    format: Format,
    tx: Option<mpsc::Sender<String>>,
}

impl AccessLog {
    /// No access log.
    pub fn off() -> Self {
        Self {
            format: Format::Off,
            tx: None,
        }
    }

    /// Writes lines in `format` to `out` from a background task. Must be
    /// called inside a tokio runtime.
    pub fn spawn(format: Format, out: Box<dyn Write + Send>) -> Self {
        if format == Format::Off {
            return Self::off();
        }
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        // A blocking thread: the destination may be a slow file or pipe.
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::new(out);
            while let Some(line) = rx.blocking_recv() {
                let _ = writeln!(out, "{line}");
                // Flush when caught up, so lines appear promptly.
                if rx.is_empty() {
                    let _ = out.flush();
                }
            }
            let _ = out.flush();
        });
        Self {
            format,
            tx: Some(tx),
        }
    }

    /// Whether lines are written at all (to skip building entries).
    pub(crate) fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues the line for `entry`; drops (and counts) it if the writer
    /// is behind.
    pub fn log(&self, entry: &Entry) {
        if let Some(tx) = &self.tx
            && tx.try_send(entry.render(self.format)).is_err()
        {
            stats::ACCESS_LOG_DROPPED.inc();
        }
    }
}

#[cfg(test)]
mod tests;
