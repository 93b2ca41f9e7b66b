//! A weight change written to the config directory reaches a proxy under
//! continuous load within one second, and no request fails meanwhile.

use std::time::{Duration, Instant};

use remora_e2e::load::{Sample, failures};
use remora_e2e::scenario::{AppKind, Canary, VS_FILE};
use remora_e2e::{EVENT_TIMEOUT, Load, yaml};

/// Client loops sharing the proxy.
const LOOPS: usize = 4;
/// The longest the load runs, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(20);
/// How soon a change must take effect.
const BUDGET: Duration = Duration::from_secs(1);

/// The start time of the last request in the first run of 10 consecutive
/// requests (by start time, from `since`) with at least 4 answered by v2:
/// impossible under 90/10 (even reordered by 4 concurrent loops, at most 2
/// of 10), normal under 50/50. An upper bound on when 50/50 took effect.
fn first_50_50_window(samples: &[Sample], since: Instant) -> Option<Instant> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started >= since).collect();
    after.windows(10).find_map(|w| {
        let v2 = w
            .iter()
            .filter(|s| s.outcome.as_deref() == Ok("v2"))
            .count();
        (v2 >= 4).then(|| w[9].started)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn weight_change_reaches_proxy_within_a_second_without_failures() {
    let mut canary = Canary::start(90, 10, AppKind::InProcess).await;
    let load = Load::start(canary.client.outbound, "reviews", "/", LOOPS, LOAD_LIMIT);
    load.wait_more(200, Duration::from_secs(10)).await;

    let mark = canary.client.process.mark();
    let written = canary
        .mesh
        .write_file(VS_FILE, &yaml::reviews_canary(50, 50));
    let applied = canary
        .client
        .process
        .wait_for(mark, EVENT_TIMEOUT, "`applied` event", |e| {
            e.name() == "applied"
        })
        .await;
    // Keep the load on for a second of the new config (a measurement
    // period, not a wait for anything), and at least 200 more requests.
    tokio::time::sleep_until((applied.at + Duration::from_secs(1)).into()).await;
    load.wait_more(200, Duration::from_secs(10)).await;
    let samples = load.stop().await;

    let to_applied = applied.at.saturating_duration_since(written);
    let to_pattern =
        first_50_50_window(&samples, written).map(|t| t.saturating_duration_since(written));
    let before = samples.iter().filter(|s| s.started < written).count();
    let after_applied: Vec<&Sample> = samples.iter().filter(|s| s.started > applied.at).collect();
    let v2_after = after_applied
        .iter()
        .filter(|s| s.outcome.as_deref() == Ok("v2"))
        .count();
    let failed = failures(&samples);
    println!(
        "weight change 90/10 -> 50/50 under load ({LOOPS} loops): {} requests ({before} before the write), \
         {} failed; rename -> proxy `applied`: {to_applied:?}; rename -> first 50/50 window: {to_pattern:?}; \
         after applied: {v2_after}/{} to v2",
        samples.len(),
        failed.len(),
        after_applied.len()
    );

    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        to_applied <= BUDGET,
        "the proxy applied the change {to_applied:?} after the rename (budget {BUDGET:?})"
    );
    let to_pattern = to_pattern.expect("no 50/50 pattern in the responses after the change");
    assert!(
        to_pattern <= BUDGET,
        "responses followed 50/50 only {to_pattern:?} after the rename (budget {BUDGET:?})"
    );
    assert!(
        after_applied.len() >= 100,
        "too few requests after the change to judge the split: {}",
        after_applied.len()
    );
    // One proxy, one SWRR schedule: 50/50 alternates, whatever the loops'
    // interleaving, so the share is within a request or two of half.
    let share = v2_after as f64 / after_applied.len() as f64;
    assert!(
        (0.45..=0.55).contains(&share),
        "v2 share after the change: {v2_after}/{}",
        after_applied.len()
    );
    assert!(
        canary.backends.iter().all(|b| b.hits() > 0),
        "both versions served"
    );
}
