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

/// CPU time a repeated measurement aims for.
const CPU_BUDGET: Duration = Duration::from_millis(500);

/// Wall time a repeated measurement may take (it always runs once).
const WALL_BUDGET: Duration = Duration::from_secs(20);

/// Most repeats of one measurement.
const MAX_REPEATS: u32 = 200;

/// The system's jemalloc, preloaded into the child that measures memory.
const JEMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

/// Set in the memory child: the allocator it runs with.
const ALLOCATOR_VARIABLE: &str = "REMORA_BENCH_ALLOCATOR";

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
    /// CPU time to translate one proxy's snapshot (mean of repeats).
    pub translate_cpu_ms: f64,
    /// CPU time to encode and hash it, its version (mean of repeats).
    pub version_cpu_ms: f64,
    /// Resident set growth during one translation, MiB.
    pub translate_peak_mib: f64,
    /// The allocator the memory figures were taken with.
    pub memory_allocator: String,
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

/// Writes [`mesh_yaml`] of `resources` into `files` files `mesh-N.yaml` of
/// `dir`, split between documents into about equal sizes.
pub fn write_mesh_yaml(resources: usize, files: usize, dir: &Path) -> anyhow::Result<()> {
    let yaml = mesh_yaml(resources);
    let documents = yaml.split("---\n").filter(|d| !d.is_empty());
    let per_file = yaml.len() / files.max(1) + 1;
    let (mut n, mut text) = (0, String::new());
    let flush = |n: usize, text: &mut String| -> anyhow::Result<()> {
        let path = dir.join(format!("mesh-{n}.yaml"));
        std::fs::write(&path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {} ({} bytes)", path.display(), text.len());
        text.clear();
        Ok(())
    };
    for document in documents {
        text.push_str("---\n");
        text.push_str(document);
        if text.len() >= per_file {
            flush(n, &mut text)?;
            n += 1;
        }
    }
    if !text.is_empty() {
        flush(n, &mut text)?;
    }
    Ok(())
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
pub(crate) fn thread_cpu() -> Duration {
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

/// The mean CPU time of `f` in ms: repeated until the repeats add up to
/// [`CPU_BUDGET`] of CPU time (the scheduler updates a thread's run time at
/// its ticks, so one call of a few milliseconds cannot be timed alone), at
/// most [`MAX_REPEATS`] times or [`WALL_BUDGET`].
fn cpu_per_call(mut f: impl FnMut()) -> f64 {
    let (started, cpu) = (Instant::now(), thread_cpu());
    let mut calls = 0u32;
    loop {
        f();
        calls += 1;
        let spent = thread_cpu().saturating_sub(cpu);
        if spent >= CPU_BUDGET || calls >= MAX_REPEATS || started.elapsed() >= WALL_BUDGET {
            return ms(spent) / f64::from(calls);
        }
    }
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
    let translate = || translate::snapshot_for(&viewer, &parsed, &nodes, &settings);
    let (snapshot, _, translate_peak) = measured(translate)?;
    let translate_cpu_ms = cpu_per_call(|| drop(translate()));
    let version_cpu_ms = cpu_per_call(|| drop(translate::version_of(&snapshot)));
    Ok(TranslateRow {
        resources,
        proxies,
        yaml_bytes: yaml.len(),
        parse_cpu_ms: ms(parse_cpu),
        parse_peak_mib: parse_peak,
        translate_cpu_ms,
        version_cpu_ms,
        translate_peak_mib: translate_peak,
        memory_allocator: std::env::var(ALLOCATOR_VARIABLE).unwrap_or_else(|_| "glibc".into()),
        snapshot_bytes: prost::Message::encoded_len(&snapshot),
        clusters: snapshot.clusters.len(),
        endpoints: snapshot.clusters.iter().map(|c| c.endpoints.len()).sum(),
        virtual_hosts: snapshot.virtual_hosts.len(),
    })
}

/// Measures every size, each in a child process running `self_exe
/// control-plane translate --child --resources N --proxies P`.
pub fn run(self_exe: &Path, sizes: &[usize], proxies: usize) -> anyhow::Result<Vec<TranslateRow>> {
    let jemalloc = Path::new(JEMALLOC).exists();
    if !jemalloc {
        eprintln!(
            "note: {JEMALLOC} is missing (apt-get install libjemalloc2); memory is measured \
             with glibc, whose free lists hide translation's growth behind parsing's"
        );
    }
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("translating {n} resources with {proxies} proxies registered…");
        let mut row = child(self_exe, n, proxies, None)?;
        if jemalloc {
            let memory = child(self_exe, n, proxies, Some(JEMALLOC))?;
            row.parse_peak_mib = memory.parse_peak_mib;
            row.translate_peak_mib = memory.translate_peak_mib;
            row.memory_allocator = memory.memory_allocator;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// One measurement in a child process. With `preload`, memory figures come
/// from jemalloc returning freed pages at once (`dirty_decay_ms:0`), so
/// that the resident set follows the live heap: glibc keeps the pages
/// parsing freed and translation reuses them, which hides its growth.
fn child(
    self_exe: &Path,
    n: usize,
    proxies: usize,
    preload: Option<&str>,
) -> anyhow::Result<TranslateRow> {
    let mut command = std::process::Command::new(self_exe);
    command
        .args(["control-plane", "translate", "--child", "--resources"])
        .arg(n.to_string())
        .arg("--proxies")
        .arg(proxies.to_string())
        .stderr(std::process::Stdio::inherit());
    if let Some(lib) = preload {
        command
            .env("LD_PRELOAD", lib)
            .env("MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
            .env(ALLOCATOR_VARIABLE, "jemalloc, freed pages returned at once");
    }
    let out = command
        .output()
        .with_context(|| format!("cannot run {}", self_exe.display()))?;
    if !out.status.success() {
        bail!("the measurement of {n} resources failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the child for {n} resources printed no result"))
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
            "| {} | {:.1} MiB | {:.0} ms | {:.0} MiB | {:.2} ms | {:.2} ms | {:.1} MiB | {:.2} MiB{over} | {} / {} |",
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
mod tests;
