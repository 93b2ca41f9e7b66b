//! Route timeouts, per-try timeouts and fault injection with real
//! processes and in-process backends. Timing assertions are one-sided or
//! generous: the machine may be slow.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use remora_e2e::direct::{Direct, Shot, tally};
use remora_e2e::discovery::cluster_name;
use remora_e2e::{EVENT_TIMEOUT, HttpClient, Mesh, Protocol, ProxySpec, yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "httpbin";

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
/// stuck download) before the rest. Serves until the test's runtime ends.
async fn stalling_app(stall: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
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
                tokio::time::sleep(stall).await;
                let _ = stream.write_all(&[b'x'; 990]).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn route_timeout_cuts_off_a_body_that_stalls() {
    // As in Envoy, the route timeout covers the whole response: headers
    // already forwarded cannot become a 504, so the body is cut off.
    let app = stalling_app(Duration::from_secs(20)).await;
    let se = yaml::service_entry(HOST, &[app]);
    let vs = yaml::virtual_service(HOST, "timeout: 500ms");
    let mesh = Mesh::start(&[("se.yaml", &se), ("vs.yaml", &vs)]).await;
    let spec = ProxySpec::client("client").arg("--access-log", "json");
    let client = mesh.proxy(&spec).await;
    client
        .wait_endpoints(&cluster_name(HOST, "default", ""), 1, EVENT_TIMEOUT)
        .await;

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
    let started = Instant::now();
    let line = loop {
        let line = client
            .process
            .events_since(0)
            .into_iter()
            .find(|e| e.name().is_empty())
            .map(|e| e.value);
        if line.is_some() || started.elapsed() > Duration::from_secs(10) {
            break line;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let line = line.expect("an access log line for the request");
    assert_eq!(line["response_code"], 200, "{line}");
    assert_eq!(line["response_flags"], "UT", "{line}");
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
