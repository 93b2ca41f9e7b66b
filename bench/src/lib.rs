//! `remora-bench`: the side-by-side benchmark of issue 6.
//!
//! One run starts an upstream (1 KiB answers over HTTP/1.1 and h2c) and, in
//! front of it, every target of [`lab`]: no proxy, one `remora-proxy`, a
//! client and server sidecar pair, nginx and haproxy. The load generator
//! ([`loadgen`], open loop per [`schedule`] or closed loop) runs on core 0,
//! the servers on core 1; [`runner`] measures each scenario against every
//! target in interleaved rounds and [`report`] turns the rounds into
//! medians of per-round ratios to direct, a Markdown table and a JSON file,
//! with an SVG [`chart`].

pub mod chart;
pub mod configs;
pub mod control_plane;
pub mod lab;
pub mod latency;
pub mod loadgen;
pub mod process;
pub mod procstat;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod streams;
pub mod upstream;
