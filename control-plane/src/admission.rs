//! Who may register what: the checks a proxy's registration (the `Node` of its discovery
//! stream) passes before it enters the registry and every other proxy's snapshot.
//!
//! 1. **Identity** (issue 15, D1). On the TLS port the client certificate proves a SPIFFE ID
//!    `spiffe://<td>/ns/<N>/sa/<A>`, already checked against the trust bundle and the trust
//!    domain by the handshake. The registration's namespace and service account are *that*
//!    identity's, never the node's claims: a node that claims another namespace or account is
//!    refused. A node that serves (it has an inbound address) may register an endpoint of
//!    service `S` only if `A` is allowed to serve `S` in `N` ([`allowed_accounts`]), and the
//!    identity its clients then expect (`Endpoint.spiffe_id`) is the proven one.
//! 2. **No identity** (plaintext, or TLS without a client certificate) is refused unless
//!    `remora serve --allow-plaintext-discovery` (development only); then the node's claims are
//!    taken as they are, but its endpoint is never marked mTLS-capable.
//! 3. **Its own address** ([`AdmissionPolicy::bind_inbound_ip`]): the inbound address must be
//!    on the IP the stream comes from, so a workload cannot register another pod's address.
//! 4. **Shape** (D2): every field is checked, and the node's contribution to a snapshot is built
//!    and validated with the proxies' own code ([`CompiledSnapshot::compile`]), so that nothing one
//!    node sends can make the snapshot of another proxy invalid.
//!
//! A refusal is a gRPC status on the node's own stream with the field and the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use remora_certs::SpiffeId;
use remora_proto::pb;
use remora_route::CompiledSnapshot;
use tonic::{Code, Status};

use crate::config::model::{Resource, Spec};
use crate::config::{is_dns1123_label, qualify_host};
use crate::translate::{MeshSettings, Nodes, snapshot_for};

/// Most labels a node may carry.
pub const MAX_LABELS: usize = 64;
/// Longest `node.id`, in bytes.
pub const MAX_NODE_ID_LEN: usize = 253;

/// How registrations are admitted: the `remora serve` flags that decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// `--allow-plaintext-discovery`: admit nodes without a proven identity (development
    /// only). Their endpoints are never mTLS-capable.
    pub allow_plaintext: bool,
    /// The inbound address must be on the stream's source IP (on unless
    /// `--trust-advertised-address`, for proxies behind NAT).
    pub bind_inbound_ip: bool,
}

impl Default for AdmissionPolicy {
    /// The production default: proven identities only, addresses bound to the connection.
    fn default() -> Self {
        Self {
            allow_plaintext: false,
            bind_inbound_ip: true,
        }
    }
}

/// What the control plane knows about the connection a registration came on.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The SPIFFE ID of the client certificate (TLS port), verified by the handshake.
    pub identity: Option<SpiffeId>,
    /// The connection's source address, when known.
    pub remote: Option<SocketAddr>,
}

/// Why a registration was refused: a gRPC status code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    code: Code,
    message: String,
}

impl Refusal {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn invalid(node: &pb::Node, message: impl std::fmt::Display) -> Self {
        Self::new(
            Code::InvalidArgument,
            format!("node {}: {message}", printable(&node.id)),
        )
    }

    fn denied(node: &pb::Node, message: impl std::fmt::Display) -> Self {
        Self::new(
            Code::PermissionDenied,
            format!("node {}: {message}", printable(&node.id)),
        )
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        self.code
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        Status::new(refusal.code, refusal.message)
    }
}

/// Admits `node` from `caller` under `policy`, against the current config: the node as it is
/// registered (namespace, service account and `mtls` from the proven identity), or why not.
pub fn admit(
    node: &pb::Node,
    caller: &Caller,
    resources: &[Resource],
    settings: &MeshSettings,
    policy: &AdmissionPolicy,
) -> Result<pb::Node, Refusal> {
    check_shape(node)?;
    let mut registered = node.clone();
    match &caller.identity {
        Some(id) => {
            let (namespace, account) = identity_parts(node, id, settings)?;
            registered.namespace = namespace.to_owned();
            registered.service_account = account.to_owned();
            registered.mtls = true;
        }
        None if policy.allow_plaintext => {
            // Development only: the claims stand, but nothing is proven, so peers never
            // reach this endpoint with mTLS (and a STRICT one not at all).
            registered.mtls = false;
            if !registered.namespace.is_empty() && !is_dns1123_label(&registered.namespace) {
                return Err(Refusal::invalid(
                    node,
                    format!(
                        "node.namespace `{}` is not a DNS label",
                        printable(&registered.namespace)
                    ),
                ));
            }
            if !registered.service_account.is_empty() {
                let namespace = match registered.namespace.as_str() {
                    "" => "default",
                    ns => ns,
                };
                SpiffeId::workload(
                    &settings.trust_domain,
                    namespace,
                    &registered.service_account,
                )
                .map_err(|e| {
                    Refusal::invalid(
                        node,
                        format!(
                            "node.service_account `{}` makes no SPIFFE ID: {e}",
                            printable(&registered.service_account)
                        ),
                    )
                })?;
            }
        }
        None => {
            return Err(Refusal::new(
                Code::Unauthenticated,
                format!(
                    "node {}: discovery needs a workload certificate: connect to the control \
                     plane's TLS port (15012) with the certificate from its CA (a proxy with \
                     --token-file does); plaintext discovery is refused unless `remora serve \
                     --allow-plaintext-discovery` (development only)",
                    printable(&node.id)
                ),
            ));
        }
    }
    if !registered.inbound_address.is_empty() {
        if let Some(id) = &caller.identity {
            check_allowed_to_serve(&registered, id, resources)?;
        }
        if policy.bind_inbound_ip {
            check_own_address(&registered, caller.remote)?;
        }
    }
    check_as_the_proxies_would(&registered, settings)?;
    Ok(registered)
}

/// The node's fields, each against its rule.
fn check_shape(node: &pb::Node) -> Result<(), Refusal> {
    if node.id.is_empty() {
        return Err(Refusal::new(Code::InvalidArgument, "node.id is empty"));
    }
    if node.protocol < remora_proto::MIN_PROTOCOL {
        return Err(Refusal::new(
            Code::FailedPrecondition,
            format!(
                "node {}: node.protocol {} is older than this control plane serves ({} to {}): \
                 upgrade the proxy to this release (an older proxy would misread the snapshots; \
                 before revision 1 it dropped every timeout)",
                printable(&node.id),
                node.protocol,
                remora_proto::MIN_PROTOCOL,
                remora_proto::PROTOCOL,
            ),
        ));
    }
    if node.id.len() > MAX_NODE_ID_LEN || node.id.chars().any(char::is_control) {
        return Err(Refusal::invalid(
            node,
            format!("node.id must be at most {MAX_NODE_ID_LEN} bytes without control characters"),
        ));
    }
    if !is_dns1123_label(&node.service) {
        return Err(Refusal::invalid(
            node,
            format!(
                "node.service `{}` is not a DNS label (at most 63 lowercase letters, digits \
                 and `-`, starting and ending with a letter or digit)",
                printable(&node.service)
            ),
        ));
    }
    if !node.inbound_address.is_empty() {
        let why = match node.inbound_address.parse::<SocketAddr>() {
            Err(_) => Some("is not ip:port"),
            Ok(addr) if addr.port() == 0 => Some("has port 0"),
            Ok(addr) if !is_unicast(addr.ip()) => {
                Some("is not a unicast address peers could reach")
            }
            Ok(_) => None,
        };
        if let Some(why) = why {
            return Err(Refusal::invalid(
                node,
                format!(
                    "node.inbound_address `{}` {why}",
                    printable(&node.inbound_address)
                ),
            ));
        }
    }
    if node.app_port > u32::from(u16::MAX) {
        return Err(Refusal::invalid(
            node,
            format!("node.app_port {} is not a port (0-65535)", node.app_port),
        ));
    }
    check_labels(node)
}

/// Kubernetes label syntax: a key is an optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 characters; a value is at most 63 characters. Names and values start and end
/// with a letter or digit and hold letters, digits, `-`, `_` and `.`.
fn check_labels(node: &pb::Node) -> Result<(), Refusal> {
    if node.labels.len() > MAX_LABELS {
        return Err(Refusal::invalid(
            node,
            format!(
                "node.labels has {} labels; at most {MAX_LABELS}",
                node.labels.len()
            ),
        ));
    }
    for (key, value) in &node.labels {
        let (prefix, name) = match key.split_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        let key_ok = is_label_name(name)
            && prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns1123_label));
        if !key_ok {
            return Err(Refusal::invalid(
                node,
                format!(
                    "node.labels: `{}` is not a label key ([prefix/]name, the name at most 63 \
                     letters, digits, `-`, `_` and `.`)",
                    printable(key)
                ),
            ));
        }
        if !value.is_empty() && !is_label_name(value) {
            return Err(Refusal::invalid(
                node,
                format!(
                    "node.labels[{key}]: `{}` is not a label value (at most 63 letters, digits, \
                     `-`, `_` and `.`, starting and ending with a letter or digit)",
                    printable(value)
                ),
            ));
        }
    }
    Ok(())
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_unicast(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]))
}

/// The namespace and service account of the proven identity, checked against the node's
/// claims and the mesh's trust domain.
fn identity_parts<'a>(
    node: &pb::Node,
    id: &'a SpiffeId,
    settings: &MeshSettings,
) -> Result<(&'a str, &'a str), Refusal> {
    if id.trust_domain_name() != settings.trust_domain.as_str() {
        return Err(Refusal::denied(
            node,
            format!(
                "the certificate is for {id}, outside the mesh's trust domain {}",
                settings.trust_domain
            ),
        ));
    }
    let (Some(namespace), Some(account)) = (id.namespace(), id.service_account()) else {
        return Err(Refusal::denied(
            node,
            format!(
                "the certificate's identity {id} is not spiffe://<td>/ns/<namespace>/sa/<account>"
            ),
        ));
    };
    if !is_dns1123_label(namespace) {
        return Err(Refusal::denied(
            node,
            format!(
                "the certificate's namespace `{namespace}` ({id}) is not a DNS label, so it \
                 cannot name a namespace of services"
            ),
        ));
    }
    if !node.namespace.is_empty() && node.namespace != namespace {
        return Err(Refusal::denied(
            node,
            format!(
                "node.namespace `{}` is not the namespace of its certificate, {id}",
                printable(&node.namespace)
            ),
        ));
    }
    if !node.service_account.is_empty() && node.service_account != account {
        return Err(Refusal::denied(
            node,
            format!(
                "node.service_account `{}` is not the service account of its certificate, {id}",
                printable(&node.service_account)
            ),
        ));
    }
    Ok((namespace, account))
}

/// The identity must fit the service: see [`allowed_accounts`].
fn check_allowed_to_serve(
    node: &pb::Node,
    id: &SpiffeId,
    resources: &[Resource],
) -> Result<(), Refusal> {
    let (accounts, source) = allowed_accounts(&node.service, &node.namespace, resources);
    if accounts.contains(&node.service_account) {
        return Ok(());
    }
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    Err(Refusal::denied(
        node,
        format!(
            "{id} may not serve {}.{}: its service accounts are [{}] ({source})",
            node.service,
            node.namespace,
            accounts.join(", ")
        ),
    ))
}

/// The service accounts allowed to serve `service` in `namespace`, and where the answer comes
/// from (for the refusal's message).
///
/// The rule: the `serviceAccount`s of the endpoints that the config gives the host
/// `<service>.<namespace>.svc.cluster.local` (a ServiceEntry of that host, in that namespace:
/// its `endpoints` and the WorkloadEntries its `workloadSelector` selects), when it names any;
/// otherwise the account named like the service, as Kubernetes and Compose deployments name
/// them (service `reviews`, account `reviews`).
pub fn allowed_accounts(
    service: &str,
    namespace: &str,
    resources: &[Resource],
) -> (BTreeSet<String>, &'static str) {
    let host = qualify_host(service, namespace);
    let mut accounts = BTreeSet::new();
    for r in resources.iter().filter(|r| r.meta.namespace == namespace) {
        let Spec::ServiceEntry(se) = &r.spec else {
            continue;
        };
        if !se.hosts.iter().any(|h| qualify_host(h, namespace) == host) {
            continue;
        }
        accounts.extend(
            se.endpoints
                .iter()
                .filter_map(|we| we.service_account.clone()),
        );
        if let Some(selector) = &se.workload_selector {
            for other in resources.iter().filter(|o| o.meta.namespace == namespace) {
                if let Spec::WorkloadEntry(we) = &other.spec
                    && selects(selector, &we.labels)
                {
                    accounts.extend(we.service_account.clone());
                }
            }
        }
    }
    if accounts.is_empty() {
        (
            BTreeSet::from([service.to_owned()]),
            "the account named like the service; a ServiceEntry of the host can name others",
        )
    } else {
        (accounts, "the serviceAccounts its ServiceEntry names")
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A workload registers its own address: the inbound IP is the IP the stream comes from.
fn check_own_address(node: &pb::Node, remote: Option<SocketAddr>) -> Result<(), Refusal> {
    let Some(remote) = remote else {
        return Ok(()); // not a TCP connection (tests over in-memory streams)
    };
    let Ok(inbound) = node.inbound_address.parse::<SocketAddr>() else {
        return Ok(()); // checked by `check_shape`
    };
    if inbound.ip().to_canonical() == remote.ip().to_canonical() {
        return Ok(());
    }
    Err(Refusal::denied(
        node,
        format!(
            "node.inbound_address {inbound} is not on the address this stream comes from ({}); \
             a workload registers its own address only (behind NAT, start `remora serve` with \
             --trust-advertised-address)",
            remote.ip()
        ),
    ))
}

/// Builds what this node adds to a snapshot (its service, cluster and endpoint, as translation
/// makes them) and validates it with the proxies' own code: a registration the proxies would
/// refuse never reaches them.
fn check_as_the_proxies_would(node: &pb::Node, settings: &MeshSettings) -> Result<(), Refusal> {
    let nodes: Nodes = BTreeMap::from([(0, node.clone())]);
    let snapshot = snapshot_for(node, &[], &nodes, settings);
    CompiledSnapshot::compile(&snapshot, |_| Ok(()))
        .map(drop)
        .map_err(|e| Refusal::invalid(node, format!("the proxies would refuse it: {e}")))
}

/// `text` for a message: its first 128 characters, control characters escaped.
fn printable(text: &str) -> String {
    const MAX: usize = 128;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
