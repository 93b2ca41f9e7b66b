//! Route timeouts, per-try timeouts and fault injection with real
//! processes and in-process backends. Timing assertions are one-sided or
//! generous: the machine may be slow.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use http::Response;
use hyper::body::{Body, Frame};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use remora_e2e::direct::{Direct, Shot, tally};
use remora_e2e::discovery::cluster_name;
use remora_e2e::{EVENT_TIMEOUT, HttpClient, Mesh, Protocol, ProxySpec, yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

const HOST: &str = "httpbin";

/// The HTTP/2 app of the stalled-body test.
const H2_HOST: &str = "stalled-h2";

/// The slow backends' delay.
const SLOW: Duration = Duration::from_secs(2);

/// Sends `n` sequential GETs, returning each shot.
async fn sequential(direct: &Direct, n: usize) -> Vec<Shot> {
    let mut http = direct.http();
    let mut shots = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let result = http.get(HOST, "/", &[]).await;
        shots.push(Shot::of(&result, t.elapsed()));
    }
    shots
}

/// `loops` concurrent keep-alive loops sending `per_loop` GETs each.
async fn concurrent(direct: &Direct, loops: usize, per_loop: usize) -> Vec<Shot> {
    let outbound = direct.client.outbound;
    let tasks = (0..loops).map(|_| {
        tokio::spawn(async move {
            let mut http = HttpClient::new(outbound, Protocol::Http1);
            let mut shots = Vec::with_capacity(per_loop);
            for _ in 0..per_loop {
                let t = Instant::now();
                let result = http.get(HOST, "/", &[]).await;
                shots.push(Shot::of(&result, t.elapsed()));
            }
            shots
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.expect("loop panicked"))
        .collect()
}

fn elapsed(shots: &[Shot]) -> Vec<Duration> {
    shots.iter().map(|s| s.elapsed).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn route_timeout_answers_504_and_bounds_retries() {
    let mut direct = Direct::start(
        HOST,
        1,
        &[("vs.yaml", yaml::virtual_service(HOST, "timeout: 300ms"))],
        ProxySpec::client("client"),
    )
    .await;
    direct.backends[0].set_delay(SLOW);

    let shots = sequential(&direct, 3).await;
    println!(
        "timeout 300ms, backend delay {SLOW:?}: {:?} in {:?}",
        tally(&shots),
        elapsed(&shots)
    );
    for s in &shots {
        assert_eq!(s.status, Some(504), "{s:?}");
        assert!(
            s.elapsed >= Duration::from_millis(300) && s.elapsed < Duration::from_millis(1500),
            "a 300 ms timeout answered after {:?}",
            s.elapsed
        );
    }

    // The route timeout bounds the whole request, retries included: with
    // perTryTimeout 400ms and 5 retries, tries alone would take 2.4 s.
    direct
        .apply(
            "vs.yaml",
            &yaml::virtual_service(
                HOST,
                "timeout: 500ms\nretries:\n  attempts: 5\n  perTryTimeout: 400ms\n  retryOn: 5xx",
            ),
        )
        .await;
    let hits_before = direct.backends[0].hits();
    let shots = sequential(&direct, 3).await;
    let tries = direct.backends[0].hits() - hits_before;
    println!(
        "timeout 500ms, perTryTimeout 400ms, attempts 5, backend delay {SLOW:?}: {:?} in {:?}; the \
         backend saw {tries} tries for 3 requests",
        tally(&shots),
        elapsed(&shots)
    );
    for s in &shots {
        assert_eq!(s.status, Some(504), "{s:?}");
        assert!(
            s.elapsed >= Duration::from_millis(500) && s.elapsed < Duration::from_millis(1500),
            "a 500 ms route timeout answered after {:?} (unbounded tries take 2.4 s)",
            s.elapsed
        );
    }
    assert!(
        (3..=6).contains(&tries),
        "at most a first try and one retry fit in 500 ms per request: {tries} tries"
    );
}

/// An app that answers every request at once with `content-length: 1000`
/// and the first 10 bytes of the body, then sends nothing for `stall` (a
/// stuck download) before the rest. Counts the connections its client
/// closed during the stall. Serves until the test's runtime ends.
async fn stalling_app(stall: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&closed);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                    .await;
                // The client sends nothing more: a read ends only when it
                // closes the connection (or the stall is over).
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(stall, stream.read(&mut buf)).await
                {
                    closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                let _ = stream.write_all(&[b'x'; 990]).await;
            });
        }
    });
    (addr, closed)
}

/// The same over HTTP/2 (h2c, prior knowledge): every response sends its
/// head and 10 bytes, then stalls. Counts the response bodies dropped
/// before their end, that is the streams its client reset.
async fn stalling_h2_app(stall: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let reset = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reset);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let reset = Arc::clone(&counter);
            let service = service_fn(move |_req| {
                let body = Stalled {
                    first: Some(Bytes::from_static(b"0123456789")),
                    stall: Box::pin(tokio::time::sleep(stall)),
                    unfinished: Some(Arc::clone(&reset)),
                };
                let resp = Response::builder()
                    .header("content-length", "1000")
                    .body(body)
                    .expect("valid response");
                async move { Ok::<_, Infallible>(resp) }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, reset)
}

/// `count` once it is above zero, or after 5 s: what a test app counted
/// after the proxy's side of an exchange.
async fn settled(count: &AtomicUsize) -> usize {
    let started = Instant::now();
    while count.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count.load(Ordering::SeqCst)
}

/// 10 bytes, a stall, the other 990; counts itself into `unfinished` if
/// dropped before its end.
struct Stalled {
    first: Option<Bytes>,
    stall: Pin<Box<Sleep>>,
    unfinished: Option<Arc<AtomicUsize>>,
}

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.unfinished.is_none() {
            return Poll::Ready(None);
        }
        ready!(self.stall.as_mut().poll(cx));
        self.unfinished = None;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 990])))))
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        if let Some(unfinished) = self.unfinished.take() {
            unfinished.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn route_timeout_cuts_off_a_body_that_stalls() {
    // As in Envoy, the route timeout covers the whole response: headers
    // already forwarded cannot become a 504, so the body is cut off.
    let (app, upstream_closed) = stalling_app(Duration::from_secs(20)).await;
    let (h2_app, h2_resets) = stalling_h2_app(Duration::from_secs(20)).await;
    let se = yaml::service_entry(HOST, &[app]);
    let vs = yaml::virtual_service(HOST, "timeout: 500ms");
    let h2_se = yaml::service_entry_with_protocol(H2_HOST, &[h2_app], "HTTP2");
    let h2_vs = yaml::virtual_service(H2_HOST, "timeout: 500ms");
    let mesh = Mesh::start(&[
        ("se.yaml", &se),
        ("vs.yaml", &vs),
        ("h2-se.yaml", &h2_se),
        ("h2-vs.yaml", &h2_vs),
    ])
    .await;
    let spec = ProxySpec::client("client").arg("--access-log", "json");
    let mut client = mesh.proxy(&spec).await;
    for host in [HOST, H2_HOST] {
        client
            .wait_endpoints(&cluster_name(host, "default", ""), 1, EVENT_TIMEOUT)
            .await;
    }

    let mut stream = TcpStream::connect(client.outbound).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(format!("GET / HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut got = Vec::new();
    // The proxy closes the connection (a read error, or its end) once the
    // timeout passes; without the cut-off it stays open for 20 s.
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    println!("timeout 500ms, body stalled for 20 s: connection ended after {elapsed:?}: {text:?}");
    assert!(
        read.is_ok(),
        "the response was still open after 5 s: the stalled body was not cut off ({text:?})"
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(
        text.ends_with("0123456789"),
        "the head and the first 10 bytes came, and nothing after: {text:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(500),
        "cut off before the timeout: {elapsed:?}"
    );

    // The access log says why: `UT`, not an upstream error.
    let line = client
        .process
        .wait_for(0, EVENT_TIMEOUT, "an access log line", |e| {
            e.name().is_empty()
        })
        .await
        .value;
    assert_eq!(line["response_code"], 200, "{line}");
    assert_eq!(line["response_flags"], "UT", "{line}");

    // The upstream connection, mid-response, is closed, not pooled.
    assert_eq!(
        settled(&upstream_closed).await,
        1,
        "the proxy closed its connection to the app after the cut-off"
    );

    // Over HTTP/2 (to an app on a port declared HTTP2) the stream is
    // reset at the timeout, both towards the client and the app.
    let started = Instant::now();
    let reply = HttpClient::new(client.outbound, Protocol::Http2)
        .get(H2_HOST, "/", &[])
        .await;
    let elapsed = started.elapsed();
    let error = format!("{:#}", reply.expect_err("a body cut short is an error"));
    println!("h2, timeout 500ms, body stalled for 20 s: {error} after {elapsed:?}");
    assert!(!error.contains("timed out"), "{error}");
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5),
        "the h2 stream ended after {elapsed:?}: {error}"
    );
    assert_eq!(
        settled(&h2_resets).await,
        1,
        "the proxy reset its stream to the app after the cut-off"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn per_try_timeout_retries_on_the_fast_endpoint() {
    let vs = yaml::virtual_service(
        HOST,
        "retries:\n  attempts: 2\n  perTryTimeout: 200ms\n  retryOn: 5xx",
    );
    // Round robin: the slow endpoint is every other first pick.
    let dr = yaml::destination_rule(HOST, "loadBalancer:\n  simple: ROUND_ROBIN");
    let direct = Direct::start(
        HOST,
        2,
        &[("vs.yaml", vs), ("dr.yaml", dr)],
        ProxySpec::client("client"),
    )
    .await;
    direct.backends[0].set_delay(SLOW);
    let retries_before = direct.client.stat("remora_retry_attempts_total").await;

    const N: usize = 20;
    let shots = sequential(&direct, N).await;
    let retries = direct.client.stat("remora_retry_attempts_total").await - retries_before;
    let slow_first = shots
        .iter()
        .filter(|s| s.elapsed >= Duration::from_millis(200))
        .count();
    println!(
        "perTryTimeout 200ms, attempts 2, one endpoint {SLOW:?} slow: {:?}; answered by {:?}; \
         {slow_first} took >= 200 ms; slowest {:?}; backend hits {:?}; retry.attempts +{retries}",
        tally(&shots),
        {
            let mut by: Vec<_> = shots.iter().filter_map(|s| s.backend.clone()).collect();
            by.sort();
            by.dedup();
            by
        },
        shots.iter().map(|s| s.elapsed).max(),
        direct.hits()
    );
    for s in &shots {
        assert_eq!(s.status, Some(200), "{s:?}");
        assert_eq!(
            s.backend.as_deref(),
            Some("b1"),
            "the fast endpoint answered: {s:?}"
        );
        assert!(
            s.elapsed < Duration::from_millis(1500),
            "a request waited for the slow endpoint: {:?}",
            s.elapsed
        );
    }
    let slow_hits = direct.backends[0].hits();
    assert!(slow_hits >= 1, "the slow endpoint was never tried");
    assert!(
        slow_hits <= N,
        "a retry prefers another endpoint: the slow one was tried {slow_hits} times for {N} requests"
    );
    assert_eq!(
        retries, slow_hits as u64,
        "one retry per timed-out try on the slow endpoint"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_delay_and_abort_at_100_percent() {
    let delay = "fault:\n  delay:\n    fixedDelay: 200ms\n    percentage:\n      value: 100";
    let mut direct = Direct::start(
        HOST,
        1,
        &[("vs.yaml", yaml::virtual_service(HOST, delay))],
        ProxySpec::client("client"),
    )
    .await;

    let shots = sequential(&direct, 5).await;
    println!(
        "fault delay 200ms at 100%: {:?} in {:?}; backend saw {}",
        tally(&shots),
        elapsed(&shots),
        direct.backends[0].hits()
    );
    for s in &shots {
        assert_eq!(s.status, Some(200), "{s:?}");
        assert!(
            s.elapsed >= Duration::from_millis(200),
            "a delayed request took {:?}",
            s.elapsed
        );
    }
    assert_eq!(
        direct.backends[0].hits(),
        5,
        "delayed requests reach the backend"
    );

    let abort = "fault:\n  abort:\n    httpStatus: 418\n    percentage:\n      value: 100";
    direct
        .apply("vs.yaml", &yaml::virtual_service(HOST, abort))
        .await;
    let before = direct.backends[0].hits();
    let shots = sequential(&direct, 20).await;
    let reached = direct.backends[0].hits() - before;
    println!(
        "fault abort 418 at 100%: {:?}; backend saw {reached}",
        tally(&shots)
    );
    assert!(
        shots.iter().all(|s| s.status == Some(418)),
        "{:?}",
        tally(&shots)
    );
    assert_eq!(reached, 0, "aborted requests never reach the backend");
    // Aborted requests are labelled with the destination of their route.
    let samples = direct.client.prometheus().await.expect("scrape client");
    let aborted: Vec<_> = samples
        .iter()
        .filter(|(k, _)| k.starts_with("remora_requests_total{") && k.contains("code=\"418\""))
        .collect();
    assert!(!aborted.is_empty(), "no 418 series: {samples:#?}");
    for (key, n) in &aborted {
        assert!(
            key.contains(&format!("destination_service=\"{HOST}"))
                && !key.contains("destination_service=\"unknown\""),
            "an aborted request keeps its destination: {key} {n}"
        );
    }
    assert_eq!(
        aborted.iter().map(|(_, n)| **n).sum::<f64>(),
        20.0,
        "{aborted:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_percentages_are_statistically_right() {
    // Abort at 50% over 1,000 requests: sd = sqrt(1000 x 0.25) = 15.8, so
    // 450..=550 is +-3.2 sd (a false failure about once in 600 runs).
    let abort = "fault:\n  abort:\n    httpStatus: 418\n    percentage:\n      value: 50";
    let mut direct = Direct::start(
        HOST,
        1,
        &[("vs.yaml", yaml::virtual_service(HOST, abort))],
        ProxySpec::client("client"),
    )
    .await;
    let started = Instant::now();
    let shots = concurrent(&direct, 4, 250).await;
    let aborted = shots.iter().filter(|s| s.status == Some(418)).count();
    let passed = shots.iter().filter(|s| s.status == Some(200)).count();
    let hits = direct.backends[0].hits();
    println!(
        "fault abort 50%: {aborted} of {} aborted ({:.1}%), {passed} passed, backend saw {hits}, in {:?}",
        shots.len(),
        100.0 * aborted as f64 / shots.len() as f64,
        started.elapsed()
    );
    assert_eq!(aborted + passed, shots.len(), "{:?}", tally(&shots));
    assert!(
        (450..=550).contains(&aborted),
        "{aborted} of 1000 aborted at 50%"
    );
    assert_eq!(
        hits, passed,
        "exactly the requests not aborted reached the backend"
    );

    // Delay at 50%: 400 requests, delayed ones take >= 100 ms; undelayed
    // ones take a few ms (a loaded machine may push a few over, hence the
    // wider bounds: sd = 10, 160..=240 is +-4 sd).
    let delay = "fault:\n  delay:\n    fixedDelay: 100ms\n    percentage:\n      value: 50";
    direct
        .apply("vs.yaml", &yaml::virtual_service(HOST, delay))
        .await;
    let shots = concurrent(&direct, 8, 50).await;
    let slow = shots
        .iter()
        .filter(|s| s.elapsed >= Duration::from_millis(100))
        .count();
    println!(
        "fault delay 100ms at 50%: {slow} of {} took >= 100 ms; {:?}",
        shots.len(),
        tally(&shots)
    );
    assert!(
        shots.iter().all(|s| s.status == Some(200)),
        "{:?}",
        tally(&shots)
    );
    assert!((160..=240).contains(&slow), "{slow} of 400 delayed at 50%");
}
