//! The demo app's client mode (`remora-demo-app client`): the `productpage`
//! of the Compose example. It calls a URL such as `http://reviews:9080/`
//! plainly, as an unmodified app would (no proxy settings: the capture rules
//! of its network namespace send the connection through its sidecar),
//! counts the answers by version, and serves the tally.
//!
//! 1. **Warm-up.** Calls until every version of `--expect` has answered
//!    through the mesh (so the sidecar knows every subset), at most
//!    `--warmup-timeout`. Each warm-up call opens a connection of its own,
//!    and with `--metrics` an answer counts only if the sidecar's mTLS
//!    count rose with it: a connection opened before the sidecar knew the
//!    service goes straight to one pod's address (passthrough), and a
//!    pooled one would stay there for the whole measurement.
//! 2. **Measure.** `--requests` calls, then `--jason` more with
//!    `end-user: jason`, one after another, and reads its sidecar's
//!    `remora_requests_total{direction="outbound",mtls="true"}` before and
//!    after (`--metrics`, on loopback in the shared namespace).
//! 3. **Report.** Prints the tally on stdout and serves it at `GET /report`
//!    (text) and `GET /report.json`; every other path is the demo app.
//!    `remora-demo-app report` prints it from inside the container.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::time::Instant;

/// How long one call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between warm-up calls that did not show a new version.
const WARMUP_PAUSE: Duration = Duration::from_millis(100);

/// The plain HTTP client both the Compose client and `remora-canary` call with.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// What the client was asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The URL called, e.g. `http://reviews:9080/`.
    pub url: String,
    /// Calls measured.
    pub requests: u32,
    /// Calls with `end-user: jason`, after those.
    pub jason: u32,
    /// Versions that must all have answered before measuring.
    pub expect: Vec<String>,
    /// The longest the warm-up may take.
    pub warmup_timeout: Duration,
    /// The sidecar's Prometheus URL, for the mTLS count; `None` skips it.
    pub metrics: Option<String>,
}

/// Answers counted by version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Version (the body of `GET /`) → answers.
    pub by_version: BTreeMap<String, u32>,
    /// Calls that got no 200.
    pub failed: u32,
    /// The first failure's reason.
    pub first_failure: Option<String>,
}

/// The client's state, served while it runs and after.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `warming up`, `measuring`, `done` or `failed: ...`.
    pub state: String,
    /// The URL called.
    pub url: String,
    /// Unix milliseconds of the first answered call.
    pub first_answer_unix_ms: Option<u128>,
    /// Warm-up calls made.
    pub warmup_calls: u32,
    /// The measured calls.
    pub canary: Tally,
    /// The jason calls.
    pub jason: Tally,
    /// Measured calls the sidecar sent over mTLS (`None`: not read).
    pub mtls: Option<u64>,
}

impl Report {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let tally = |t: &Tally| json!({ "versions": t.by_version, "failed": t.failed, "first_failure": t.first_failure });
        json!({
            "state": self.state,
            "url": self.url,
            "first_answer_unix_ms": self.first_answer_unix_ms.map(|ms| ms as u64),
            "warmup_calls": self.warmup_calls,
            "canary": tally(&self.canary),
            "jason": tally(&self.jason),
            "mtls": self.mtls,
        })
    }

    /// The report as text, in `remora-canary`'s words.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.state != "done" {
            out.push_str(&format!("state: {}\n", self.state));
        }
        let total = |t: &Tally| t.by_version.values().sum::<u32>() + t.failed;
        out.push_str(&format!(
            "canary 90/10: {} requests from productpage to {} (through its sidecar, by capture)\n",
            total(&self.canary),
            self.url
        ));
        write_tally(&mut out, &self.canary, true);
        out.push_str(&format!(
            "end-user: jason: {} requests\n",
            total(&self.jason)
        ));
        write_tally(&mut out, &self.jason, false);
        if let Some(mtls) = self.mtls {
            out.push_str(&format!(
                "mTLS between the sidecars: {mtls} of {} requests (remora_requests_total{{mtls=\"true\"}})\n",
                total(&self.canary) + total(&self.jason)
            ));
        }
        out
    }
}

/// Writes a tally as the README shows it: one line per version (with its
/// share when `with_failures`), then the failures.
pub fn write_tally(out: &mut String, tally: &Tally, with_failures: bool) {
    let total = tally.by_version.values().sum::<u32>() + tally.failed;
    let width = total.to_string().len().max(4);
    for (version, count) in &tally.by_version {
        if with_failures {
            let pct = f64::from(*count) * 100.0 / f64::from(total.max(1));
            out.push_str(&format!("  {version:<4} {count:>width$}  ({pct:.1}%)\n"));
        } else {
            out.push_str(&format!("  {version:<4} {count:>width$}\n"));
        }
    }
    if with_failures || tally.failed > 0 {
        out.push_str(&format!("  failed {}\n", tally.failed));
    }
    if let Some(first) = &tally.first_failure {
        out.push_str(&format!("  first failure: {first}\n"));
    }
}

/// The report shared between the calling task and the server.
pub type SharedReport = Arc<Mutex<Report>>;

/// Runs the plan, updating `report` as it goes.
pub async fn run(plan: Plan, report: SharedReport) -> anyhow::Result<()> {
    update(&report, |r| {
        r.url = plan.url.clone();
        r.state = "warming up".to_owned();
    });
    warm_up(&plan, &report).await?;
    // Measured on connections opened now, through a sidecar that routes.
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    update(&report, |r| r.state = "measuring".to_owned());
    let before = match &plan.metrics {
        Some(url) => Some(mtls_requests(&client, url).await?),
        None => None,
    };
    let call = Call {
        url: &plan.url,
        host: None,
        end_user: None,
    };
    let canary = send(&client, call, plan.requests).await;
    let jason = send(
        &client,
        Call {
            end_user: Some("jason"),
            ..call
        },
        plan.jason,
    )
    .await;
    let after = match &plan.metrics {
        Some(url) => Some(mtls_requests(&client, url).await?),
        None => None,
    };
    update(&report, |r| {
        r.canary = canary;
        r.jason = jason;
        r.mtls = before.zip(after).map(|(b, a)| a.saturating_sub(b));
        r.state = "done".to_owned();
    });
    Ok(())
}

fn update(report: &SharedReport, f: impl FnOnce(&mut Report)) {
    // A poisoned lock only means a panic elsewhere; the report is still readable.
    let mut guard = report.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard);
}

async fn warm_up(plan: &Plan, report: &SharedReport) -> anyhow::Result<()> {
    // No pool: every call a new connection, captured and routed afresh.
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let deadline = Instant::now() + plan.warmup_timeout;
    let mut seen = BTreeMap::<String, u32>::new();
    let mut last_failure = None;
    loop {
        let call = Call {
            url: &plan.url,
            host: None,
            end_user: None,
        };
        // The sidecar's metrics may not answer yet: that is a failed call.
        let mtls_before = match &plan.metrics {
            Some(url) => match mtls_requests(&client, url).await {
                Ok(count) => Some(count),
                Err(e) => {
                    last_failure = Some(format!("{e:#}"));
                    tokio::time::sleep(WARMUP_PAUSE).await;
                    if Instant::now() >= deadline {
                        bail!(
                            "the sidecar's metrics did not answer within {:?}: {e:#}",
                            plan.warmup_timeout
                        );
                    }
                    continue;
                }
            },
            None => None,
        };
        match get_version(&client, call).await {
            Ok(version) => {
                update(report, |r| {
                    r.warmup_calls += 1;
                    r.first_answer_unix_ms.get_or_insert_with(|| {
                        SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis())
                    });
                });
                let through_mesh = match (&plan.metrics, mtls_before) {
                    (Some(url), Some(before)) => mtls_rose(&client, url, before).await,
                    _ => true,
                };
                if through_mesh {
                    *seen.entry(version).or_default() += 1;
                } else {
                    last_failure = Some(format!("{version} answered, not over mTLS"));
                    tokio::time::sleep(WARMUP_PAUSE).await;
                }
                if plan.expect.iter().all(|v| seen.contains_key(v)) {
                    return Ok(());
                }
            }
            Err(e) => {
                update(report, |r| r.warmup_calls += 1);
                last_failure = Some(e);
                tokio::time::sleep(WARMUP_PAUSE).await;
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "not every version of {:?} answered {} within {:?}: seen {seen:?}, last failure: {}",
                plan.expect,
                plan.url,
                plan.warmup_timeout,
                last_failure.as_deref().unwrap_or("none")
            );
        }
    }
}

/// One kind of call: a GET of `url`, with `Host: host` when given (the
/// sidecar's outbound port is called with the service's name as Host), and
/// `end-user: <user>` when given.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The URL called.
    pub url: &'a str,
    /// A `Host` header other than the URL's.
    pub host: Option<&'a str>,
    /// The `end-user` header.
    pub end_user: Option<&'a str>,
}

/// Sends `n` sequential calls.
pub async fn send(client: &HttpClient, call: Call<'_>, n: u32) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..n {
        match get_version(client, call).await {
            Ok(version) => *tally.by_version.entry(version).or_default() += 1,
            Err(e) => {
                tally.failed += 1;
                tally.first_failure.get_or_insert(e);
            }
        }
    }
    tally
}

/// One call; the answering version, or why there was none.
async fn get_version(client: &HttpClient, call: Call<'_>) -> Result<String, String> {
    let mut req = Request::get(call.url);
    if let Some(host) = call.host {
        req = req.header(header::HOST, host);
    }
    if let Some(user) = call.end_user {
        req = req.header("end-user", user);
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| chain(&e))?;
    let status = resp.status();
    let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| format!("body not complete within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).trim().to_owned();
    if status == StatusCode::OK {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Whether the sidecar's mTLS count passed `before`: it counts a request
/// when the response has ended, which may be a moment after the client has
/// it, so it is read up to ten times, 20 ms apart.
async fn mtls_rose(client: &HttpClient, url: &str, before: u64) -> bool {
    for _ in 0..10 {
        if mtls_requests(client, url)
            .await
            .is_ok_and(|count| count > before)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Outbound requests the sidecar sent over mTLS so far, from its metrics.
async fn mtls_requests(client: &HttpClient, url: &str) -> anyhow::Result<u64> {
    let uri = url.parse().with_context(|| format!("metrics URL {url}"))?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.get(uri))
        .await
        .with_context(|| format!("GET {url} timed out"))?
        .with_context(|| format!("GET {url}"))?;
    if resp.status() != StatusCode::OK {
        bail!("GET {url}: {}", resp.status());
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(mtls_count(&String::from_utf8_lossy(&body)))
}

/// Sums `remora_requests_total` samples with `direction="outbound"` and
/// `mtls="true"` in Prometheus text.
pub fn mtls_count(text: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with("remora_requests_total{")
                && l.contains("direction=\"outbound\"")
                && l.contains("mtls=\"true\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `/report` and `/report.json` for the server; `None` for other paths.
pub fn report_response(path: &str, report: &SharedReport) -> Option<http::Response<Full<Bytes>>> {
    let guard = report.lock().unwrap_or_else(|p| p.into_inner());
    let (body, content_type) = match path {
        "/report" => (guard.to_text(), "text/plain; charset=utf-8"),
        "/report.json" => (guard.to_json().to_string(), "application/json"),
        _ => return None,
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    Some(resp)
}

/// `remora-demo-app report`: prints the text report of a running client.
pub async fn print_report(url: &str) -> anyhow::Result<bool> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let uri = url.parse().with_context(|| format!("report URL {url}"))?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.get(uri))
        .await
        .with_context(|| format!("GET {url} timed out"))?
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    print!("{}", String::from_utf8_lossy(&body));
    Ok(status == StatusCode::OK)
}

#[cfg(test)]
mod tests;
