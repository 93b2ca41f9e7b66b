//! Access log lines, read from a real proxy's stdout: one JSON object per
//! request, written when the response ends, carrying the request id that
//! also went upstream.

use std::time::{Duration, Instant};

use remora_e2e::{Direct, ProxySpec};
use serde_json::Value;

const HOST: &str = "httpbin";

/// The access log lines printed so far (stdout objects with no `event`).
fn lines(direct: &Direct) -> Vec<Value> {
    direct
        .client
        .process
        .events_since(0)
        .into_iter()
        .filter(|e| e.name().is_empty())
        .map(|e| e.value)
        .collect()
}

async fn wait_lines(direct: &Direct, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let got = lines(direct);
        if got.len() >= n || started.elapsed() > Duration::from_secs(10) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_one_json_line_with_its_request_id() {
    let spec = ProxySpec::client("client").arg("--access-log", "json");
    let direct = Direct::start(HOST, 1, &[], spec).await;
    let mut http = direct.http();

    let given = http
        .get(HOST, "/echo", &[("x-request-id", "req-given-1")])
        .await
        .expect("request with an id");
    assert_eq!(given.status, 200);
    let made = http
        .get(HOST, "/echo", &[])
        .await
        .expect("request without id");
    assert_eq!(made.status, 200);
    // The id the proxy made went upstream: the echo shows the headers.
    let made_id = made
        .body
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("the proxy adds x-request-id upstream")
        .to_owned();
    let groups: Vec<usize> = made_id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "a UUID: {made_id}");
    assert_eq!(&made_id[14..15], "4", "UUID version 4: {made_id}");
    let missing = http.get("nowhere", "/", &[]).await.expect("no route");
    assert_eq!(missing.status, 404);

    let got = wait_lines(&direct, 3).await;
    println!("access log lines:");
    for l in &got {
        println!("  {l}");
    }
    assert_eq!(got.len(), 3, "one line per request: {got:?}");
    let first = &got[0];
    assert_eq!(first["request_id"], "req-given-1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/echo");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["direction"], "outbound");
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["response_flags"], "-");
    assert_eq!(
        first["upstream_host"].as_str(),
        Some(direct.backends[0].addr.to_string().as_str())
    );
    assert_eq!(
        first["upstream_cluster"].as_str(),
        Some(direct.cluster().as_str())
    );
    assert_eq!(
        first["bytes_sent"].as_u64(),
        Some(given.body.len() as u64),
        "bytes counted as sent to the client"
    );
    assert!(
        first["start_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(got[1]["request_id"], made_id.as_str());
    assert_eq!(got[2]["response_code"], 404);
    assert_eq!(got[2]["response_flags"], "NR");
    assert!(got[2]["upstream_host"].is_null());
}
