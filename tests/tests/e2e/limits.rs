//! Limits on what a peer may send, end to end through a sidecar pair that
//! talks mTLS: header sizes (issue 15, D4) and the timeouts and connection
//! limits of the listeners (D5).
//!
//! The pair is a client-only proxy `productpage` and a sidecar `reviews`
//! in front of an in-process backend ([`Pair`]); the client sidecar carries every
//! request to `reviews` over one shared HTTP/2 mTLS connection.

use std::time::Duration;

use remora_e2e::secure::SidecarPair as Pair;
use remora_e2e::{Protocol, Reply};

/// Requests in flight on the shared connection while an attack runs.
const IN_FLIGHT: usize = 20;

/// What the limit tests do with the pair.
trait InFlight {
    async fn slow_requests(&self) -> tokio::task::JoinSet<anyhow::Result<Reply>>;
    async fn assert_all_succeed(&self, set: tokio::task::JoinSet<anyhow::Result<Reply>>);
}

impl InFlight for Pair {
    /// `IN_FLIGHT` slow requests, each on its own connection to the client
    /// sidecar; returns once the app has them all, so that they are in
    /// flight on the shared connection between the sidecars.
    async fn slow_requests(&self) -> tokio::task::JoinSet<anyhow::Result<Reply>> {
        let before = self.app.hits();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let mut client = self.client.client(Protocol::Http1);
            set.spawn(async move { client.get("reviews", "/delay/3000", &[]).await });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.app.hits() < before + IN_FLIGHT {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {IN_FLIGHT} requests reached the app\n{}",
                self.app.hits() - before,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        set
    }

    /// Every slow request succeeded.
    async fn assert_all_succeed(&self, mut set: tokio::task::JoinSet<anyhow::Result<Reply>>) {
        let mut ok = 0;
        while let Some(joined) = set.join_next().await {
            let reply = joined
                .expect("request task")
                .unwrap_or_else(|e| panic!("a request in flight failed: {e:#}\n{}", self.logs()));
            assert_eq!(reply.status, 200, "{}\n{}", reply.body, self.logs());
            ok += 1;
        }
        assert_eq!(ok, IN_FLIGHT);
    }
}

/// A header value of `bytes` bytes.
fn big(bytes: usize) -> String {
    "a".repeat(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_header_gets_431_alone_and_the_shared_connection_lives_on() {
    let pair = Pair::start(&[], &[]).await;
    let in_flight = pair.slow_requests().await;

    // 66 KB: over Envoy's 60 KiB default; before the limit it reset the
    // shared h2 connection (GOAWAY) and all 20 requests on it got 502.
    let header = big(66 * 1024);
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let reply = pair
            .client
            .client(protocol)
            .get("reviews", "/", &[("x-big", &header)])
            .await
            .unwrap_or_else(|e| panic!("{protocol:?}: {e:#}\n{}", pair.logs()));
        println!(
            "{protocol:?} 66 KB header: {} {}",
            reply.status,
            reply.body.trim()
        );
        assert_eq!(reply.status, 431, "{protocol:?}: {}", reply.body);
        assert!(
            reply.body.contains("request headers are")
                && reply.body.contains("--max-request-headers-kb"),
            "{protocol:?}: the 431 should say why: {}",
            reply.body
        );
    }
    // Response headers over the limit, from the app behind the server
    // sidecar: 502 with the reason, and the other requests are unaffected.
    let reply = pair
        .client
        .client(Protocol::Http1)
        .get("reviews", "/header/70000", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", pair.logs()));
    println!(
        "70 KB response header: {} {}",
        reply.status,
        reply.body.trim()
    );
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(
        reply.body.contains("response headers are")
            && reply.body.contains("--max-response-headers-kb"),
        "the 502 should say why: {}",
        reply.body
    );

    pair.assert_all_succeed(in_flight).await;

    // Under the limit but over hyper's 16 KiB HTTP/2 default, both ways
    // (the response only over HTTP/1.1: the test's h2 client keeps hyper's
    // 16 KiB): the two sides of the hop agree on the limit.
    let header = big(40 * 1024);
    for (protocol, path, response_header) in [
        (Protocol::Http1, "/header/40000", Some(40_000)),
        (Protocol::Http2, "/", None),
    ] {
        let reply = pair
            .client
            .client(protocol)
            .get("reviews", path, &[("x-big", &header)])
            .await
            .unwrap_or_else(|e| panic!("{protocol:?}: {e:#}\n{}", pair.logs()));
        assert_eq!(reply.status, 200, "{protocol:?}: {}", reply.body);
        assert_eq!(
            reply.headers.get("x-big").map(|v| v.len()),
            response_header,
            "{protocol:?}: the large response header should arrive whole"
        );
    }
}
