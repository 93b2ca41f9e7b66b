//! Outlier detection with real processes: the client proxy connects
//! straight to three in-process backends (a ServiceEntry's static
//! endpoints), so every request and failure is counted exactly.
//!
//! - An endpoint answering 500 is ejected after `consecutive5xxErrors`
//!   failures (the client sees no more than those), stays out for the
//!   ejection time, and then serves again.
//! - An endpoint killed under load: retries on `connect-failure,reset`
//!   hide it from the client, and it is ejected.

use std::time::{Duration, Instant};

use remora_e2e::direct::Direct;
use remora_e2e::load::failures;
use remora_e2e::{EVENT_TIMEOUT, Load, ProxySpec, yaml};

const HOST: &str = "httpbin";

/// `baseEjectionTime` of the first test: short, as the test waits it out
/// (the ejection arithmetic is tested on an injected clock in
/// `outlier::tests`; here the real path is).
const BASE_EJECTION: Duration = Duration::from_secs(2);

/// Phase 1 of the first test ends by then: well within the ejection, which
/// starts after the phase did.
const PHASE1: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_answering_500_is_ejected_then_serves_again() {
    let dr = yaml::destination_rule(
        HOST,
        &format!(
            "outlierDetection:\n  consecutive5xxErrors: 3\n  interval: 1s\n  baseEjectionTime: {}s",
            BASE_EJECTION.as_secs()
        ),
    );
    let direct = Direct::start(HOST, 3, &[("dr.yaml", dr)], ProxySpec::client("client")).await;
    let bad_addr = direct.backends[0].addr.to_string();
    direct.backends[0].set_status(Some(500));
    let mark = direct.client.process.mark();
    let mut http = direct.http();

    // Phase 1: up to 300 sequential requests, for at most PHASE1. The
    // ejection lasts at least BASE_EJECTION from its start (after the
    // start of this phase), so the bad endpoint cannot come back within
    // the phase.
    let started = Instant::now();
    let mut statuses = Vec::new();
    while statuses.len() < 300 && started.elapsed() < PHASE1 {
        let reply = http
            .get(HOST, "/", &[])
            .await
            .unwrap_or_else(|e| panic!("request {}: {e:#}", statuses.len()));
        statuses.push(reply.status.as_u16());
    }
    let phase1 = started.elapsed();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    let bad_hits = direct.backends[0].hits();
    let ejected: Vec<_> = direct
        .client
        .process
        .events_since(mark)
        .into_iter()
        .filter(|e| e.name() == "ejected")
        .collect();
    println!(
        "outlier 500: {} sequential requests in {phase1:?}: {failed} failed (statuses other than 200: {:?}); \
         hits per backend {:?}; ejected events: {:?}",
        statuses.len(),
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>(),
        direct.hits(),
        ejected
            .iter()
            .map(|e| e.value.to_string())
            .collect::<Vec<_>>()
    );
    assert!(
        statuses.len() >= 60,
        "only {} requests in {phase1:?}: too slow to judge",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 500),
        "only 200 and the bad endpoint's 500 expected: {statuses:?}"
    );
    assert!(
        failed <= 3,
        "the client saw {failed} failures; consecutive5xxErrors 3 allows at most 3"
    );
    assert_eq!(
        bad_hits, failed,
        "every request the bad endpoint saw reached the client as a 500 (no retry of a status \
         without a retries block)"
    );
    assert_eq!(
        ejected.len(),
        1,
        "one ejection expected within the phase: {:?}",
        ejected.iter().map(|e| &e.value).collect::<Vec<_>>()
    );
    let event = &ejected[0];
    assert_eq!(event.str("endpoint"), bad_addr, "{}", event.value);
    assert!(
        event.str("cluster").contains(HOST),
        "the event names the cluster: {}",
        event.value
    );
    let ms: u64 = event
        .str("ms")
        .parse()
        .unwrap_or_else(|e| panic!("`ms` of {}: {e}", event.value));
    let base_ms = BASE_EJECTION.as_millis() as u64;
    // Remora adds a jitter of at most a tenth of baseEjectionTime (1 s cap).
    assert!(
        (base_ms..=base_ms + base_ms / 10).contains(&ms),
        "first ejection lasts baseEjectionTime ({BASE_EJECTION:?}) plus at most 10% jitter: {}",
        event.value
    );
    assert_eq!(
        direct.client.stat("remora_outlier_ejections_total").await,
        1,
        "/stats outlier.ejections"
    );
    // The admin API shows the ejection on the host, and only there.
    let clusters = remora_e2e::HttpClient::new(direct.client.admin, remora_e2e::Protocol::Http1)
        .get("admin", "/clusters", &[])
        .await
        .expect("GET /clusters");
    let clusters: serde_json::Value = serde_json::from_str(&clusters.body).expect("JSON");
    let cluster = clusters["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == direct.cluster().as_str()))
        .unwrap_or_else(|| panic!("/clusters lists {}: {clusters}", direct.cluster()));
    let state: Vec<(String, bool)> = cluster["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap_or("").to_owned(),
                e["ejected"] == true,
            )
        })
        .collect();
    println!("/clusters after the ejection: {cluster}");
    assert_eq!(state.len(), 3, "{cluster}");
    for (address, ejected) in &state {
        assert_eq!(*ejected, *address == bad_addr, "{address} in {cluster}");
    }

    // Phase 2: the endpoint is fixed; after the ejection time it is picked
    // again (and not before).
    direct.backends[0].set_status(None);
    let ejection = Duration::from_millis(ms);
    let hits_before = direct.backends[0].hits();
    let deadline = event.at + ejection + Duration::from_secs(6);
    let mut back_after = None;
    let mut phase2 = 0;
    while Instant::now() < deadline {
        let reply = http.get(HOST, "/", &[]).await.expect("phase 2 request");
        phase2 += 1;
        assert_eq!(
            reply.status, 200,
            "phase 2 (all endpoints healthy): {}",
            reply.body
        );
        if direct.backends[0].hits() > hits_before {
            back_after = Some(event.at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A little more traffic: it keeps getting its share.
    for _ in 0..60 {
        let reply = http.get(HOST, "/", &[]).await.expect("phase 3 request");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let share = direct.backends[0].hits() - hits_before;
    println!(
        "outlier 500: ejected for {ms} ms; first request to the fixed endpoint {back_after:?} after \
         the event (after {phase2} requests); it then served {share} requests (of {} in phase 2 \
         and 60 more); hits per backend {:?}",
        phase2,
        direct.hits()
    );
    let back_after = back_after.unwrap_or_else(|| {
        panic!("the fixed endpoint got no request within {ejection:?} + 6 s of its ejection")
    });
    assert!(
        back_after + Duration::from_millis(250) >= ejection,
        "the endpoint was picked {back_after:?} after its ejection of {ejection:?}"
    );
    assert!(
        share >= 5,
        "the returned endpoint served only {share} requests"
    );

    // Phase 3: it fails again soon after its return: the second ejection
    // lasts twice baseEjectionTime (the multiplier earns a step back only
    // after an interval, 1 s, spent un-ejected).
    let returned = event.at + ejection;
    direct.backends[0].set_status(Some(500));
    let mark2 = direct.client.process.mark();
    let mut second = None;
    for _ in 0..200 {
        let reply = http.get(HOST, "/", &[]).await.expect("phase 3 request");
        assert!(
            reply.status == 200 || reply.status == 500,
            "phase 3: {}",
            reply.status
        );
        second = direct
            .client
            .process
            .events_since(mark2)
            .into_iter()
            .find(|e| e.name() == "ejected");
        if second.is_some() {
            break;
        }
    }
    let second = second.expect("no second ejection after 200 requests");
    let ms2: u64 = second.str("ms").parse().expect("`ms` is a number");
    let since_return = second.at.saturating_duration_since(returned);
    println!(
        "outlier 500: failing again {since_return:?} after its return, ejected for {ms2} ms: {}",
        second.value
    );
    assert_eq!(second.str("endpoint"), bad_addr);
    if since_return < Duration::from_millis(800) {
        assert!(
            (2 * base_ms..=2 * base_ms + base_ms / 10).contains(&ms2),
            "second ejection lasts 2 x baseEjectionTime plus jitter: {}",
            second.value
        );
    } else {
        println!("(slow machine: more than an interval passed, the multiplier is not asserted)");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_endpoint_is_retried_around_and_ejected() {
    let vs = yaml::virtual_service(
        HOST,
        "retries:\n  attempts: 3\n  retryOn: connect-failure,reset",
    );
    let dr = yaml::destination_rule(
        HOST,
        "outlierDetection:\n  consecutive5xxErrors: 3\n  interval: 1s\n  baseEjectionTime: 30s",
    );
    let mut direct = Direct::start(
        HOST,
        3,
        &[("vs.yaml", vs), ("dr.yaml", dr)],
        ProxySpec::client("client"),
    )
    .await;
    let victim = direct.backends[1].addr.to_string();
    let mark = direct.client.process.mark();
    let retries_before = direct.client.stat("remora_retry_attempts_total").await;

    let load = Load::start(
        direct.client.outbound,
        HOST,
        "/",
        4,
        Duration::from_secs(25),
    );
    load.wait_more(200, Duration::from_secs(10)).await;
    let killed_at = Instant::now();
    let hits_at_kill = direct.hits();
    direct.backends[1].stop().await;
    // Requests in flight during `stop` may still have been answered.
    let stopped_at = Instant::now();
    let victim_hits = direct.backends[1].hits();
    let ejected = direct
        .client
        .process
        .wait_for(
            mark,
            EVENT_TIMEOUT,
            &format!("`ejected` event for {victim}"),
            |e| e.name() == "ejected" && e.str("endpoint") == victim,
        )
        .await;
    let retries_at_ejection = direct.client.stat("remora_retry_attempts_total").await;
    load.wait_more(300, Duration::from_secs(10)).await;
    let samples = load.stop().await;
    let retries_after = direct.client.stat("remora_retry_attempts_total").await;
    let ejections = direct.client.stat("remora_outlier_ejections_total").await;

    let failed = failures(&samples);
    let after_kill = samples.iter().filter(|s| s.started >= killed_at).count();
    println!(
        "killed endpoint: {} requests ({after_kill} after the kill), {} failed; hits per backend \
         at the kill {hits_at_kill:?}, at the end {:?}; ejected {:?} after the kill ({}); \
         retry.attempts {} before the kill, {} at the ejection, {} at the end; outlier.ejections {ejections}",
        samples.len(),
        failed.len(),
        direct.hits(),
        ejected.at.saturating_duration_since(killed_at),
        ejected.value,
        retries_before,
        retries_at_ejection,
        retries_after
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        retries_after > retries_before,
        "retries hid the killed endpoint, so some were made"
    );
    assert!(ejections >= 1, "/stats outlier.ejections = {ejections}");
    assert!(
        samples
            .iter()
            .filter(|s| s.started >= stopped_at)
            .all(|s| s.outcome.as_deref().is_ok_and(|b| b != "b1")),
        "the killed endpoint answered after the kill"
    );
    assert_eq!(
        direct.backends[1].hits(),
        victim_hits,
        "the killed endpoint got requests after it stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_endpoint_can_be_ejected_and_is_then_picked_in_panic() {
    // Default maxEjectionPercent (10%) of one host is zero hosts in Envoy;
    // Remora always allows one ejection. With every host ejected, the
    // cluster balances over all of them (panic), as Envoy does.
    let dr = yaml::destination_rule(
        HOST,
        "outlierDetection:\n  consecutive5xxErrors: 3\n  interval: 1s\n  baseEjectionTime: 30s",
    );
    let mut direct = Direct::start(HOST, 1, &[("dr.yaml", dr)], ProxySpec::client("client")).await;
    let addr = direct.backends[0].addr.to_string();
    direct.backends[0].set_status(Some(500));
    let mark = direct.client.process.mark();
    let mut http = direct.http();
    let mut statuses = Vec::new();
    for i in 0..10 {
        let reply = http
            .get(HOST, "/", &[])
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        statuses.push(reply.status.as_u16());
    }
    let event = direct
        .client
        .process
        .wait_for(
            mark,
            EVENT_TIMEOUT,
            &format!("`ejected` event for {addr}"),
            |e| e.name() == "ejected" && e.str("endpoint") == addr,
        )
        .await;
    println!(
        "single endpoint answering 500: statuses {statuses:?}; backend saw {}; {}",
        direct.backends[0].hits(),
        event.value
    );
    assert!(statuses.iter().all(|s| *s == 500), "{statuses:?}");
    assert_eq!(
        direct.backends[0].hits(),
        10,
        "the ejected sole host is still picked (panic)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consecutive_gateway_errors_eject_on_502_503_504_only() {
    // consecutive5xxErrors 0 turns 5xx-based ejection off, as in Istio.
    let dr = yaml::destination_rule(
        HOST,
        "outlierDetection:\n  consecutive5xxErrors: 0\n  consecutiveGatewayErrors: 2\n  \
         interval: 1s\n  baseEjectionTime: 30s",
    );
    let direct = Direct::start(HOST, 3, &[("dr.yaml", dr)], ProxySpec::client("client")).await;
    let addr = direct.backends[0].addr.to_string();
    let mark = direct.client.process.mark();
    let mut http = direct.http();

    // 500 is not a gateway error: never ejected.
    direct.backends[0].set_status(Some(500));
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let reply = http.get(HOST, "/", &[]).await.expect("request");
        statuses.push(reply.status.as_u16());
    }
    let with_500 = statuses.iter().filter(|s| **s == 500).count();
    let early: Vec<_> = direct
        .client
        .process
        .events_since(mark)
        .into_iter()
        .filter(|e| e.name() == "ejected")
        .map(|e| e.value)
        .collect();

    // 503 is: ejected after two in a row.
    direct.backends[0].set_status(Some(503));
    let mut with_503 = 0;
    let mut ejected = None;
    for _ in 0..200 {
        let reply = http.get(HOST, "/", &[]).await.expect("request");
        with_503 += usize::from(reply.status == 503);
        ejected = direct
            .client
            .process
            .events_since(mark)
            .into_iter()
            .find(|e| e.name() == "ejected");
        if ejected.is_some() {
            break;
        }
    }
    println!(
        "consecutiveGatewayErrors 2, consecutive5xxErrors 0: {with_500} answers 500 over 60 \
         requests and no ejection ({early:?}); then {with_503} answers 503 before {:?}",
        ejected.as_ref().map(|e| &e.value)
    );
    assert!(
        with_500 >= 3,
        "the 500 endpoint was picked only {with_500} times"
    );
    assert!(early.is_empty(), "a 500 is not a gateway error: {early:?}");
    let ejected = ejected.expect("two 503s in a row did not eject the endpoint");
    assert_eq!(ejected.str("endpoint"), addr);
    assert_eq!(with_503, 2, "ejected at the second 503 in a row");
}
