//! Connections that send nothing, or almost nothing, and floods of them
//! (issue 15, D5), end to end against real proxies over real sockets.
//!
//! The pair is a client-only proxy `productpage` and a sidecar `reviews`
//! in front of an in-process backend ([`Pair`]), both with identities; the mesh
//! has no PeerAuthentication, so `reviews`' inbound port is PERMISSIVE
//! (plaintext or mTLS), as in the attack. Every timeout is set short on
//! the command line; the bounds the tests wait for are many times longer,
//! and what they assert is that the connection was closed and counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use remora_e2e::secure::SidecarPair as Pair;
use remora_e2e::{Protocol, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for a connection the proxy should close: many
/// times the short timeouts the proxies run with.
const CLOSE_BOUND: Duration = Duration::from_secs(20);

/// `remora_downstream_cx_timeout_total` of `listener` for `timeout`.
async fn timeouts(proxy: &Proxy, listener: &str, timeout: &str) -> f64 {
    let samples = proxy.prometheus().await.expect("metrics");
    sample(
        &samples,
        &format!(
            "remora_downstream_cx_timeout_total{{listener=\"{listener}\",timeout=\"{timeout}\"}}"
        ),
    )
}

fn sample(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or_else(|| {
        let known: Vec<_> = samples
            .keys()
            .filter(|k| k.starts_with("remora_downstream"))
            .collect();
        panic!("no sample {name}; downstream samples: {known:?}")
    })
}

/// A connection to `addr` that sent `bytes` and then nothing.
async fn stalled(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Waits until the proxy closes `stream` (EOF or reset), reading and
/// discarding whatever it sends first; panics after [`CLOSE_BOUND`].
async fn assert_closed(what: &str, stream: &mut TcpStream, logs: impl Fn() -> String) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(CLOSE_BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: still open after {CLOSE_BOUND:?}\n{}",
        logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_byte_a_partial_preface_or_a_stalled_handshake_is_closed_at_listener_filters_timeout() {
    let short = [("--listener-filters-timeout", "2s")];
    let pair = Pair::start(&short, &short).await;
    let inbound = pair.inbound();
    let outbound = pair.client.outbound;
    let cases: [(&str, SocketAddr, &[u8]); 6] = [
        // PERMISSIVE: one `P` is neither TLS nor a whole HTTP/2 preface.
        ("inbound: one P byte", inbound, b"P"),
        (
            "inbound: a partial HTTP/2 preface",
            inbound,
            b"PRI * HTTP/2.0\r\n",
        ),
        (
            "inbound: a TLS ClientHello cut short",
            inbound,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ),
        ("inbound: nothing", inbound, b""),
        ("outbound: one P byte", outbound, b"P"),
        (
            "outbound: a partial HTTP/2 preface",
            outbound,
            b"PRI * HTTP/2.0\r\n\r\n",
        ),
    ];
    let mut open = Vec::new();
    for (what, addr, bytes) in cases {
        open.push((what, stalled(addr, bytes).await));
    }
    // TLS that completes its handshake without ALPN, then says nothing.
    let mut tls = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &inbound.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client");
    for (what, stream) in &mut open {
        assert_closed(what, stream, || pair.logs()).await;
    }
    let exited = tokio::time::timeout(CLOSE_BOUND, tls.wait()).await;
    assert!(
        exited.is_ok(),
        "TLS without ALPN that sends nothing: still open after {CLOSE_BOUND:?}\n{}",
        pair.logs()
    );
    let inbound_closed = timeouts(&pair.server, "inbound", "listener_filters").await;
    let outbound_closed = timeouts(&pair.client, "outbound", "listener_filters").await;
    println!("listener_filters timeouts: inbound {inbound_closed}, outbound {outbound_closed}");
    assert!(
        inbound_closed >= 5.0,
        "inbound: {inbound_closed}\n{}",
        pair.logs()
    );
    assert!(
        outbound_closed >= 2.0,
        "outbound: {outbound_closed}\n{}",
        pair.logs()
    );

    // A real client is unaffected.
    let reply = pair
        .client
        .client(Protocol::Http1)
        .get("reviews", "/", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Sends `bytes` one at a time, `every` apart, until the proxy closes the
/// connection; the number of bytes it took, or `None` if all were sent.
async fn trickle(addr: SocketAddr, bytes: &[u8], every: Duration) -> Option<usize> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let closed = async move {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let send = async {
        for (i, b) in bytes.iter().enumerate() {
            if write.write_all(&[*b]).await.is_err() {
                return Some(i);
            }
            tokio::time::sleep(every).await;
        }
        None
    };
    tokio::select! {
        () = closed => Some(0),
        sent = send => sent,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_trickled_a_byte_at_a_time_is_closed_at_request_headers_timeout() {
    let short = [("--request-headers-timeout", "2s")];
    let pair = Pair::start(&short, &short).await;
    // 40 bytes at two a second: 20 s, far over the 2 s bound (and under
    // the 30 s hyper's own header timer used to give).
    let head = b"GET / HTTP/1.1\r\nHost: reviews\r\nX-Slow: aaaaaaaaa";
    let every = Duration::from_millis(500);
    let (inbound, outbound) = tokio::join!(
        trickle(pair.inbound(), &head[..40], every),
        trickle(pair.client.outbound, &head[..40], every),
    );
    assert!(
        inbound.is_some(),
        "inbound: the whole trickle was taken\n{}",
        pair.logs()
    );
    assert!(
        outbound.is_some(),
        "outbound: the whole trickle was taken\n{}",
        pair.logs()
    );
    let counted = (
        timeouts(&pair.server, "inbound", "request_headers").await,
        timeouts(&pair.client, "outbound", "request_headers").await,
    );
    println!("request_headers timeouts (inbound, outbound): {counted:?}");
    assert!(
        counted.0 >= 1.0 && counted.1 >= 1.0,
        "{counted:?}\n{}",
        pair.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_request_and_an_idle_connection_are_closed_at_their_idle_timeouts() {
    let client_args = [("--stream-idle-timeout", "2s"), ("--idle-timeout", "3s")];
    let pair = Pair::start(&[], &client_args).await;
    let outbound = pair.client.outbound;

    // A request whose answer takes 30 s: nothing moves on the connection
    // meanwhile, so the stream idle timeout ends it.
    let started = tokio::time::Instant::now();
    let mut slow = stalled(
        outbound,
        b"GET /delay/30000 HTTP/1.1\r\nHost: reviews\r\n\r\n",
    )
    .await;
    assert_closed("a request in flight with nothing moving", &mut slow, || {
        pair.logs()
    })
    .await;
    println!("stalled request closed after {:?}", started.elapsed());

    // A keep-alive connection after its response: the idle timeout.
    let mut idle = stalled(outbound, b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n").await;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(CLOSE_BOUND, idle.read(&mut buf))
        .await
        .expect("a response")
        .expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_closed("an idle keep-alive connection", &mut idle, || pair.logs()).await;

    let counted = (
        timeouts(&pair.client, "outbound", "stream_idle").await,
        timeouts(&pair.client, "outbound", "idle").await,
    );
    println!("outbound timeouts (stream_idle, idle): {counted:?}");
    assert!(
        counted.0 >= 1.0 && counted.1 >= 1.0,
        "{counted:?}\n{}",
        pair.logs()
    );
}

/// Lowers `proxy`'s open-file limit (soft and hard) to `n`.
fn limit_open_files(proxy: &Proxy, n: u64) {
    let pid = proxy.process.pid().expect("a running proxy");
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let limit = rustix::process::Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, limit).expect("prlimit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_idle_connections_does_not_lock_out_an_mtls_peer() {
    // 64 connections per listener, 48 of them for peers without identity;
    // the process may open 200 files, fewer than the flood's 300.
    let pair = Pair::start(&[("--max-connections", "64")], &[]).await;
    limit_open_files(&pair.server, 200);
    let inbound = pair.inbound();

    // 150 plaintext clients that made a request and keep the connection,
    // and 150 that never send a byte.
    let mut flood = Vec::new();
    // Each connect is bounded: a proxy out of descriptors leaves them in
    // its backlog, and a full backlog makes connect wait for minutes.
    let connect = || tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(inbound));
    for _ in 0..150 {
        let Ok(Ok(mut stream)) = connect().await else {
            continue;
        };
        if stream
            .write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
            .await
            .is_ok()
        {
            flood.push(stream);
        }
    }
    for _ in 0..150 {
        if let Ok(Ok(stream)) = connect().await {
            flood.push(stream);
        }
    }
    println!("flood: {} connections opened", flood.len());

    // The first mTLS connection from the client sidecar comes now.
    let reply = tokio::time::timeout(
        CLOSE_BOUND,
        pair.client.client(Protocol::Http1).get("reviews", "/", &[]),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer through the flood\n{}", pair.logs()))
    .unwrap_or_else(|e| panic!("{e:#}\n{}", pair.logs()));
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, pair.logs());

    // A full listener admits a new connection as soon as it has told the
    // oldest one still detecting to close, so while evicted connections
    // finish closing the count can stand above the limit (73 of 64 seen on
    // a loaded machine); once they have closed it is within it.
    let settled_by = std::time::Instant::now() + Duration::from_secs(3);
    let (active, overflow) = loop {
        let samples = pair.server.prometheus().await.expect("metrics");
        let active = sample(
            &samples,
            "remora_downstream_cx_active{listener=\"inbound\"}",
        );
        let overflow = sample(
            &samples,
            "remora_downstream_cx_overflow_total{listener=\"inbound\"}",
        );
        if active <= 66.0 || std::time::Instant::now() > settled_by {
            break (active, overflow);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("inbound: {active} active, {overflow} overflowed");
    assert!(active <= 66.0, "active {active}");
    assert!(overflow >= 150.0, "overflow {overflow}");
    drop(flood);
}
