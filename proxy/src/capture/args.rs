//! The flags of `remora-proxy init`, named as istio-iptables' long options
//! and Istio's `traffic.sidecar.istio.io/*` annotations are.

use std::path::PathBuf;

use clap::Args;

use super::{Capture, Cidr, DEFAULT_PROXY_UID, InboundPorts, parse_ports};

/// `remora-proxy init`: install (or remove, or print) the capture rules in
/// the network namespace this runs in.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Connections opened by this uid (the proxy's) are not captured.
    #[arg(long, env = "REMORA_PROXY_UID", default_value_t = DEFAULT_PROXY_UID)]
    pub proxy_uid: u32,
    /// Connections opened by this gid are not captured either (default: the
    /// uid's number, as Istio's).
    #[arg(long, env = "REMORA_PROXY_GID")]
    pub proxy_gid: Option<u32>,
    /// The port captured outbound connections are redirected to.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// The port captured inbound connections are redirected to.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// Destination ports the app reaches without the proxy, e.g. `5432,6379`.
    #[arg(long, default_value = "", value_parser = parse_port_list)]
    pub exclude_outbound_ports: PortList,
    /// Destination networks the app reaches without the proxy, e.g.
    /// `169.254.169.254/32,10.0.0.0/8,fd00::/8`.
    #[arg(long, default_value = "", value_parser = parse_cidr_list)]
    pub exclude_outbound_cidrs: CidrList,
    /// Pod ports that arriving connections reach without the proxy, e.g. `22`.
    #[arg(long, default_value = "", value_parser = parse_port_list)]
    pub exclude_inbound_ports: PortList,
    /// Pod ports captured on the way in: `*` (all), a list such as
    /// `8080,9080`, or empty for none.
    #[arg(long, default_value = "*", value_parser = parse_inbound_ports)]
    pub include_inbound_ports: InboundPorts,
    /// Print the rules (or with `--cleanup`, what would remove them) and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the rules an earlier `init` installed, and nothing else.
    #[arg(long)]
    pub cleanup: bool,
    /// The `nft` program (default: `nft` on PATH, else /usr/sbin/nft).
    #[arg(long, env = "REMORA_NFT")]
    pub nft: Option<PathBuf>,
}

/// A parsed port list (a clap value: a `Vec` would be taken as repeats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

/// A parsed CIDR list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

fn parse_port_list(s: &str) -> Result<PortList, String> {
    parse_ports(s).map(PortList)
}

fn parse_inbound_ports(s: &str) -> Result<InboundPorts, String> {
    s.parse()
}

fn parse_cidr_list(s: &str) -> Result<CidrList, String> {
    let mut cidrs = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Cidr>, _>>()?;
    cidrs.sort_unstable();
    cidrs.dedup();
    Ok(CidrList(cidrs))
}

impl InitArgs {
    /// The rules these flags ask for.
    pub fn capture(&self) -> Capture {
        Capture {
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            proxy_uid: self.proxy_uid,
            proxy_gid: Some(self.proxy_gid.unwrap_or(self.proxy_uid)),
            exclude_outbound_ports: self.exclude_outbound_ports.0.clone(),
            exclude_outbound_cidrs: self.exclude_outbound_cidrs.0.clone(),
            exclude_inbound_ports: self.exclude_inbound_ports.0.clone(),
            include_inbound_ports: self.include_inbound_ports.clone(),
        }
    }
}
