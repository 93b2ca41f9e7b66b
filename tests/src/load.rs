//! Continuous load: a few client loops sending requests through a proxy and
//! recording every outcome, for tests that change things under traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{HttpClient, Protocol};

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent.
    pub started: Instant,
    /// When its response (or error) was complete.
    pub finished: Instant,
    /// The trimmed body of a 200, or what went wrong (status and body, or
    /// the transport error).
    pub outcome: Result<String, String>,
}

/// Client loops running until [`Load::stop`] or their time limit.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<Vec<Sample>>>,
    completed: Arc<AtomicUsize>,
}

impl Load {
    /// Starts `loops` loops, each on its own keep-alive HTTP/1.1 connection
    /// to `addr`, sending `GET path` with Host `host` back to back, for at
    /// most `limit`.
    pub fn start(addr: SocketAddr, host: &str, path: &str, loops: usize, limit: Duration) -> Self {
        Self::run(addr, host, path, loops, None, limit)
    }

    /// [`Load::start`], each loop sending at most one request per `every`
    /// (a bounded rate: `loops / every` requests per second at most, fewer
    /// when the machine is slower; a loop never sends more to catch up).
    pub fn paced(
        addr: SocketAddr,
        host: &str,
        path: &str,
        loops: usize,
        every: Duration,
        limit: Duration,
    ) -> Self {
        Self::run(addr, host, path, loops, Some(every), limit)
    }

    fn run(
        addr: SocketAddr,
        host: &str,
        path: &str,
        loops: usize,
        every: Option<Duration>,
        limit: Duration,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let completed = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + limit;
        let loops = (0..loops)
            .map(|_| {
                let (host, path) = (host.to_owned(), path.to_owned());
                let stopped = stopped.clone();
                let completed = Arc::clone(&completed);
                tokio::spawn(async move {
                    let mut client = HttpClient::new(addr, Protocol::Http1);
                    let mut samples = Vec::new();
                    let mut pace = every.map(|every| {
                        let mut pace = tokio::time::interval(every);
                        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        pace
                    });
                    while !*stopped.borrow() && Instant::now() < deadline {
                        if let Some(pace) = &mut pace {
                            pace.tick().await;
                        }
                        let started = Instant::now();
                        let outcome = match client.get(&host, &path, &[]).await {
                            Ok(r) if r.status == 200 => Ok(r.body.trim().to_owned()),
                            Ok(r) => Err(format!("{} {}", r.status, r.body.trim())),
                            Err(e) => Err(format!("{e:#}")),
                        };
                        samples.push(Sample {
                            started,
                            finished: Instant::now(),
                            outcome,
                        });
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    samples
                })
            })
            .collect();
        Self {
            stop,
            loops,
            completed,
        }
    }

    /// Requests completed so far, failed ones included.
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::Relaxed)
    }

    /// Waits (polling every 10 ms) until `n` more requests than now have
    /// completed; panics after `timeout`.
    pub async fn wait_more(&self, n: usize, timeout: Duration) {
        let target = self.completed() + n;
        let deadline = Instant::now() + timeout;
        while self.completed() < target {
            assert!(
                Instant::now() < deadline,
                "load: only {} of {target} requests completed within {timeout:?}",
                self.completed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the loops and returns every sample, ordered by start time.
    pub async fn stop(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for l in self.loops {
            all.extend(l.await.expect("load loop panicked"));
        }
        all.sort_by_key(|s| s.started);
        all
    }
}

/// The failed samples, as printable lines (empty when all succeeded).
pub fn failures(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter_map(|s| s.outcome.as_ref().err().cloned())
        .collect()
}
