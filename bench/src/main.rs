//! `remora-bench`: measures direct, remora-proxy, a sidecar pair, nginx and
//! haproxy under the same workload in one run, and writes the table, the
//! JSON and the chart. See the README's "Benchmark" section.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use remora_bench::lab::{Lab, LabOptions, TargetId};
use remora_bench::process::Pinning;
use remora_bench::report::{self, ScenarioResult};
use remora_bench::runner::{self, Measurement, Plan};
use remora_bench::{chart, control_plane, procstat, streams, upstream};

/// Marks the generated part of `docs/performance.md`; text outside the
/// markers is kept when the file is rewritten.
const START_MARK: &str = "<!-- remora-bench results: start -->";
const END_MARK: &str = "<!-- remora-bench results: end -->";

/// The side-by-side benchmark: direct, remora, a sidecar pair, nginx and
/// haproxy under the same load, in interleaved rounds.
#[derive(Debug, Parser)]
#[command(name = "remora-bench", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Interleaved rounds; figures are medians over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// How long each measurement sends requests (`2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    duration: Duration,
    /// A smoke run of a few seconds: one round of 300 ms measurements,
    /// results under target/bench/ only (docs/ untouched).
    #[arg(long)]
    quick: bool,
    /// Requests in flight in saturation runs, and open-loop senders.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// TCP connections the HTTP/2 streams share.
    #[arg(long, default_value_t = 1)]
    h2_connections: usize,
    /// Where `remora` and `remora-proxy` are (default: target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Do not run `cargo build --release` for the binaries first.
    #[arg(long)]
    no_build: bool,
    /// Do not install nginx and haproxy when missing (they are then
    /// reported as unavailable).
    #[arg(long)]
    no_install: bool,
    /// Do not pin the generator and the servers to cores 0 and 1.
    #[arg(long)]
    no_pin: bool,
    /// A note for the report (e.g. "the machine was shared during the run").
    #[arg(long)]
    note: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the upstream server only (the benchmark starts it itself).
    #[command(hide = true)]
    Upstream {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Benchmarks of the control plane alone (no proxy runs).
    ControlPlane {
        #[command(subcommand)]
        bench: ControlPlaneBench,
    },
}

#[derive(Debug, Subcommand)]
enum ControlPlaneBench {
    /// Translation time and memory for configs of 1k, 10k and 50k
    /// resources: parse, one proxy's snapshot, its version.
    Translate {
        /// Config sizes, in resources.
        #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 50_000])]
        resources: Vec<usize>,
        /// Registered proxies (endpoints besides the config's own).
        #[arg(long, default_value_t = 100)]
        proxies: usize,
        /// Measure one size in this process and print its JSON (the
        /// benchmark runs one child per size).
        #[arg(long, hide = true)]
        child: bool,
    },
    /// Many discovery streams against a real `remora serve`: for each
    /// PROXIESxSERVICES, the connect burst, one-route changes (latency to
    /// every proxy from the file's write), control-plane CPU, RSS and bytes
    /// per change, optional churn; then CSR signings per second on one core.
    Streams {
        /// Sizes as PROXIESxSERVICES, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = ["100x50".to_owned(), "1000x50".to_owned(), "500x500".to_owned()])]
        sizes: Vec<String>,
        /// One-route changes measured per size.
        #[arg(long, default_value_t = 3)]
        changes: usize,
        /// Seconds of registration churn per size (0: none).
        #[arg(long, default_value_t = 0.0)]
        churn_secs: f64,
        /// Registrations plus deregistrations per second during churn.
        #[arg(long, default_value_t = 50.0)]
        churn_rate: f64,
        /// The simulated proxies take incremental snapshots only in the
        /// older form (a route change sends the routes part whole), to
        /// compare with per-resource increments on the same binaries.
        #[arg(long)]
        routes_whole: bool,
        /// Where `remora` is (default: target/release).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Writes the benchmark's generated mesh as YAML files, to try a
    /// large config on `remora serve` or `remora validate`.
    MeshYaml {
        /// Resources in the mesh.
        #[arg(long)]
        resources: usize,
        /// Files to split it over (whole documents, about equal sizes).
        #[arg(long, default_value_t = 1)]
        files: usize,
        /// The directory to write `mesh-N.yaml` into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `2s`, `500ms`, `1.5s` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 2s or 500ms"))?;
    if !(v > 0.0 && v * scale <= 3600.0) {
        return Err(format!("{s:?}: a duration from above 0 to 1 hour"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::Upstream { listen }) => {
            runtime().and_then(|rt| rt.block_on(upstream::serve(*listen)))
        }
        Some(Command::ControlPlane {
            bench:
                ControlPlaneBench::Translate {
                    resources,
                    proxies,
                    child,
                },
        }) => translate_bench(resources, *proxies, *child),
        Some(Command::ControlPlane {
            bench:
                ControlPlaneBench::MeshYaml {
                    resources,
                    files,
                    out,
                },
        }) => control_plane::write_mesh_yaml(*resources, *files, out),
        Some(Command::ControlPlane {
            bench:
                ControlPlaneBench::Streams {
                    sizes,
                    changes,
                    churn_secs,
                    churn_rate,
                    routes_whole,
                    bin_dir,
                },
        }) => streams_bench(
            sizes,
            *changes,
            *churn_secs,
            *churn_rate,
            *routes_whole,
            bin_dir.as_deref(),
        ),
        None => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `control-plane translate`: one child per size, then the table (stdout)
/// and `target/bench/control-plane-translate.json`.
fn translate_bench(sizes: &[usize], proxies: usize, child: bool) -> anyhow::Result<()> {
    if child {
        let size = sizes
            .first()
            .copied()
            .context("--child needs --resources")?;
        let row = control_plane::measure(size, proxies)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let self_exe = std::env::current_exe().context("cannot find this executable")?;
    let rows = control_plane::run(&self_exe, sizes, proxies)?;
    println!("{}", control_plane::markdown(&rows));
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join("control-plane-translate.json");
    let json = serde_json::json!({
        "command": "cargo run --release -p remora-bench -- control-plane translate",
        "machine": machine_description(),
        "rows": rows,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `control-plane streams`: one fresh `remora serve` per size, then the
/// table (stdout) and `target/bench/control-plane-streams.json`.
fn streams_bench(
    sizes: &[String],
    changes: usize,
    churn_secs: f64,
    churn_rate: f64,
    routes_whole: bool,
    bin_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let bins = bin_dir.map_or_else(|| target_dir().join("release"), Path::to_path_buf);
    let remora = bins.join("remora");
    let proxy = Some(bins.join("remora-proxy")).filter(|p| p.exists());
    if proxy.is_none() {
        eprintln!(
            "no remora-proxy in {}: the real proxies' RSS is not measured",
            bins.display()
        );
    }
    if !remora.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p remora-control-plane`",
            remora.display()
        );
    }
    let mut rows = Vec::new();
    for size in sizes {
        let (proxies, services) = size
            .split_once('x')
            .and_then(|(p, s)| Some((p.parse().ok()?, s.parse().ok()?)))
            .filter(|&(p, s): &(usize, usize)| p > 0 && s > 0 && p <= 60_000)
            .with_context(|| format!("size {size:?} is not PROXIESxSERVICES, e.g. 1000x50"))?;
        let row = streams::run(&streams::StreamsOptions {
            proxies,
            services,
            changes,
            churn_secs,
            churn_rate,
            routes_whole,
            remora: remora.clone(),
            proxy: proxy.clone(),
        })?;
        rows.push(row);
    }
    let csr = streams::csr_signings_per_second()?;
    println!("{}", streams::markdown(&rows, csr));
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join("control-plane-streams.json");
    let json = serde_json::json!({
        "command": "cargo build --release -p remora-control-plane -p remora-bench && target/release/remora-bench control-plane streams",
        "machine": machine_description(),
        "csr_signings_per_second_one_core": csr,
        "rows": rows,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// A single-threaded runtime: the generator has one core, and so does
/// each server.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")
}

/// Pins this process (before any thread starts) to core 0; servers then go
/// to core 1. Returns the pinning, or none with the reason on stderr.
fn pin(args: &Args) -> Pinning {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if args.no_pin {
        return Pinning { server_cpu: None };
    }
    if cores < 2 {
        eprintln!("note: fewer than 2 cores available; running unpinned");
        return Pinning { server_cpu: None };
    }
    let ok = std::process::Command::new("taskset")
        .args(["-c", "-p", "0"])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Pinning {
            server_cpu: Some(1),
        }
    } else {
        eprintln!("note: taskset failed or is missing; running unpinned");
        Pinning { server_cpu: None }
    }
}

fn build_binaries() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building: cargo build --release -p remora-proxy -p remora-control-plane");
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "remora-proxy",
            "-p",
            "remora-control-plane",
        ])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo build --release -p remora-proxy -p remora-control-plane` failed");
    }
    Ok(())
}

fn bench(args: &Args) -> anyhow::Result<()> {
    if !args.no_build {
        build_binaries()?;
    }
    let (rounds, duration) = if args.quick {
        (1, Duration::from_millis(300))
    } else {
        (args.rounds.max(1), args.duration)
    };
    let pin = pin(args);
    let opts = LabOptions {
        bin_dir: args
            .bin_dir
            .clone()
            .unwrap_or_else(|| target_dir().join("release")),
        self_exe: std::env::current_exe().context("cannot find this executable")?,
        pin,
        install: !args.no_install,
    };
    let plan = Plan {
        duration,
        concurrency: args.concurrency.max(1),
        h2_connections: args.h2_connections.max(1),
        clock_ticks: procstat::clock_ticks(),
    };
    let rt = runtime()?;
    let steal_before = procstat::steal();
    let (measurements, direct_sat, targets, unavailable) = rt.block_on(async {
        let mut lab = Lab::start(&opts).await?;
        let outcome = tokio::select! {
            r = measure_all(&lab, &plan, rounds) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        let dead = lab.dead();
        let targets: Vec<TargetId> = lab.targets.iter().map(|t| t.id).collect();
        let unavailable = lab.unavailable.clone();
        lab.stop().await;
        if !dead.is_empty() {
            bail!("these processes died during the run: {}", dead.join(", "));
        }
        let (m, sat) = outcome?;
        Ok((m, sat, targets, unavailable))
    })?;

    let steal = steal_before
        .zip(procstat::steal())
        .and_then(|(before, after)| procstat::steal_percent(before, after));
    if let Some(p) = steal {
        eprintln!("hypervisor steal during the run: {p:.1}% of CPU time");
    }
    let scenarios = runner::scenarios(plan.concurrency);
    let results: Vec<ScenarioResult> = scenarios
        .iter()
        .map(|s| report::aggregate(s, s.title(direct_sat), &targets, &measurements))
        .collect();
    let goals = report::goals(&results, &measurements);
    let tables = report::markdown(&goals, &results, &measurements, &unavailable);
    println!("\n{tables}");

    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let (md_path, svg_path) = if args.quick {
        (
            out_dir.join("performance.md"),
            out_dir.join("performance.svg"),
        )
    } else {
        let docs = workspace_root().join("docs");
        (docs.join("performance.md"), docs.join("performance.svg"))
    };
    let machine = machine_description();
    let command = if args.quick {
        "cargo run --release -p remora-bench -- --quick".to_owned()
    } else {
        format!(
            "cargo run --release -p remora-bench -- --rounds {rounds} --duration {}ms --concurrency {} --h2-connections {}",
            duration.as_millis(),
            plan.concurrency,
            plan.h2_connections
        )
    };
    let json = serde_json::json!({
        "command": command,
        "machine": machine,
        "note": args.note,
        "steal_percent": steal,
        "rounds": rounds,
        "duration_ms": duration.as_millis() as u64,
        "concurrency": plan.concurrency,
        "h2_connections": plan.h2_connections,
        "pinned": opts.pin.server_cpu.is_some(),
        "direct_saturation_rps": direct_sat,
        "unavailable": unavailable.iter().map(|(t, why)| serde_json::json!({"target": t, "why": why})).collect::<Vec<_>>(),
        "goals": goals,
        "results": results,
        "measurements": measurements,
    });
    let json_path = out_dir.join(if args.quick {
        "results-quick.json"
    } else {
        "results.json"
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;

    let charted: Vec<&ScenarioResult> = results
        .iter()
        .filter(|r| !matches!(r.scenario.load, runner::LoadSpec::Closed(c) if c > 1))
        .collect();
    let svg = chart::svg(
        "Latency per target (log scale; open loop from the intended send time)",
        &charted,
    );
    std::fs::write(&svg_path, svg)
        .with_context(|| format!("cannot write {}", svg_path.display()))?;

    let svg_name = svg_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let block = generated_block(
        &command,
        &machine,
        args.note.as_deref(),
        steal,
        &plan,
        rounds,
        direct_sat,
        opts.pin.server_cpu.is_some(),
        &svg_name,
        &tables,
    );
    write_markdown(&md_path, &block)?;
    eprintln!(
        "wrote {}, {} and {}",
        md_path.display(),
        svg_path.display(),
        json_path.display()
    );
    Ok(())
}

/// Warm-up, calibration, then every round: each scenario against every
/// target, the target order rotated per round.
async fn measure_all(
    lab: &Lab,
    plan: &Plan,
    rounds: usize,
) -> anyhow::Result<(Vec<Measurement>, f64)> {
    eprintln!(
        "targets: {}",
        lab.targets
            .iter()
            .map(|t| t.id.label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (t, why) in &lab.unavailable {
        eprintln!("unavailable: {}: {why}", t.label());
    }
    runner::warm_up(lab, plan).await?;
    let direct_sat = runner::calibrate(lab, plan).await?;
    eprintln!("direct h1 saturation: {direct_sat:.0} rps");
    let scenarios = runner::scenarios(plan.concurrency);
    let mut all = Vec::new();
    for round in 1..=rounds {
        for s in &scenarios {
            let n = lab.targets.len();
            for k in 0..n {
                let t = &lab.targets[(k + round - 1) % n];
                let m = runner::measure(lab, plan, round, s, t, direct_sat).await?;
                eprintln!(
                    "round {round} {:<16} {:<24} {:>8.0} rps  p50 {:>7.0} µs  p99 {:>8.0} µs  cpu {:>6} µs/req  errors {}",
                    s.key,
                    t.id.label(),
                    m.rps,
                    m.latency.p50,
                    m.latency.p99,
                    m.proxy_cpu_us
                        .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
                    m.errors + m.missed
                );
                all.push(m);
            }
        }
    }
    Ok((all, direct_sat))
}

fn first_line_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

/// CPU model and count, memory, kernel, and the versions under test.
fn machine_description() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split(':')
                .nth(1)
                .map(str::trim)
        })
        .unwrap_or("unknown")
        .to_owned();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib =
        procstat::parse_status_kib(&meminfo, "MemTotal").map(|k| k as f64 / 1024.0 / 1024.0);
    serde_json::json!({
        "cpu": model,
        "cpus": cpus,
        "memory_gib": mem_gib.map(|g| (g * 10.0).round() / 10.0),
        "uname": first_line_of("uname", &["-srvmo"]),
        "nginx": first_line_of("nginx", &["-v"]),
        "haproxy": first_line_of("haproxy", &["-v"]),
        "rustc": first_line_of("rustc", &["--version"]),
        "commit": first_line_of("git", &["-C", &workspace_root().display().to_string(), "rev-parse", "--short", "HEAD"]),
        "date": first_line_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    })
}

#[allow(clippy::too_many_arguments)] // one call site, each argument a distinct part of the text
fn generated_block(
    command: &str,
    machine: &serde_json::Value,
    note: Option<&str>,
    steal: Option<f64>,
    plan: &Plan,
    rounds: usize,
    direct_sat: f64,
    pinned: bool,
    svg_name: &str,
    tables: &str,
) -> String {
    let s = |k: &str| machine[k].as_str().unwrap_or("unknown").to_owned();
    let mut b = String::new();
    b.push_str(&format!("{START_MARK}\n\n## Latest run\n\n"));
    b.push_str(&format!(
        "`{command}`, {}, commit `{}`.\n\n",
        s("date"),
        s("commit")
    ));
    b.push_str(&format!(
        "- Machine: {} × {} ({} GiB), {}\n",
        machine["cpus"],
        s("cpu"),
        machine["memory_gib"],
        s("uname")
    ));
    b.push_str(&format!(
        "- Under test: {}, {}, remora at that commit ({})\n",
        s("nginx"),
        s("haproxy"),
        s("rustc")
    ));
    b.push_str(&format!(
        "- {rounds} interleaved round(s) of {} ms per measurement; {} in flight (saturation) and {} open-loop senders; h2 over {} connection(s); direct h1 saturation {direct_sat:.0} rps; {}\n",
        plan.duration.as_millis(),
        plan.concurrency,
        plan.concurrency,
        plan.h2_connections,
        if pinned {
            "load generator pinned to CPU 0, every server and proxy to CPU 1"
        } else {
            "not pinned"
        }
    ));
    if let Some(p) = steal {
        b.push_str(&format!(
            "- Hypervisor steal during the run: {p:.1}% of the machine's CPU time (the host ran \
             other guests while this VM's CPUs had work; above a few percent every figure is \
             noisier, the tail most)\n"
        ));
    }
    if let Some(n) = note {
        b.push_str(&format!("- Note: {n}\n"));
    }
    b.push_str(&format!(
        "\n![Latency percentiles per target]({svg_name})\n\n"
    ));
    b.push_str(tables);
    b.push_str(&format!("\n{END_MARK}\n"));
    b
}

/// Writes `block` into `path` between the markers, keeping the rest; a new
/// file gets a title and the "how to read it" text around it.
fn write_markdown(path: &Path, block: &str) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(old) => match (old.find(START_MARK), old.find(END_MARK)) {
            (Some(a), Some(b)) if a < b => {
                format!(
                    "{}{}{}",
                    &old[..a],
                    block.trim_end(),
                    &old[b + END_MARK.len()..]
                )
            }
            _ => format!("{old}\n{block}"),
        },
        Err(_) => format!("{}\n{block}\n{}", NEW_DOC_HEAD, NEW_DOC_TAIL),
    };
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

const NEW_DOC_HEAD: &str =
    "# Performance\n\nWritten by `remora-bench` (see the README's Benchmark section).\n";
const NEW_DOC_TAIL: &str = "\n## How to read it\n\nLatencies are from the load generator's side; open-loop latencies count from the intended send time. `×direct` and `+p50`/`+p99` are medians of per-round comparisons with direct. CPU µs/req is the proxies' user+system time over the run divided by the requests answered.\n";
