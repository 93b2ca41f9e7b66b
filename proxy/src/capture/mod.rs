//! Transparent capture: the nftables rules `remora-proxy init` installs in
//! a pod's network namespace so that the app's TCP goes through the sidecar
//! without the app changing anything (the role of istio-iptables and
//! Linkerd's proxy-init).
//!
//! [`Capture`] is the validated rule set's input, [`Capture::ruleset`]
//! renders it as one `nft -f` script, and [`nft`] applies it. The script
//! replaces our table atomically: a second run gives the same rules, and
//! [`cleanup_script`] removes exactly our table and nothing else.
//!
//! What is redirected, per packet that opens a TCP connection:
//!
//! - **outbound** (the `output` hook, locally generated): to
//!   [`Capture::outbound_port`] on loopback, except the proxy's own traffic
//!   (its uid, and its gid if given), anything leaving through `lo`
//!   (loopback, and the pod calling its own address), and the excluded
//!   destination ports and CIDRs;
//! - **inbound** (the `prerouting` hook): to [`Capture::inbound_port`],
//!   except the proxy's own ports ([`PROXY_INBOUND_PORTS`]) and the
//!   excluded ports, and only for the included ports (all by default).

pub mod args;
pub mod nft;

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

pub use args::InitArgs;

/// The nftables family and name of the one table we own.
pub const TABLE: &str = "inet remora";

/// The proxy's own ports that arrive from outside the pod and must reach
/// the proxy itself, never the app: the inbound listener, the health port
/// (15021, and 15020 where Istio's agent merges metrics) and Prometheus
/// metrics (15090). Istio's `ISTIO_INBOUND` returns for the same ones.
pub(crate) const PROXY_INBOUND_PORTS: [u16; 4] = [15006, 15020, 15021, 15090];

/// The uid (and gid) the proxy runs as, whose traffic is never captured:
/// Istio's 1337.
pub(crate) const DEFAULT_PROXY_UID: u32 = 1337;

/// What the capture rules do: built from the flags by [`InitArgs::capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The outbound listener's port (15001): captured app connections go here.
    pub outbound_port: u16,
    /// The inbound listener's port (15006): captured peer connections go here.
    pub inbound_port: u16,
    /// Connections opened by this uid (the proxy's) are left alone.
    pub proxy_uid: u32,
    /// Connections opened by this gid are left alone too.
    pub proxy_gid: Option<u32>,
    /// Destination ports the app reaches directly, sorted.
    pub exclude_outbound_ports: Vec<u16>,
    /// Destinations the app reaches directly, by network.
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Pod ports that arriving connections reach directly, sorted.
    pub exclude_inbound_ports: Vec<u16>,
    /// Which pod ports are captured on the way in.
    pub include_inbound_ports: InboundPorts,
}

/// `--include-inbound-ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundPorts {
    /// `*`: every port but the excluded ones (the default).
    All,
    /// These ports only (sorted); none at all turns inbound capture off.
    Only(Vec<u16>),
}

impl FromStr for InboundPorts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "*" {
            Ok(Self::All)
        } else {
            Ok(Self::Only(parse_ports(s)?))
        }
    }
}

/// An IPv4 or IPv6 network, its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether this is an IPv4 network.
    pub(crate) fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`, or one address (a /32 or /128).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR (such as 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            },
        };
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated port list (`80,443`); empty means none. Sorted, without
/// duplicates.
pub(crate) fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u16>() {
            Ok(p) if p != 0 => ports.push(p),
            _ => {
                return Err(format!(
                    "`{part}` is not a port (1 to 65535); write ports separated by commas, such as 80,443"
                ));
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

impl Capture {
    /// The rules as one `nft -f` script that replaces our table in one
    /// transaction: declaring the table first makes the delete succeed when
    /// it does not exist yet, so the script works on a first run and on the
    /// next ones alike, and nothing else in the namespace is touched.
    pub fn ruleset(&self) -> String {
        let mut s = String::new();
        s.push_str("# remora-proxy init: transparent capture for the sidecar.\n");
        s.push_str("# Remove with `remora-proxy init --cleanup` (deletes this table only).\n");
        let _ = writeln!(s, "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{");
        self.render_inbound(&mut s);
        s.push('\n');
        self.render_outbound(&mut s);
        s.push_str("}\n");
        s
    }

    fn render_inbound(&self, s: &mut String) {
        s.push_str("\tchain prerouting {\n");
        s.push_str("\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
        rule(s, "meta l4proto != tcp return", "only TCP is captured");
        rule(s, "iifname \"lo\" return", "traffic from inside the pod");
        let proxy: Vec<u16> = PROXY_INBOUND_PORTS.to_vec();
        rule(
            s,
            &format!("tcp dport {} return", set(&proxy)),
            "the proxy's own ports",
        );
        if !self.exclude_inbound_ports.is_empty() {
            rule(
                s,
                &format!("tcp dport {} return", set(&self.exclude_inbound_ports)),
                "--exclude-inbound-ports",
            );
        }
        let to = format!("redirect to :{}", self.inbound_port);
        match &self.include_inbound_ports {
            // nft needs the protocol matched before a port mapping.
            InboundPorts::All => rule(
                s,
                &format!("meta l4proto tcp {to}"),
                "to the inbound listener",
            ),
            InboundPorts::Only(ports) if ports.is_empty() => {}
            InboundPorts::Only(ports) => rule(
                s,
                &format!("tcp dport {} {to}", set(ports)),
                "--include-inbound-ports, to the inbound listener",
            ),
        }
        s.push_str("\t}\n");
    }

    fn render_outbound(&self, s: &mut String) {
        s.push_str("\tchain output {\n");
        s.push_str("\t\ttype nat hook output priority -100; policy accept;\n");
        rule(s, "meta l4proto != tcp return", "only TCP is captured");
        rule(
            s,
            &format!("meta skuid {} return", self.proxy_uid),
            "the proxy's own connections (--proxy-uid)",
        );
        if let Some(gid) = self.proxy_gid {
            rule(
                s,
                &format!("meta skgid {gid} return"),
                "the proxy's own connections (--proxy-gid)",
            );
        }
        rule(
            s,
            "oifname \"lo\" return",
            "loopback, and the pod calling its own address",
        );
        rule(s, "ip daddr 127.0.0.0/8 return", "loopback");
        rule(s, "ip6 daddr ::1 return", "loopback");
        let (v4, v6): (Vec<Cidr>, Vec<Cidr>) = self
            .exclude_outbound_cidrs
            .iter()
            .partition(|c| c.is_ipv4());
        for (family, cidrs) in [("ip", v4), ("ip6", v6)] {
            if !cidrs.is_empty() {
                rule(
                    s,
                    &format!("{family} daddr {} return", set(&cidrs)),
                    "--exclude-outbound-cidrs",
                );
            }
        }
        if !self.exclude_outbound_ports.is_empty() {
            rule(
                s,
                &format!("tcp dport {} return", set(&self.exclude_outbound_ports)),
                "--exclude-outbound-ports",
            );
        }
        rule(
            s,
            &format!("meta l4proto tcp redirect to :{}", self.outbound_port),
            "to the outbound listener",
        );
        s.push_str("\t}\n");
    }
}

/// The script that removes our table, and only it; a no-op when it is absent.
pub fn cleanup_script() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\n")
}

fn rule(s: &mut String, statement: &str, comment: &str) {
    let _ = writeln!(s, "\t\t{statement} comment \"{comment}\"");
}

/// An anonymous nft set: `{ a, b }`.
fn set<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

#[cfg(test)]
mod tests;
