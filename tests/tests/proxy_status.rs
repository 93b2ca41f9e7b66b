//! `remora proxy-status` and the control plane's monitoring port, against
//! a real control plane and two real proxies: both listed SYNCED with the
//! version they applied; after a config they cannot apply, NACKED with the
//! reason while they keep that version; `/metrics` counting it all; and a
//! clear exit 1 when the control plane cannot be reached.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use remora_e2e::{Backend, EVENT_TIMEOUT, HttpClient, Mesh, Protocol, Proxy, ProxySpec, bin};
use serde_json::Value;

const GOOD: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
";

/// Accepted by the control plane (the regex compiles within its default
/// limit) but NACKed by every proxy: `\w` is Unicode, and 64 of them exceed
/// the proxy's 1 MiB compiled-regex limit, as Envoy's RE2 program-size
/// limit NACKs regexes istiod accepts.
const UNAPPLIABLE: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: huge-regex
    match:
    - uri: {regex: '/reviews/\\w{64}'}
    route:
    - destination: {host: reviews}
  - route:
    - destination: {host: reviews}
";

/// One proxy line of `remora proxy-status`, with its error line if any.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    service: String,
    version: String,
    status: String,
    last_push: String,
    error: Option<String>,
}

/// `remora proxy-status --control-plane-admin <admin>`: exit code, stdout,
/// stderr.
async fn proxy_status(admin: &str) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(bin("remora"))
        .args(["proxy-status", "--control-plane-admin", admin])
        .output()
        .await
        .expect("run remora proxy-status");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Parses the table, checking its header.
fn parse(table: &str) -> Vec<Row> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "SERVICE", "VERSION", "STATUS", "LAST", "PUSH"],
        "header of:\n{table}"
    );
    let mut rows: Vec<Row> = Vec::new();
    for line in lines {
        if let Some(error) = line.trim_start().strip_prefix("error: ")
            && line.starts_with(' ')
        {
            let row = rows
                .last_mut()
                .unwrap_or_else(|| panic!("error line before any proxy:\n{table}"));
            row.error = Some(error.to_owned());
            continue;
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert!(cells.len() >= 5, "short line {line:?} in:\n{table}");
        rows.push(Row {
            name: cells[0].to_owned(),
            service: cells[1].to_owned(),
            version: cells[2].to_owned(),
            status: cells[3].to_owned(),
            last_push: cells[4..].join(" "),
            error: None,
        });
    }
    rows
}

/// The proxy's node id, as the control plane lists it.
fn node_id(proxy: &Proxy, service: &str) -> String {
    let pid = proxy.process.pid().expect("proxy is running");
    format!("{service}-{pid}.default")
}

/// The version in the proxy's `/config_dump`: what it runs.
async fn applied_version(proxy: &Proxy) -> String {
    let dump = proxy.config_dump().await.expect("config_dump");
    dump["version"].as_str().unwrap_or_default().to_owned()
}

/// Runs `remora proxy-status` until every proxy of `want` (node id,
/// proxy) is listed with `status` and the version its `/config_dump`
/// shows, for up to [`EVENT_TIMEOUT`]. Returns the rows by node id.
async fn wait_listed(admin: &str, want: &[(&str, &Proxy)], status: &str) -> BTreeMap<String, Row> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let (code, stdout, stderr) = proxy_status(admin).await;
        assert_eq!(code, Some(0), "proxy-status failed:\n{stderr}");
        let rows: BTreeMap<String, Row> = parse(&stdout)
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut settled = rows.len() == want.len();
        for (id, proxy) in want {
            let applied = applied_version(proxy).await;
            settled &= rows
                .get(*id)
                .is_some_and(|r| r.status == status && r.version == applied);
        }
        if settled {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "not every proxy was {status} with its applied version within {EVENT_TIMEOUT:?}:\n{stdout}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET path` on the monitoring port.
async fn get(monitoring: SocketAddr, path: &str) -> String {
    let reply = HttpClient::new(monitoring, Protocol::Http1)
        .get("control-plane", path, &[])
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    assert!(
        reply.status.is_success(),
        "GET {path}: {} {}",
        reply.status,
        reply.body
    );
    reply.body
}

/// The value of series `name` (labels included, as printed) in `/metrics`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_status_lists_synced_then_nacked_proxies_and_metrics_count_them() {
    let app = Backend::start("v1").await;
    let mesh = Mesh::start(&[("reviews.yaml", GOOD)]).await;
    let monitoring = mesh.control_plane.monitoring;
    let admin = format!("http://{monitoring}");
    let mut sidecar = mesh
        .proxy(&ProxySpec::sidecar("reviews", "v1", app.addr))
        .await;
    let mut client = mesh.proxy(&ProxySpec::client("productpage")).await;
    let sidecar_id = node_id(&sidecar, "reviews");
    let client_id = node_id(&client, "productpage");

    // Both SYNCED, each with the version it applied.
    let want = [
        (sidecar_id.as_str(), &sidecar),
        (client_id.as_str(), &client),
    ];
    let rows = wait_listed(&admin, &want, "SYNCED").await;
    assert_eq!(rows[&sidecar_id].service, "reviews.default");
    assert_eq!(rows[&client_id].service, "productpage.default");
    for row in rows.values() {
        assert!(row.last_push.ends_with("s ago"), "{row:?}");
        assert_eq!(row.error, None, "{row:?}");
    }
    let synced_versions: BTreeMap<String, String> = rows
        .iter()
        .map(|(id, r)| (id.clone(), r.version.clone()))
        .collect();

    // The JSON behind it carries the registration too.
    let json: Value = serde_json::from_str(&get(monitoring, "/debug/proxies").await).unwrap();
    let entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == sidecar_id.as_str())
        .unwrap_or_else(|| panic!("{sidecar_id} not in {json}"));
    assert_eq!(entry["labels"]["version"], "v1");
    assert_eq!(
        entry["inbound_address"],
        sidecar.inbound.unwrap().to_string()
    );
    assert_eq!(entry["status"], "SYNCED");
    assert_eq!(entry["version_sent"], entry["version_acked"]);

    let metrics = get(monitoring, "/metrics").await;
    assert_eq!(metric(&metrics, "remora_connected_proxies"), 2.0);
    assert_eq!(metric(&metrics, "remora_nacks_total"), 0.0);
    assert!(metric(&metrics, "remora_pushes_total{result=\"ack\"}") >= 2.0);
    assert!(metric(&metrics, "remora_push_latency_seconds_count") >= 2.0);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("remora_config_info{version=")),
        "{metrics}"
    );

    // A config both proxies must NACK: they keep their version.
    let marks = (sidecar.process.mark(), client.process.mark());
    mesh.write_file("reviews.yaml", UNAPPLIABLE);
    for (proxy, mark) in [(&mut sidecar, marks.0), (&mut client, marks.1)] {
        let rejected = proxy
            .process
            .wait_for(mark, EVENT_TIMEOUT, "`rejected` event", |e| {
                e.name() == "rejected"
            })
            .await;
        assert!(
            rejected.str("error").contains("size limit"),
            "{}",
            rejected.value
        );
    }
    let want = [
        (sidecar_id.as_str(), &sidecar),
        (client_id.as_str(), &client),
    ];
    let rows = wait_listed(&admin, &want, "NACKED").await;
    for (id, row) in &rows {
        assert_eq!(row.version, synced_versions[id], "{id} keeps its version");
        let error = row.error.as_deref().unwrap_or_else(|| panic!("{row:?}"));
        assert!(
            error.contains("huge-regex") && error.contains("size limit"),
            "{id}: {error}"
        );
    }

    let metrics = get(monitoring, "/metrics").await;
    assert_eq!(metric(&metrics, "remora_connected_proxies"), 2.0);
    assert!(metric(&metrics, "remora_nacks_total") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "remora_pushes_total{result=\"nack\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_status_exits_1_naming_the_url_when_the_control_plane_is_down() {
    // A port that was free a moment ago: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let admin = format!("http://{addr}");
    let (code, stdout, stderr) = proxy_status(&admin).await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the control plane at {admin}/debug/proxies"
        )),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}
