//! The measurement plan: scenarios (protocol × load), run against every
//! target in interleaved rounds, each measurement with the proxies' CPU
//! time and memory read from `/proc` around it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lab::{Lab, Target, TargetId};
use crate::latency::Percentiles;
use crate::loadgen::{self, Load, Protocol, Workload};
use crate::procstat;

/// How a scenario's load is set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LoadSpec {
    /// Closed loop with this many requests in flight.
    Closed(usize),
    /// Open loop at this many requests per second.
    Rate(u64),
    /// Open loop at this fraction of direct's HTTP/1.1 saturation rate
    /// (measured once before the rounds).
    OfDirectSaturation(f64),
}

/// One workload, run against every target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    /// Short key (`h1-c1`, `h1-sat`, `h1-1000rps`...).
    pub key: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The load.
    pub load: LoadSpec,
}

impl Scenario {
    fn new(key: &str, protocol: Protocol, load: LoadSpec) -> Self {
        Self {
            key: key.to_owned(),
            protocol,
            load,
        }
    }

    /// A heading for the report.
    pub fn title(&self, direct_saturation: f64) -> String {
        let load = match self.load {
            LoadSpec::Closed(1) => "closed loop, 1 request in flight".to_owned(),
            LoadSpec::Closed(c) => format!("closed loop (saturation), {c} in flight"),
            LoadSpec::Rate(r) => format!("open loop, {r} rps"),
            LoadSpec::OfDirectSaturation(f) => format!(
                "open loop, {:.0}% of direct saturation ({:.0} rps)",
                f * 100.0,
                f * direct_saturation
            ),
        };
        format!("{}, {load}", self.protocol.label())
    }
}

/// The scenarios of a run; `concurrency` is the in-flight count of
/// saturation runs and the number of open-loop senders.
pub fn scenarios(concurrency: usize) -> Vec<Scenario> {
    use LoadSpec::*;
    use Protocol::*;
    vec![
        Scenario::new("h1-c1", Http1, Closed(1)),
        Scenario::new("h1-sat", Http1, Closed(concurrency)),
        Scenario::new("h1-1000rps", Http1, Rate(1_000)),
        Scenario::new("h1-50pct", Http1, OfDirectSaturation(0.5)),
        Scenario::new("h1-80pct", Http1, OfDirectSaturation(0.8)),
        Scenario::new("h2-sat", Http2, Closed(concurrency)),
        Scenario::new("h2-1000rps", Http2, Rate(1_000)),
        Scenario::new("newconn-sat", Http1NewConnection, Closed(concurrency)),
        Scenario::new("newconn-1000rps", Http1NewConnection, Rate(1_000)),
    ]
}

/// Settings shared by every measurement.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How long each measurement sends requests.
    pub duration: Duration,
    /// Open-loop senders and saturation concurrency.
    pub concurrency: usize,
    /// HTTP/2 connections.
    pub h2_connections: usize,
    /// The kernel's clock ticks per second.
    pub clock_ticks: u64,
}

/// One target under one scenario in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Round number, from 1.
    pub round: usize,
    /// [`Scenario::key`].
    pub scenario: String,
    /// The target.
    pub target: TargetId,
    /// The open-loop rate asked for, if any.
    pub rate: Option<u64>,
    /// Requests answered with 200 and the full body.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Open loop: requests never sent because the target fell behind.
    pub missed: u64,
    /// Successful requests per second.
    pub rps: f64,
    /// Latency percentiles (open loop: from the intended send time).
    pub latency: Percentiles,
    /// CPU time of the target's proxies per successful request, µs (all
    /// proxies together; `None` for direct).
    pub proxy_cpu_us: Option<f64>,
    /// The kernel's share of the proxies' CPU time (system ÷ user +
    /// system ticks); `None` for direct or when no tick passed.
    #[serde(default)]
    pub proxy_kernel_share: Option<f64>,
    /// CPU time of the upstream per successful request, µs.
    pub upstream_cpu_us: f64,
    /// VmRSS of each proxy process after the run, KiB.
    pub rss_kib: Vec<u64>,
    /// VmHWM (peak RSS so far) of each proxy process, KiB.
    pub peak_rss_kib: Vec<u64>,
    /// The first error, if any.
    pub first_error: Option<String>,
}

fn workload(
    plan: &Plan,
    s: &Scenario,
    t: &Target,
    direct_sat: f64,
    duration: Duration,
) -> Workload {
    let load = match s.load {
        LoadSpec::Closed(c) => Load::Closed { concurrency: c },
        LoadSpec::Rate(r) => Load::Open { rate: r },
        LoadSpec::OfDirectSaturation(f) => Load::Open {
            rate: ((direct_sat * f) as u64).max(1),
        },
    };
    Workload {
        protocol: s.protocol,
        load,
        h2_connections: plan.h2_connections,
        senders: plan.concurrency,
        duration,
        host: t.host.clone(),
    }
}

/// Runs one measurement.
pub async fn measure(
    lab: &Lab,
    plan: &Plan,
    round: usize,
    s: &Scenario,
    t: &Target,
    direct_sat: f64,
) -> anyhow::Result<Measurement> {
    let w = workload(plan, s, t, direct_sat, plan.duration);
    let pids = &t.proxy_pids;
    let up = [lab.upstream_pid];
    let hz = plan.clock_ticks;
    let (cpu0, up0) = (procstat::cpu_ns(pids, hz), procstat::cpu_ns(&up, hz));
    let split0 = procstat::user_system_ticks(pids);
    let r = loadgen::run(t.addr(s.protocol), &w).await?;
    let (cpu1, up1) = (procstat::cpu_ns(pids, hz), procstat::cpu_ns(&up, hz));
    let split1 = procstat::user_system_ticks(pids);
    let per_req = |ns: u64| {
        if r.ok == 0 {
            0.0
        } else {
            ns as f64 / 1e3 / r.ok as f64
        }
    };
    let mem: Vec<(u64, u64)> = pids.iter().map(|p| procstat::memory_kib(&[*p])).collect();
    Ok(Measurement {
        round,
        scenario: s.key.clone(),
        target: t.id,
        rate: match w.load {
            Load::Open { rate } => Some(rate),
            Load::Closed { .. } => None,
        },
        ok: r.ok,
        errors: r.errors,
        missed: r.missed,
        rps: r.rps(),
        latency: r.latencies.summary(),
        proxy_cpu_us: (!pids.is_empty()).then(|| per_req(cpu1.saturating_sub(cpu0))),
        proxy_kernel_share: procstat::kernel_share(split0, split1),
        upstream_cpu_us: per_req(up1.saturating_sub(up0)),
        rss_kib: mem.iter().map(|m| m.0).collect(),
        peak_rss_kib: mem.iter().map(|m| m.1).collect(),
        first_error: r.first_error,
    })
}

/// A short unrecorded run per target and protocol, so that connection
/// pools, allocator arenas and page caches are warm before the rounds.
pub async fn warm_up(lab: &Lab, plan: &Plan) -> anyhow::Result<()> {
    let warm = Duration::from_millis(300).min(plan.duration);
    for t in &lab.targets {
        for protocol in [
            Protocol::Http1,
            Protocol::Http2,
            Protocol::Http1NewConnection,
        ] {
            let s = Scenario::new("warm-up", protocol, LoadSpec::Closed(plan.concurrency));
            loadgen::run(t.addr(protocol), &workload(plan, &s, t, 1.0, warm)).await?;
        }
    }
    Ok(())
}

/// Direct's HTTP/1.1 saturation rate, which sets the 50% and 80% rates.
pub async fn calibrate(lab: &Lab, plan: &Plan) -> anyhow::Result<f64> {
    let direct = lab
        .targets
        .iter()
        .find(|t| t.id == TargetId::Direct)
        .ok_or_else(|| anyhow::anyhow!("the direct target is missing"))?;
    let s = Scenario::new(
        "calibrate",
        Protocol::Http1,
        LoadSpec::Closed(plan.concurrency),
    );
    let r = loadgen::run(direct.h1, &workload(plan, &s, direct, 1.0, plan.duration)).await?;
    if r.ok == 0 {
        anyhow::bail!(
            "direct saturation run answered nothing: {}",
            r.first_error.unwrap_or_default()
        );
    }
    Ok(r.rps())
}
