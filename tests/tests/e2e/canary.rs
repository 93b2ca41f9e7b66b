//! The canary split through one client proxy: smooth weighted round robin
//! makes 90/10 exact, and `end-user: jason` always reaches v2. The apps are
//! `remora-demo-app` processes, as in the example.

use remora_e2e::scenario::{AppKind, Canary};
use remora_e2e::{HttpClient, Protocol};

/// Sends `n` sequential `GET /version` for `reviews` and returns the
/// versions that answered, in order.
async fn versions(client: &mut HttpClient, n: usize, headers: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let reply = client
            .get("reviews", "/version", headers)
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
        out.push(reply.body.trim().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_90_10_is_exact_and_jason_always_reaches_v2() {
    let canary = Canary::start(90, 10, AppKind::DemoApp).await;
    let mark = canary.client.process.mark();
    let mut client = canary.client.client(Protocol::Http1);

    let seen = versions(&mut client, 1000, &[]).await;
    let v1 = seen.iter().filter(|v| *v == "v1").count();
    let v2 = seen.iter().filter(|v| *v == "v2").count();
    println!("canary: {v1} v1 / {v2} v2 over 1000 requests");
    assert_eq!((v1, v2), (900, 100), "unexpected answers: {:?}", {
        let mut other: Vec<_> = seen.iter().filter(|v| *v != "v1" && *v != "v2").collect();
        other.dedup();
        other
    });
    // Smooth weighted round robin: every run of 10 consecutive requests has
    // exactly one v2, not merely 100 in total.
    for (start, window) in seen.windows(10).enumerate() {
        let n_v2 = window.iter().filter(|v| *v == "v2").count();
        assert_eq!(
            n_v2,
            1,
            "requests {start}..{}: {window:?} (SWRR gives exactly 9:1 in every 10)",
            start + 10
        );
    }

    let jason = versions(&mut client, 100, &[("end-user", "jason")]).await;
    let to_v2 = jason.iter().filter(|v| *v == "v2").count();
    println!("canary: end-user jason reached v2 {to_v2}/100");
    assert_eq!(to_v2, 100, "jason's requests: {jason:?}");

    // The same through h2 prior knowledge, on the same proxy.
    let mut h2 = canary.client.client(Protocol::Http2);
    let jason_h2 = versions(&mut h2, 20, &[("end-user", "jason")]).await;
    assert!(jason_h2.iter().all(|v| v == "v2"), "{jason_h2:?}");

    // The split held on one config: nothing was re-applied mid-run (which
    // would restart the schedule and make the counts above meaningless).
    let reapplied: Vec<_> = canary
        .client
        .process
        .events_since(mark)
        .into_iter()
        .filter(|e| e.name() == "applied")
        .map(|e| e.value)
        .collect();
    assert!(
        reapplied.is_empty(),
        "config changed during the run: {reapplied:?}"
    );
}
