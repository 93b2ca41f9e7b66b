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

/// A ServiceEntry of `endpoints` addresses (never dialled: the snapshot
/// that would carry them is not sent) and a DestinationRule whose
/// `subsets` subsets each select all of them. Every endpoint appears in
/// `1 + subsets` clusters, so the snapshot grows by about 30 bytes per
/// endpoint and cluster while the YAML grows by 40 per endpoint: far over
/// a proxy's 4 MiB from a file well under the control plane's limit.
fn bloated(endpoints: usize, subsets: usize) -> String {
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: bloat}\n\
         spec:\n  hosts: [bloat.example.com]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
         ports:\n  - {number: 80, name: http}\n  endpoints:\n",
    );
    for i in 0..endpoints {
        y.push_str(&format!(
            "  - {{address: 10.{}.{}.{}, labels: {{app: bloat}}}}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    y.push_str(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {name: bloat}\nspec:\n  host: bloat.example.com\n  subsets:\n",
    );
    for s in 0..subsets {
        y.push_str(&format!("  - {{name: s{s}, labels: {{app: bloat}}}}\n"));
    }
    y
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_too_large_for_proxies_is_refused_and_they_keep_serving_their_config() {
    let app = Backend::start("v1").await;
    let mut mesh = Mesh::start(&[("reviews.yaml", GOOD)]).await;
    let monitoring = mesh.control_plane.monitoring;
    let admin = format!("http://{monitoring}");
    let sidecar = mesh
        .proxy(&ProxySpec::sidecar("reviews", "v1", app.addr))
        .await;
    let mut client = mesh.proxy(&ProxySpec::client("productpage")).await;
    let sidecar_id = node_id(&sidecar, "reviews");
    let client_id = node_id(&client, "productpage");
    let want = [
        (sidecar_id.as_str(), &sidecar),
        (client_id.as_str(), &client),
    ];
    let synced = wait_listed(&admin, &want, "SYNCED").await;
    let mut http = client.client(Protocol::Http1);
    let reply = http.get("reviews", "/", &[]).await.expect("request");
    assert_eq!((reply.status.as_u16(), reply.body.trim()), (200, "v1"));

    // 10,000 endpoints in 16 clusters: about 5 MiB encoded, from 0.5 MiB
    // of YAML.
    let cp_mark = mesh.control_plane.process.mark();
    let proxy_mark = client.process.mark();
    let bloat = bloated(10_000, 15);
    assert!(bloat.len() < 1 << 20, "{} bytes of YAML", bloat.len());
    mesh.write_file("bloat.yaml", &bloat);
    let mut refused = BTreeMap::new();
    for id in [&sidecar_id, &client_id] {
        let event = mesh
            .control_plane
            .process
            .wait_for(cp_mark, EVENT_TIMEOUT, "`snapshot_refused` event", |e| {
                e.name() == "snapshot_refused" && e.str("node") == id.as_str()
            })
            .await;
        let bytes = event.value["bytes"].as_u64().expect("bytes");
        assert!(bytes > 4 << 20, "{}", event.value);
        assert_eq!(event.value["limit"].as_u64(), Some(4 << 20));
        refused.insert(id.clone(), event.str("version").to_owned());
    }

    // Listed REFUSED with the reason, each on the version it had.
    let rows = wait_listed(&admin, &want, "REFUSED").await;
    for (id, row) in &rows {
        assert_eq!(row.version, synced[id].version, "{id} keeps its version");
        let error = row.error.as_deref().unwrap_or_else(|| panic!("{row:?}"));
        assert!(
            error.contains(&refused[id])
                && error.contains("bytes encoded, over the 4194304 bytes a proxy accepts")
                && error.contains("160001 endpoints"),
            "{id}: {error}"
        );
    }
    let metrics = get(monitoring, "/metrics").await;
    assert!(
        metric(&metrics, "remora_snapshots_refused_total") >= 2.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "remora_connected_proxies"), 2.0);

    // The proxy heard nothing: no failed stream, no new config; it serves
    // as before.
    let reply = http.get("reviews", "/", &[]).await.expect("request");
    assert_eq!((reply.status.as_u16(), reply.body.trim()), (200, "v1"));
    let heard: Vec<_> = client
        .process
        .events_since(proxy_mark)
        .into_iter()
        .filter(|e| ["ready", "applied", "rejected"].contains(&e.name()))
        .map(|e| e.value)
        .collect();
    assert!(heard.is_empty(), "{heard:?}");
    assert!(
        !client
            .process
            .stderr_tail()
            .contains("discovery stream failed"),
        "{}",
        client.process.stderr_tail()
    );

    // Without the bloat the proxies are back in sync on the stream they
    // had, and the next change reaches them.
    std::fs::remove_file(mesh.file_path("bloat.yaml")).expect("remove bloat.yaml");
    let rows = wait_listed(&admin, &want, "SYNCED").await;
    assert!(rows.values().all(|r| r.error.is_none()), "{rows:?}");
    let mark = client.process.mark();
    mesh.write_file(
        "reviews.yaml",
        &GOOD.replace("- route:", "- name: again\n    route:"),
    );
    client
        .process
        .wait_for(mark, EVENT_TIMEOUT, "`applied` event", |e| {
            e.name() == "applied"
        })
        .await;
}
