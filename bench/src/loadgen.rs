//! The load generator: HTTP/1.1 keep-alive, HTTP/2 with prior knowledge, or
//! a new HTTP/1.1 connection per request, either closed loop (each worker
//! sends its next request when the previous one is answered: saturation) or
//! open loop at a fixed rate (see [`crate::schedule`]).
//!
//! Built on hyper's connection-level client (`client::conn`), one
//! connection per worker for HTTP/1.1, so that nothing between the
//! generator and the socket pools, queues or retries behind our back.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::latency::Latencies;
use crate::schedule::OpenLoopSchedule;
use crate::upstream::BODY_LEN;

/// How the generator talks to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1, connections kept alive.
    Http1,
    /// HTTP/2 over cleartext TCP with prior knowledge (h2c).
    Http2,
    /// HTTP/1.1, a new TCP connection for every request (`Connection: close`).
    Http1NewConnection,
}

impl Protocol {
    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Http1 => "h1 keep-alive",
            Self::Http2 => "h2c",
            Self::Http1NewConnection => "h1 new connection",
        }
    }
}

/// Closed loop or open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Load {
    /// `concurrency` requests in flight at all times, each sent as soon as
    /// the previous one of its worker is answered.
    Closed {
        /// Requests in flight.
        concurrency: usize,
    },
    /// `rate` requests per second, each due at its intended time.
    Open {
        /// Requests per second.
        rate: u64,
    },
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The wire protocol.
    pub protocol: Protocol,
    /// Closed or open loop.
    pub load: Load,
    /// HTTP/2: the TCP connections the workers' streams are spread over.
    /// HTTP/1.1 has one connection per worker (a new one per request for
    /// [`Protocol::Http1NewConnection`]).
    pub h2_connections: usize,
    /// Open loop: how many workers share the schedule; each sends its
    /// requests one after the other, so this bounds the requests in flight.
    pub senders: usize,
    /// How long requests are sent.
    pub duration: Duration,
    /// The `Host` (or `:authority`) of every request.
    pub host: String,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    /// Latency of every successful request.
    pub latencies: Latencies,
    /// Requests answered with 200 and the full body.
    pub ok: u64,
    /// Requests that failed (transport error, other status, short body).
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Open loop: requests due that were never sent because the target
    /// fell too far behind (the run stops sending at 1.5 × its duration).
    pub missed: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

impl RunResult {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

/// The open-loop timer: tokio's timer has 1 ms granularity, so sleep until
/// shortly before the intended time, then yield (which lets the runtime
/// poll sockets) until it comes. The generator has a core of its own.
const SPIN: Duration = Duration::from_micros(1_500);

/// Waits until `at` with microsecond precision.
async fn wait_until(at: Instant) {
    let now = Instant::now();
    if at > now + SPIN {
        tokio::time::sleep_until(at - SPIN).await;
    }
    // Bounded by the clock: ends at `at`.
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

/// One connection (or, for new-connection runs, a way to make one per
/// request).
enum Conn {
    H1(Option<http1::SendRequest<Empty<Bytes>>>),
    H2(http2::SendRequest<Empty<Bytes>>),
    Fresh,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TokioIo<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(stream))
}

async fn open_h1(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Empty<Bytes>>> {
    let (send, conn) = http1::handshake(connect(addr).await?).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn open_h2(addr: SocketAddr) -> anyhow::Result<http2::SendRequest<Empty<Bytes>>> {
    let (send, conn) = http2::handshake(TokioExecutor::new(), connect(addr).await?).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// Checks a response and reads its body; an error says what was wrong.
async fn finish(resp: http::Response<hyper::body::Incoming>) -> Result<(), String> {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    if body.len() != BODY_LEN {
        return Err(format!("body of {} bytes, not {BODY_LEN}", body.len()));
    }
    Ok(())
}

impl Conn {
    async fn open(protocol: Protocol, addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(match protocol {
            Protocol::Http1 => Self::H1(Some(open_h1(addr).await?)),
            Protocol::Http2 => Self::H2(open_h2(addr).await?),
            Protocol::Http1NewConnection => Self::Fresh,
        })
    }

    /// Sends `GET /` and waits for the whole answer. An HTTP/1.1
    /// connection that failed is replaced on the next request.
    async fn send(&mut self, addr: SocketAddr, host: &str) -> Result<(), String> {
        match self {
            Self::H1(slot) => {
                let mut send = match slot.take() {
                    Some(s) if !s.is_closed() => s,
                    _ => open_h1(addr).await.map_err(|e| format!("connect: {e:#}"))?,
                };
                let req = Request::get("/")
                    .header(header::HOST, host)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let resp = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("request: {e}"))?;
                let done = finish(resp).await;
                *slot = Some(send);
                done
            }
            Self::H2(send) => {
                let req = Request::get(format!("http://{host}/"))
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let resp = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("request: {e}"))?;
                finish(resp).await
            }
            Self::Fresh => {
                let mut send = open_h1(addr).await.map_err(|e| format!("connect: {e:#}"))?;
                let req = Request::get("/")
                    .header(header::HOST, host)
                    .header(header::CONNECTION, "close")
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let resp = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("request: {e}"))?;
                finish(resp).await
            }
        }
    }
}

/// Sends one request over a fresh connection: is the target serving?
pub async fn probe(addr: SocketAddr, protocol: Protocol, host: &str) -> Result<(), String> {
    let mut conn = Conn::open(protocol, addr)
        .await
        .map_err(|e| format!("connect: {e:#}"))?;
    conn.send(addr, host).await
}

/// One worker's tally.
#[derive(Default)]
struct Tally {
    latencies: Latencies,
    ok: u64,
    errors: u64,
    sent: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Tally {
    fn outcome(&mut self, result: Result<(), String>, latency: Duration) {
        self.sent += 1;
        self.last_done = Some(Instant::now());
        match result {
            Ok(()) => {
                self.ok += 1;
                self.latencies.record(latency);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Runs `w` against `addr`. Connections are opened before the clock
/// starts (except in new-connection runs, where connecting is the point).
pub async fn run(addr: SocketAddr, w: &Workload) -> anyhow::Result<RunResult> {
    let workers = match w.load {
        Load::Closed { concurrency } => concurrency.max(1),
        Load::Open { .. } => w.senders.max(1),
    };
    let connections = match w.protocol {
        Protocol::Http2 => w.h2_connections.clamp(1, workers),
        _ => workers,
    };
    let mut per_worker: Vec<Conn> = Vec::with_capacity(workers);
    if w.protocol == Protocol::Http2 {
        // HTTP/2 workers share their connection's sender (cheap clones).
        let mut shared = Vec::with_capacity(connections);
        for _ in 0..connections {
            shared.push(open_h2(addr).await?);
        }
        for i in 0..workers {
            per_worker.push(Conn::H2(shared[i % connections].clone()));
        }
    } else {
        for _ in 0..workers {
            per_worker.push(Conn::open(w.protocol, addr).await?);
        }
    }

    let schedule = match w.load {
        Load::Open { rate } => Some(
            OpenLoopSchedule::new(rate, workers, w.duration)
                .ok_or_else(|| anyhow::anyhow!("an open-loop run needs a rate above 0"))?,
        ),
        Load::Closed { .. } => None,
    };
    let start = Instant::now();
    let end = start + w.duration;
    // Open loop: a target that falls behind gets half the duration again
    // to catch up, then the rest is counted as missed.
    let give_up = start + w.duration + w.duration / 2;
    let mut tasks = Vec::with_capacity(workers);
    for (i, mut conn) in per_worker.into_iter().enumerate() {
        let host = w.host.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            match schedule {
                None => {
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        let r = conn.send(addr, &host).await;
                        tally.outcome(r, t0.elapsed());
                    }
                }
                Some(s) => {
                    let mut n = 0;
                    while let Some(due) = s.due_for(i, n) {
                        n += 1;
                        if Instant::now() >= give_up {
                            break;
                        }
                        let at = start + due;
                        wait_until(at).await;
                        let r = conn.send(addr, &host).await;
                        tally.outcome(r, Instant::now().saturating_duration_since(at));
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        all.latencies.merge(&t.latencies);
        all.ok += t.ok;
        all.errors += t.errors;
        all.sent += t.sent;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
        all.last_done = all.last_done.max(t.last_done);
    }
    let missed = schedule.map_or(0, |s| s.total().saturating_sub(all.sent));
    let elapsed = match schedule {
        // Open loop: the rate is what was asked over the whole duration.
        Some(_) => w
            .duration
            .max(all.last_done.map_or(Duration::ZERO, |d| d - start)),
        None => all.last_done.map_or(Duration::ZERO, |d| d - start),
    };
    Ok(RunResult {
        latencies: all.latencies,
        ok: all.ok,
        errors: all.errors,
        first_error: all.first_error,
        missed,
        elapsed,
    })
}
