//! The control plane killed under load: proxies keep serving their last
//! good config with zero failed requests; restarted on the same port, every
//! proxy reconnects and the next change reaches them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use remora_e2e::load::failures;
use remora_e2e::scenario::{AppKind, Canary, VS_FILE};
use remora_e2e::{EVENT_TIMEOUT, Load, Mesh, yaml};

/// Reconnect backoff is at most 5 s plus jitter; allow three times that.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the control plane stays dead under load.
const OUTAGE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
async fn proxies_survive_control_plane_kill_and_reconnect_after_restart() {
    let mut canary = Canary::start(90, 10, AppKind::InProcess).await;
    let load = Load::start(
        canary.client.outbound,
        "reviews",
        "/",
        4,
        Duration::from_secs(60),
    );
    load.wait_more(200, Duration::from_secs(10)).await;

    canary.mesh.kill_control_plane().await;
    let killed = Instant::now();
    // The outage is a period of time, not a wait for an event.
    tokio::time::sleep(OUTAGE).await;
    load.wait_more(100, Duration::from_secs(10)).await;
    let during_outage = load.completed();

    canary.mesh.restart_control_plane().await;
    let restarted = Instant::now();
    let cp = &mut canary.mesh.control_plane.process;
    let mut nodes = BTreeSet::new();
    let mut reconnect_times = Vec::new();
    while nodes.len() < 3 {
        let ev = cp.wait_event_at("connected", RECONNECT_TIMEOUT).await;
        if nodes.insert(ev.str("node").to_owned()) {
            reconnect_times.push(ev.at.saturating_duration_since(restarted));
        }
    }

    // The next change reaches the client proxy.
    let old_version = canary.client.config_dump().await.expect("dump")["version"].clone();
    let mark = canary.client.process.mark();
    let written = canary
        .mesh
        .write_file(VS_FILE, &yaml::reviews_canary(50, 50));
    let applied = canary
        .client
        .process
        .wait_for(mark, EVENT_TIMEOUT, "`applied` of the change", |e| {
            e.name() == "applied" && e.value["version"] != old_version
        })
        .await;
    load.wait_more(200, Duration::from_secs(10)).await;
    let samples = load.stop().await;
    let after_change: Vec<_> = samples.iter().filter(|s| s.started > applied.at).collect();
    let v2 = after_change
        .iter()
        .filter(|s| s.outcome.as_deref() == Ok("v2"))
        .count();
    let failed = failures(&samples);
    let first_failure = samples
        .iter()
        .find(|s| s.outcome.is_err())
        .map(|s| s.started.saturating_duration_since(restarted));
    let last_failure = samples
        .iter()
        .rev()
        .find(|s| s.outcome.is_err())
        .map(|s| s.finished.saturating_duration_since(restarted));
    println!(
        "control plane restart: {} requests ({} by the end of the outage), {} failed; \
         down for {:?}; reconnects after restart: {reconnect_times:?}; change applied {:?} after the write; \
         after it {v2}/{} to v2",
        samples.len(),
        during_outage,
        failed.len(),
        restarted.duration_since(killed),
        applied.at.saturating_duration_since(written),
        after_change.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, from {first_failure:?} to {last_failure:?} after the restart \
         (negative: before it), e.g. {:?}\nclient proxy events: {:?}\ncontrol plane events: {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(3)],
        canary
            .client
            .process
            .events_since(0)
            .iter()
            .map(|e| e.value.to_string())
            .collect::<Vec<_>>(),
        canary
            .mesh
            .control_plane
            .process
            .events_since(0)
            .iter()
            .map(|e| e.value.to_string())
            .collect::<Vec<_>>(),
    );
    let share = v2 as f64 / after_change.len().max(1) as f64;
    assert!(
        after_change.len() >= 100 && (0.45..=0.55).contains(&share),
        "50/50 after the change: {v2}/{}",
        after_change.len()
    );
}

/// About 1 MiB of valid ServiceEntries: a debug build takes a second or
/// more to parse them.
fn large_config() -> String {
    let mut y = String::new();
    for i in 0..5_000 {
        y.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: se-{i}}}\nspec:\n  \
             hosts: [se-{i}.example.com]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  \
             ports:\n  - {{number: 443, name: https}}\n"
        ));
    }
    y
}

/// SIGTERM while the control plane reads a large config: it exits 0,
/// without a panic (it once panicked there, on the poll task's
/// `JoinError::Cancelled` as the runtime shut down; the poll now runs on a
/// thread of its own, which the shutdown waits for).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_a_large_config_is_read_exits_cleanly() {
    let mut mesh = Mesh::start(&[]).await;
    let big = large_config();
    assert!(big.len() > 1 << 19 && big.len() < 4 << 20, "{}", big.len());
    let mark = mesh.control_plane.process.mark();
    mesh.write_file("big.yaml", &big);
    // Not a wait for an outcome: the signal should land while the poll
    // (every 250 ms) parses the file, which takes longer than this.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = mesh
        .control_plane
        .process
        .terminate(EVENT_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no exit within {EVENT_TIMEOUT:?} of SIGTERM"));
    let stderr = mesh.control_plane.process.stderr_tail();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let events: Vec<_> = mesh
        .control_plane
        .process
        .events_since(mark)
        .into_iter()
        .filter(|e| e.name() == "rejected")
        .map(|e| e.value)
        .collect();
    assert!(events.is_empty(), "{events:?}");
}
