//! Istio's injection annotations, read from a pod's annotations (Kubernetes)
//! or a service's labels (Compose), validated into what the init container
//! and the sidecar are given.
//!
//! | annotation | effect |
//! |---|---|
//! | `sidecar.istio.io/inject: "false"` | the pod is left as it is (`"true"` or absent: injected) |
//! | `traffic.sidecar.istio.io/excludeOutboundPorts` | `init --exclude-outbound-ports` |
//! | `traffic.sidecar.istio.io/excludeInboundPorts` | `init --exclude-inbound-ports` |
//! | `traffic.sidecar.istio.io/excludeOutboundIPRanges` | `init --exclude-outbound-cidrs` |
//! | `traffic.sidecar.istio.io/includeInboundPorts` | `init --include-inbound-ports` (`*`: all, the default) |
//! | `proxy.istio.io/config` | its `concurrency` (ProxyConfig, YAML or JSON): `--concurrency` |
//! | `sidecar.istio.io/proxyCPU`, `proxyMemory`, `proxyCPULimit`, `proxyMemoryLimit` | the sidecar's resources |
//! | `sidecar.istio.io/proxyImage` | the sidecar's and init container's image |
//!
//! Every other `traffic.sidecar.istio.io/` annotation changes what is
//! captured in a way Remora does not do yet (`includeOutboundIPRanges` other
//! than `*`, `includeOutboundPorts`, interfaces), so it is an error rather
//! than silently ignored; so is `interceptionMode` other than `REDIRECT`.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use saphyr::{LoadableYamlNode, Scalar, Yaml};

use super::yaml::FieldError;

/// Istio's annotation that turns injection off for a pod.
pub(super) const INJECT: &str = "sidecar.istio.io/inject";
const TRAFFIC_PREFIX: &str = "traffic.sidecar.istio.io/";
const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
const PROXY_CONFIG: &str = "proxy.istio.io/config";
const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";

/// What a pod's annotations ask of its injection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PodOptions {
    /// False when `sidecar.istio.io/inject` says so.
    pub(super) skip: bool,
    /// Capture exclusions, for the init container.
    pub(super) capture: Capture,
    /// The sidecar's `--concurrency`, when `proxy.istio.io/config` sets it.
    pub(super) concurrency: Option<u32>,
    /// Resource quantities for the sidecar, when annotated.
    pub(super) resources: Resources,
    /// Another proxy image.
    pub(super) image: Option<String>,
}

/// What the capture rules leave alone, beyond their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Capture {
    pub(super) exclude_outbound_ports: Vec<u16>,
    pub(super) exclude_inbound_ports: Vec<u16>,
    pub(super) exclude_outbound_cidrs: Vec<String>,
    /// `None`: all inbound ports (Istio's `*`).
    pub(super) include_inbound_ports: Option<Vec<u16>>,
}

impl Capture {
    /// The flags of `remora-proxy init` for these settings, defaults left out.
    pub(super) fn init_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let ports = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        if !self.exclude_outbound_ports.is_empty() {
            args.push(format!(
                "--exclude-outbound-ports={}",
                ports(&self.exclude_outbound_ports)
            ));
        }
        if !self.exclude_inbound_ports.is_empty() {
            args.push(format!(
                "--exclude-inbound-ports={}",
                ports(&self.exclude_inbound_ports)
            ));
        }
        if !self.exclude_outbound_cidrs.is_empty() {
            args.push(format!(
                "--exclude-outbound-cidrs={}",
                self.exclude_outbound_cidrs.join(",")
            ));
        }
        if let Some(include) = &self.include_inbound_ports {
            args.push(format!("--include-inbound-ports={}", ports(include)));
        }
        args
    }
}

/// Requests and limits for the sidecar, as Kubernetes quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Resources {
    pub(super) cpu: Option<String>,
    pub(super) memory: Option<String>,
    pub(super) cpu_limit: Option<String>,
    pub(super) memory_limit: Option<String>,
}

impl PodOptions {
    /// Reads the options from `(key, value)` pairs; `field` names where
    /// they are (`spec.template.metadata.annotations`) for errors.
    pub(super) fn from_annotations<'k>(
        pairs: impl IntoIterator<Item = (&'k str, &'k str)>,
        field: &str,
    ) -> Result<Self, FieldError> {
        let mut options = Self::default();
        for (key, value) in pairs {
            let at = || format!("{field}[\"{key}\"]");
            let fail = |message: String| FieldError::new(at(), message);
            match key {
                INJECT => options.skip = !parse_inject(value).map_err(fail)?,
                EXCLUDE_OUTBOUND_PORTS => {
                    options.capture.exclude_outbound_ports = parse_ports(value).map_err(fail)?;
                }
                EXCLUDE_INBOUND_PORTS => {
                    options.capture.exclude_inbound_ports = parse_ports(value).map_err(fail)?;
                }
                EXCLUDE_OUTBOUND_IP_RANGES => {
                    options.capture.exclude_outbound_cidrs = parse_cidrs(value).map_err(fail)?;
                }
                INCLUDE_INBOUND_PORTS => {
                    options.capture.include_inbound_ports = if value.trim() == "*" {
                        None
                    } else {
                        Some(parse_ports(value).map_err(fail)?)
                    };
                }
                INCLUDE_OUTBOUND_IP_RANGES if value.trim() == "*" => {}
                INTERCEPTION_MODE if value.trim() == "REDIRECT" => {}
                INTERCEPTION_MODE => {
                    return Err(fail(format!(
                        "interception mode {value:?} is not supported: Remora redirects (REDIRECT)"
                    )));
                }
                PROXY_CONFIG => options.concurrency = parse_concurrency(value).map_err(fail)?,
                PROXY_CPU => options.resources.cpu = Some(quantity(value).map_err(fail)?),
                PROXY_MEMORY => options.resources.memory = Some(quantity(value).map_err(fail)?),
                PROXY_CPU_LIMIT => {
                    options.resources.cpu_limit = Some(quantity(value).map_err(fail)?);
                }
                PROXY_MEMORY_LIMIT => {
                    options.resources.memory_limit = Some(quantity(value).map_err(fail)?);
                }
                PROXY_IMAGE => {
                    let image = value.trim();
                    if image.is_empty() || image.contains(char::is_whitespace) {
                        return Err(fail(format!("{value:?} is not an image reference")));
                    }
                    options.image = Some(image.to_owned());
                }
                _ if key.starts_with(TRAFFIC_PREFIX) => {
                    return Err(fail(format!(
                        "{key} is not supported yet: Remora captures all outbound traffic except \
                         the excluded ports and ranges (supported: excludeOutboundPorts, \
                         excludeInboundPorts, excludeOutboundIPRanges, includeInboundPorts, \
                         includeOutboundIPRanges: \"*\")"
                    )));
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// `sidecar.istio.io/inject`: true or false, as Istio reads it.
fn parse_inject(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "y" | "yes" | "on" => Ok(true),
        "false" | "n" | "no" | "off" => Ok(false),
        _ => Err(format!("{value:?} is neither \"true\" nor \"false\"")),
    }
}

/// A comma-separated list of ports (spaces allowed), each 1 to 65535.
fn parse_ports(value: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u16>() {
            Ok(p) if p > 0 => ports.push(p),
            _ => return Err(format!("{item:?} is not a port (1 to 65535)")),
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// A comma-separated list of CIDRs, IPv4 or IPv6; a bare address is /32 or /128.
fn parse_cidrs(value: &str) -> Result<Vec<String>, String> {
    let mut cidrs = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (addr, prefix) = item.split_once('/').unwrap_or((item, ""));
        let Ok(ip) = addr.parse::<IpAddr>() else {
            return Err(format!("{item:?} is not a CIDR such as 10.0.0.0/8"));
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            match prefix.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{item:?}: the prefix length must be 0 to {max}")),
            }
        };
        cidrs.push(format!("{ip}/{prefix}"));
    }
    Ok(cidrs)
}

/// `proxy.istio.io/config`: a ProxyConfig in YAML or JSON, of which Remora
/// reads `concurrency`.
fn parse_concurrency(value: &str) -> Result<Option<u32>, String> {
    let docs = Yaml::load_from_str(value)
        .map_err(|e| format!("is not YAML (a ProxyConfig such as \"concurrency: 2\"): {e}"))?;
    let Some(doc) = docs.first() else {
        return Ok(None);
    };
    if !doc.is_mapping() {
        return Err("must be a ProxyConfig mapping, such as \"concurrency: 2\"".to_owned());
    }
    match doc.as_mapping_get("concurrency") {
        None | Some(Yaml::Value(Scalar::Null)) => Ok(None),
        Some(Yaml::Value(Scalar::Integer(n))) => u32::try_from(*n)
            .map(Some)
            .map_err(|_| format!("concurrency {n} must be 0 (one per CPU) or more")),
        Some(_) => Err("concurrency must be a whole number".to_owned()),
    }
}

/// A Kubernetes resource quantity such as `100m`, `0.5`, `128Mi`, `1e3`.
fn quantity(value: &str) -> Result<String, String> {
    static QUANTITY: LazyLock<Regex> = LazyLock::new(|| {
        // Kubernetes' quantity grammar: a decimal number, then a binary or
        // decimal SI suffix or an exponent.
        Regex::new(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?$")
            .expect("a valid regex")
    });
    let value = value.trim();
    if QUANTITY.is_match(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a Kubernetes quantity (such as 100m, 0.5, 128Mi)"
        ))
    }
}

#[cfg(test)]
mod tests;
