//! `remora proxy-status`: asks a running control plane's monitoring port
//! for `GET /debug/proxies` and prints one line per connected proxy, like
//! `istioctl proxy-status`:
//!
//! ```text
//! NAME                  SERVICE              VERSION           STATUS  LAST PUSH
//! productpage-7.default productpage.default  5b1f0c3e9a2d4f10  SYNCED  3s ago
//! reviews-9.default     reviews.default      5b1f0c3e9a2d4f10  NACKED  1s ago
//!     error: reviews.default.svc.cluster.local/r0: invalid regex: ...
//! ```
//!
//! VERSION is the version the proxy runs (what it last ACKed, or kept when
//! it NACKed); a NACKED proxy's error follows on an indented line, and so
//! does the reason a REFUSED proxy's latest snapshot was not sent.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::monitoring::PROXIES_PATH;
use crate::status::{ProxyStatus, SyncStatus};
use remora_proto::error_chain;

/// The default `--control-plane-admin`.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:15014";

/// How long the whole request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The admin URL does not parse as an `http://` URL.
    #[error("`{url}` is not an http:// URL: {reason}")]
    BadUrl {
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No connection, or no complete answer in time.
    #[error("cannot reach the control plane at {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The cause, with its sources.
        reason: String,
    },
    /// The control plane answered with an error status.
    #[error("the control plane at {url} answered {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: http::StatusCode,
        /// The answer's body.
        body: String,
    },
    /// The answer is not the JSON this version reads.
    #[error("the control plane at {url} sent an answer this version cannot read: {reason}")]
    Decode {
        /// The URL asked.
        url: String,
        /// The JSON error.
        reason: String,
    },
}

/// The status URL for an admin base URL (`http://host:port`, with or
/// without a trailing `/`; `host:port` alone means `http://`).
pub fn status_url(admin: &str) -> Result<Uri, FetchError> {
    let base = admin.trim().trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let bad = |reason: String| FetchError::BadUrl {
        url: admin.to_owned(),
        reason,
    };
    let uri: Uri = format!("{base}{PROXIES_PATH}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is served on the monitoring port".into()));
    }
    if uri.authority().is_none() {
        return Err(bad("no host:port".into()));
    }
    Ok(uri)
}

/// `GET /debug/proxies` from the control plane at `admin`.
pub async fn fetch(admin: &str) -> Result<Vec<ProxyStatus>, FetchError> {
    let uri = status_url(admin)?;
    let url = uri.to_string();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let unreachable = |reason: String| FetchError::Unreachable {
        url: url.clone(),
        reason,
    };
    let answer = tokio::time::timeout(TIMEOUT, async {
        let resp = client.get(uri.clone()).await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| error_chain(&e))?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?;
    let (status, body) = answer.map_err(unreachable)?;
    if !status.is_success() {
        return Err(FetchError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&body).trim().to_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| FetchError::Decode {
        url,
        reason: e.to_string(),
    })
}

/// The table `remora proxy-status` prints: a header, one line per proxy,
/// and under each NACKED proxy its error, indented.
pub fn render(proxies: &[ProxyStatus]) -> String {
    const HEADER: [&str; 5] = ["NAME", "SERVICE", "VERSION", "STATUS", "LAST PUSH"];
    let rows: Vec<[String; 5]> = proxies
        .iter()
        .map(|p| {
            [
                p.id.clone(),
                format!("{}.{}", p.service, p.namespace),
                p.version_acked.clone().unwrap_or_else(|| "-".into()),
                p.status.as_str().to_owned(),
                match p.seconds_since_last_push {
                    Some(secs) => format!("{secs}s ago"),
                    None => "never".into(),
                },
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(HEADER);
    for (p, row) in proxies.iter().zip(&rows) {
        out.push_str(&line(row.each_ref().map(String::as_str)));
        let error = match p.status {
            SyncStatus::Nacked => p.last_nack_error.as_deref(),
            SyncStatus::Refused => p.push_error.as_deref(),
            SyncStatus::Synced | SyncStatus::Stale => None,
        };
        if matches!(p.status, SyncStatus::Nacked | SyncStatus::Refused) {
            let error = error.unwrap_or("(no reason given)");
            for (i, text) in error.lines().enumerate() {
                let lead = if i == 0 { "error: " } else { "       " };
                out.push_str(&format!("    {lead}{text}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
