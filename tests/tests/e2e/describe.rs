//! `remora describe` as a process, on the canary config: the exact route,
//! subsets and weights for a request with and without `end-user: jason`,
//! the endpoints of a running mesh, and a clear error for an unknown host.

use std::path::Path;
use std::process::Output;

use remora_e2e::bin;
use remora_e2e::scenario::{AppKind, Canary};
use serde_json::Value;

fn describe(config_dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(bin("remora"))
        .arg("describe")
        .arg("--config-dir")
        .arg(config_dir)
        .args(args)
        .output()
        .expect("run remora describe")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "remora describe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `(cluster, subset, weight)` of each destination.
fn destinations(d: &Value) -> Vec<(String, String, u64)> {
    d["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|x| {
            (
                x["cluster"].as_str().unwrap_or_default().to_owned(),
                x["subset"].as_str().unwrap_or_default().to_owned(),
                x["weight"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_names_route_subset_and_weights_with_and_without_jason() {
    let canary = Canary::start(90, 10, AppKind::InProcess).await;
    let dir = canary.mesh.config_dir();
    let monitoring = canary.mesh.control_plane.monitoring.to_string();

    let jason = json(&describe(
        dir,
        &[
            "--host",
            "reviews",
            "--header",
            "end-user=jason",
            "--control-plane-monitoring",
            &monitoring,
            "--output",
            "json",
        ],
    ));
    assert_eq!(jason["virtual_host"], "reviews.default.svc.cluster.local");
    assert_eq!(jason["route"]["name"], "reviews.default/http[0]");
    assert_eq!(jason["route"]["matched"], 0);
    assert_eq!(
        jason["route"]["why"],
        "match[0] holds: header end-user exact \"jason\""
    );
    assert_eq!(
        destinations(&jason),
        [(Canary::cluster("v2"), "v2".to_owned(), 100)]
    );
    // The running mesh's endpoint of v2: its sidecar's inbound address.
    let v2_inbound = canary.sidecars[1].inbound.expect("inbound").to_string();
    assert_eq!(
        jason["destinations"][0]["endpoints"][0]["address"],
        v2_inbound.as_str()
    );

    let others = json(&describe(
        dir,
        &[
            "--host",
            "reviews:9080",
            "--path",
            "/reviews/1",
            "--output",
            "json",
        ],
    ));
    assert_eq!(others["route"]["name"], "reviews.default/http[1]");
    assert_eq!(others["route"]["matched"], Value::Null);
    assert_eq!(others["skipped"][0]["route"], "reviews.default/http[0]");
    assert_eq!(
        destinations(&others),
        [
            (Canary::cluster("v1"), "v1".to_owned(), 90),
            (Canary::cluster("v2"), "v2".to_owned(), 10)
        ]
    );
    // Without the control plane, endpoints come from the config only.
    assert_eq!(others["destinations"][0]["endpoints"], Value::Array(vec![]));

    // The human-readable form says the same.
    let text = describe(dir, &["--host", "reviews", "--header", "end-user=bob"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("route:         reviews.default/http[1]"),
        "{text}"
    );
    assert!(text.contains("subset v1  weight 90 (90.0%)"), "{text}");
    assert!(text.contains("subset v2  weight 10 (10.0%)"), "{text}");

    let unknown = describe(dir, &["--host", "ratings"]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("no service known as `ratings`"), "{err}");
    assert!(err.contains("reviews.default.svc.cluster.local"), "{err}");
}
