//! `remora-bench control-plane translate`: what translating a large config
//! costs the control plane, for 1k, 10k and 50k resources.
//!
//! For each size, a child process (so that one size's freed memory does
//! not hide the next one's growth) generates a mesh of that many resources
//! as YAML, parses it as `remora serve` does, registers the proxies, and
//! translates the snapshot of one proxy, then computes its version
//! (encoding it), as a discovery stream does on every change. It reports
//! the CPU time of each step (this thread's run time from
//! `/proc/thread-self/schedstat`, so a busy machine stretches the wall time
//! but not the figure), the growth of the resident set during translation
//! (`VmHWM` after clearing it through `/proc/self/clear_refs`, minus
//! `VmRSS` before), and the size of the encoded snapshot against the
//! proxies' limit.
//!
//! The mesh: 10 namespaces, each with a PeerAuthentication and an
//! AuthorizationPolicy; the rest in services of three resources each: a
//! ServiceEntry (two endpoints, `v1` and `v2`, with sidecars), a
//! DestinationRule (two subsets) and a VirtualService (a header match to
//! `v2`, then 90/10 between `v1` and `v2`, with retries and a timeout). The
//! registered proxies are sidecars of the first services.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use remora_control_plane::config;
use remora_control_plane::translate::{self, MeshSettings, Nodes};
use remora_proto::pb;
use serde::{Deserialize, Serialize};

use crate::procstat;

/// Namespaces of the generated mesh.
const NAMESPACES: usize = 10;

/// How long one size may spend repeating its translation (it always runs
/// at least once).
const REPEAT_BUDGET: Duration = Duration::from_secs(10);

/// Most translations per size; the figure is their median.
const MAX_REPEATS: usize = 5;

/// One size's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TranslateRow {
    /// Resources in the config.
    pub resources: usize,
    /// Registered proxies.
    pub proxies: usize,
    /// Size of the YAML.
    pub yaml_bytes: usize,
    /// CPU time to parse and validate the YAML (once per config change).
    pub parse_cpu_ms: f64,
    /// Resident set growth while parsing, MiB.
    pub parse_peak_mib: f64,
    /// Median CPU time to translate one proxy's snapshot.
    pub translate_cpu_ms: f64,
    /// Median CPU time to encode and hash it (its version).
    pub version_cpu_ms: f64,
    /// Resident set growth during the first translation and version, MiB.
    pub translate_peak_mib: f64,
    /// Translations measured.
    pub repeats: usize,
    /// The encoded snapshot.
    pub snapshot_bytes: usize,
    /// Clusters, endpoints (over all clusters) and virtual hosts in it.
    pub clusters: usize,
    /// Endpoints over all clusters.
    pub endpoints: usize,
    /// Virtual hosts.
    pub virtual_hosts: usize,
}

/// The YAML of a mesh of `resources` resources (at least 20 + 3).
pub fn mesh_yaml(resources: usize) -> String {
    let services = resources.saturating_sub(2 * NAMESPACES) / 3;
    let extra = resources.saturating_sub(2 * NAMESPACES) % 3;
    let mut y = String::with_capacity(resources * 400);
    for k in 0..NAMESPACES {
        let _ = write!(
            y,
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: default, namespace: ns-{k}}}\nspec:\n  mtls: {{mode: STRICT}}\n\
             ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: allow-mesh, namespace: ns-{k}}}\nspec:\n  \
             rules: [{{from: [{{source: {{principals: ['cluster.local/ns/*']}}}}]}}]\n"
        );
    }
    for i in 0..services + extra {
        let ns = i % NAMESPACES;
        let (a, b) = (i / 250, i % 250);
        let _ = write!(
            y,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: svc-{i}, namespace: ns-{ns}}}\nspec:\n  \
             hosts: [svc-{i}.ns-{ns}.svc.cluster.local]\n  location: MESH_INTERNAL\n  \
             resolution: STATIC\n  ports:\n  - {{number: 8080, name: http, protocol: HTTP}}\n  \
             endpoints:\n  \
             - address: 10.{a}.{b}.1\n    labels: {{app: svc-{i}, version: v1, security.istio.io/tlsMode: istio}}\n    \
             serviceAccount: svc-{i}\n  \
             - address: 10.{a}.{b}.2\n    labels: {{app: svc-{i}, version: v2, security.istio.io/tlsMode: istio}}\n    \
             serviceAccount: svc-{i}\n"
        );
        if i >= services {
            continue; // the remainder: ServiceEntries alone
        }
        let _ = write!(
            y,
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
             metadata: {{name: svc-{i}, namespace: ns-{ns}}}\nspec:\n  host: svc-{i}\n  \
             trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n  \
             subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  \
             - {{name: v2, labels: {{version: v2}}}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: svc-{i}, namespace: ns-{ns}}}\nspec:\n  hosts: [svc-{i}]\n  \
             http:\n  - match:\n    - headers: {{end-user: {{exact: jason}}}}\n    \
             route:\n    - destination: {{host: svc-{i}, subset: v2}}\n  \
             - route:\n    - destination: {{host: svc-{i}, subset: v1}}\n      weight: 90\n    \
             - destination: {{host: svc-{i}, subset: v2}}\n      weight: 10\n    \
             timeout: 2s\n    retries: {{attempts: 2, perTryTimeout: 500ms, retryOn: 5xx}}\n"
        );
    }
    y
}

/// `proxies` registered sidecars: the `v3` of the first services, spread
/// over the namespaces as those services are.
pub fn mesh_nodes(resources: usize, proxies: usize) -> Nodes {
    let services = (resources.saturating_sub(2 * NAMESPACES) / 3).max(1);
    (0..proxies)
        .map(|j| {
            let i = j % services;
            let node = pb::Node {
                id: format!("svc-{i}-{j}.ns-{}", i % NAMESPACES),
                service: format!("svc-{i}"),
                namespace: format!("ns-{}", i % NAMESPACES),
                labels: [
                    ("app".to_owned(), format!("svc-{i}")),
                    ("version".to_owned(), "v3".to_owned()),
                ]
                .into(),
                service_account: format!("svc-{i}"),
                inbound_address: format!("10.255.{}.{}:15006", j / 250, j % 250),
                mtls: true,
                ..Default::default()
            };
            (j as u64 + 1, node)
        })
        .collect()
}

/// This thread's CPU time so far (`/proc/thread-self/schedstat`, ns).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    procstat::parse_status_kib(&status, key).unwrap_or(0)
}

/// Resets the peak resident set (`VmHWM`) to the current one.
fn reset_peak() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
        .context("cannot reset the peak RSS through /proc/self/clear_refs")
}

/// Runs `f`, returning its result, its CPU time and the growth of the
/// resident set while it ran (MiB).
fn measured<T>(f: impl FnOnce() -> T) -> anyhow::Result<(T, Duration, f64)> {
    reset_peak()?;
    let rss = status_kib("VmRSS");
    let cpu = thread_cpu();
    let out = f();
    let cpu = thread_cpu().saturating_sub(cpu);
    let peak = status_kib("VmHWM").saturating_sub(rss);
    Ok((out, cpu, peak as f64 / 1024.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Measures one size in this process.
pub fn measure(resources: usize, proxies: usize) -> anyhow::Result<TranslateRow> {
    let yaml = mesh_yaml(resources);
    let (outcome, parse_cpu, parse_peak) =
        measured(|| config::parse_str(Path::new("mesh.yaml"), &yaml))?;
    if outcome.has_errors() {
        bail!(
            "the generated mesh does not parse: {}",
            outcome.diagnostics[0]
        );
    }
    let parsed = outcome.resources;
    if parsed.len() != resources {
        bail!("generated {} resources, not {resources}", parsed.len());
    }
    let nodes = mesh_nodes(resources, proxies);
    let viewer = nodes.values().next().cloned().unwrap_or_else(|| pb::Node {
        id: "client".into(),
        service: "client".into(),
        namespace: "ns-0".into(),
        ..Default::default()
    });
    let settings = MeshSettings::default();
    let translate_once = || {
        let cpu = thread_cpu();
        let snapshot = translate::snapshot_for(&viewer, &parsed, &nodes, &settings);
        let translated = thread_cpu();
        let version = translate::version_of(&snapshot);
        let versioned = thread_cpu();
        (
            snapshot,
            version,
            translated.saturating_sub(cpu),
            versioned.saturating_sub(translated),
        )
    };
    let ((snapshot, _, t, v), _, translate_peak) = measured(translate_once)?;
    let (mut translate_ms, mut version_ms) = (vec![ms(t)], vec![ms(v)]);
    let started = Instant::now();
    while translate_ms.len() < MAX_REPEATS && started.elapsed() < REPEAT_BUDGET {
        let (_, _, t, v) = translate_once();
        translate_ms.push(ms(t));
        version_ms.push(ms(v));
    }
    Ok(TranslateRow {
        resources,
        proxies,
        yaml_bytes: yaml.len(),
        parse_cpu_ms: ms(parse_cpu),
        parse_peak_mib: parse_peak,
        repeats: translate_ms.len(),
        translate_cpu_ms: median(translate_ms),
        version_cpu_ms: median(version_ms),
        translate_peak_mib: translate_peak,
        snapshot_bytes: prost::Message::encoded_len(&snapshot),
        clusters: snapshot.clusters.len(),
        endpoints: snapshot.clusters.iter().map(|c| c.endpoints.len()).sum(),
        virtual_hosts: snapshot.virtual_hosts.len(),
    })
}

/// Measures every size, each in a child process running `self_exe
/// control-plane translate --child --resources N --proxies P`.
pub fn run(self_exe: &Path, sizes: &[usize], proxies: usize) -> anyhow::Result<Vec<TranslateRow>> {
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("translating {n} resources with {proxies} proxies registered…");
        let out = std::process::Command::new(self_exe)
            .args(["control-plane", "translate", "--child", "--resources"])
            .arg(n.to_string())
            .arg("--proxies")
            .arg(proxies.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {}", self_exe.display()))?;
        if !out.status.success() {
            bail!("the measurement of {n} resources failed ({})", out.status);
        }
        let row: TranslateRow = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("the child for {n} resources printed no result"))?;
        rows.push(row);
    }
    Ok(rows)
}

/// The Markdown table of `rows`.
pub fn markdown(rows: &[TranslateRow]) -> String {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let limit = remora_proto::MAX_SNAPSHOT_BYTES;
    let mut t = String::from(
        "| resources | YAML | parse (CPU) | parse RSS growth | translate one proxy (CPU) | \
         its version (encode + hash) | RSS growth while translating | snapshot | clusters / endpoints |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let over = if r.snapshot_bytes > limit {
            format!(" (over the {:.0} MiB limit)", mib(limit))
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "| {} | {:.1} MiB | {:.0} ms | {:.0} MiB | {:.1} ms | {:.1} ms | {:.0} MiB | {:.2} MiB{over} | {} / {} |",
            r.resources,
            mib(r.yaml_bytes),
            r.parse_cpu_ms,
            r.parse_peak_mib,
            r.translate_cpu_ms,
            r.version_cpu_ms,
            r.translate_peak_mib,
            mib(r.snapshot_bytes),
            r.clusters,
            r.endpoints,
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_mesh_has_the_asked_number_of_valid_resources() {
        for n in [23, 100, 301] {
            let outcome = config::parse_str(Path::new("mesh.yaml"), &mesh_yaml(n));
            assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
            assert_eq!(outcome.resources.len(), n);
            let refs = config::check_references(&outcome.resources, "istio-system");
            assert!(refs.is_empty(), "{refs:#?}");
        }
    }

    #[test]
    fn proxies_register_with_their_services() {
        let nodes = mesh_nodes(100, 30);
        assert_eq!(nodes.len(), 30);
        let outcome = config::parse_str(Path::new("mesh.yaml"), &mesh_yaml(100));
        let viewer = &nodes[&1];
        let s =
            translate::snapshot_for(viewer, &outcome.resources, &nodes, &MeshSettings::default());
        // 26 services, each a default cluster and two subsets, and two
        // ServiceEntries alone.
        assert_eq!(s.clusters.len(), 26 * 3 + 2);
        let own = s
            .clusters
            .iter()
            .find(|c| c.name == "|svc-0.ns-0.svc.cluster.local")
            .expect("svc-0");
        // Two ServiceEntry endpoints and the registered proxies of svc-0.
        assert_eq!(own.endpoints.len(), 2 + 2);
    }
}
