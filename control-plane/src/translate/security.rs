//! PeerAuthentication and AuthorizationPolicy resolved for one workload,
//! and auto mTLS: whether a proxy reaches an endpoint with mTLS.
//!
//! PeerAuthentication follows Istio's precedence: the workload policy (a
//! selector matching the workload's labels, in its namespace) over the
//! namespace policy (no selector, its namespace) over the mesh policy (no
//! selector, the root namespace); `UNSET` inherits from the next scope and
//! nothing at all is PERMISSIVE. When several workload policies select one
//! workload, the one whose `namespace/name` sorts first wins (Istio takes
//! the oldest; Remora has no creation times and wants the same answer on
//! every run).

use std::collections::{BTreeMap, HashMap};

use remora_proto::pb;

use super::MeshSettings;
use crate::config::model::{
    AuthorizationAction, AuthorizationOperation, AuthorizationPolicy, AuthorizationRule,
    AuthorizationSource, PeerAuthentication, PeerMode, Resource, Spec, TlsMode,
};

/// The label with which a WorkloadEntry says it has a sidecar that speaks
/// Istio mTLS (`security.istio.io/tlsMode: istio`).
pub(super) const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The PeerAuthentication outcome for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PeerPolicy {
    /// The workload's mode, UNSET resolved.
    pub(super) mode: pb::MtlsMode,
    /// The workload policy's `portLevelMtls`, UNSET resolved to `mode`.
    pub(super) port_mtls: BTreeMap<u32, pb::MtlsMode>,
}

impl PeerPolicy {
    /// The mode of `port` (port-level first); port 0 means "unknown".
    pub(super) fn mode_for_port(&self, port: u32) -> pb::MtlsMode {
        self.port_mtls.get(&port).copied().unwrap_or(self.mode)
    }
}

/// The security resources of a config, grouped by namespace once per
/// translation, so that resolving one workload's policies reads only its
/// namespace's and the root namespace's instead of every resource.
#[derive(Debug)]
pub(super) struct SecurityIndex<'a> {
    root_namespace: &'a str,
    /// PeerAuthentications by namespace, ordered by name (resource order
    /// among equal names).
    peer: HashMap<&'a str, Vec<(&'a str, &'a PeerAuthentication)>>,
    /// AuthorizationPolicies by namespace, in resource order, with their
    /// names.
    authz: HashMap<&'a str, Vec<(&'a str, &'a AuthorizationPolicy)>>,
}

impl<'a> SecurityIndex<'a> {
    /// Indexes the PeerAuthentications and AuthorizationPolicies of
    /// `resources`; `root_namespace` holds the mesh-wide ones.
    pub(super) fn new(resources: &'a [Resource], root_namespace: &'a str) -> Self {
        let mut peer: HashMap<&str, Vec<(&str, &PeerAuthentication)>> = HashMap::new();
        let mut authz: HashMap<&str, Vec<(&str, &AuthorizationPolicy)>> = HashMap::new();
        for r in resources {
            let (namespace, name) = (r.meta.namespace.as_str(), r.meta.name.as_str());
            match &r.spec {
                Spec::PeerAuthentication(pa) => peer.entry(namespace).or_default().push((name, pa)),
                Spec::AuthorizationPolicy(ap) => {
                    authz.entry(namespace).or_default().push((name, ap));
                }
                _ => {}
            }
        }
        for policies in peer.values_mut() {
            policies.sort_by(|a, b| a.0.cmp(b.0)); // stable
        }
        SecurityIndex {
            root_namespace,
            peer,
            authz,
        }
    }

    /// The first PeerAuthentication by name in `namespace` that `pick`
    /// accepts.
    fn first_peer(
        &self,
        namespace: &str,
        pick: impl Fn(&PeerAuthentication) -> bool,
    ) -> Option<&'a PeerAuthentication> {
        let policies = self.peer.get(namespace)?;
        policies.iter().map(|(_, pa)| *pa).find(|pa| pick(pa))
    }

    /// Resolves the PeerAuthentications that apply to a workload in
    /// `namespace` with `labels`.
    pub(super) fn peer_policy(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> PeerPolicy {
        let mesh = self.first_peer(self.root_namespace, |pa| pa.selector.is_none());
        let namespace_wide = self.first_peer(namespace, |pa| pa.selector.is_none());
        let workload = self.first_peer(namespace, |pa| pa.selector.is_some() && pa.selects(labels));

        let mesh_mode = inherit(mesh.map(|pa| pa.mode), pb::MtlsMode::Permissive);
        let namespace_mode = inherit(namespace_wide.map(|pa| pa.mode), mesh_mode);
        let mode = inherit(workload.map(|pa| pa.mode), namespace_mode);
        let port_mtls = workload
            .map(|pa| {
                pa.port_level_mtls
                    .iter()
                    .map(|(port, m)| (u32::from(*port), inherit(Some(*m), mode)))
                    .collect()
            })
            .unwrap_or_default();
        PeerPolicy { mode, port_mtls }
    }

    /// The AuthorizationPolicies of the root namespace and of `namespace`
    /// that select `labels`, ordered by `namespace/name`.
    fn authorization_policies(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<(String, &'a AuthorizationPolicy)> {
        let scopes = if namespace == self.root_namespace {
            vec![namespace]
        } else {
            vec![self.root_namespace, namespace]
        };
        let mut policies: Vec<(String, &AuthorizationPolicy)> = scopes
            .into_iter()
            .filter_map(|ns| Some((ns, self.authz.get(ns)?)))
            .flat_map(|(ns, list)| {
                list.iter()
                    .filter(|(_, ap)| ap.selects(labels))
                    .map(move |(name, ap)| (format!("{ns}/{name}"), *ap))
            })
            .collect();
        policies.sort_by(|a, b| a.0.cmp(&b.0)); // stable
        policies
    }
}

/// Resolves the PeerAuthentications that apply to a workload in
/// `namespace` with `labels` (the index built for one question).
#[cfg(test)]
pub(super) fn peer_policy(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    resources: &[Resource],
    root_namespace: &str,
) -> PeerPolicy {
    SecurityIndex::new(resources, root_namespace).peer_policy(namespace, labels)
}

/// `mode`, or `parent` when it is absent or UNSET.
fn inherit(mode: Option<PeerMode>, parent: pb::MtlsMode) -> pb::MtlsMode {
    match mode {
        None | Some(PeerMode::Unset) => parent,
        Some(PeerMode::Permissive) => pb::MtlsMode::Permissive,
        Some(PeerMode::Strict) => pb::MtlsMode::Strict,
        Some(PeerMode::Disable) => pb::MtlsMode::Disable,
    }
}

/// How the inbound listener of a workload in `namespace` with `labels`
/// authenticates and authorizes peers.
pub(super) fn inbound_policy(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    index: &SecurityIndex<'_>,
    settings: &MeshSettings,
) -> pb::InboundPolicy {
    let peer = index.peer_policy(namespace, labels);
    let (mut deny, mut allow) = (Vec::new(), Vec::new());
    for (name, ap) in index.authorization_policies(namespace, labels) {
        let policy = pb::AuthorizationPolicy {
            name,
            rules: ap.rules.iter().map(rule).collect(),
        };
        match ap.action {
            AuthorizationAction::Deny => deny.push(policy),
            AuthorizationAction::Allow => allow.push(policy),
        }
    }
    pb::InboundPolicy {
        mtls: peer.mode.into(),
        port_mtls: peer
            .port_mtls
            .into_iter()
            .map(|(port, mode)| (port, mode.into()))
            .collect(),
        deny,
        allow,
        trust_domain: settings.trust_domain.to_string(),
    }
}

fn rule(r: &AuthorizationRule) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        from: r.from.iter().map(source).collect(),
        to: r.to.iter().map(operation).collect(),
    }
}

fn source(s: &AuthorizationSource) -> pb::AuthorizationSource {
    pb::AuthorizationSource {
        principals: s.principals.clone(),
        not_principals: s.not_principals.clone(),
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
    }
}

fn operation(o: &AuthorizationOperation) -> pb::AuthorizationOperation {
    pb::AuthorizationOperation {
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
        ports: o.ports.clone(),
        not_ports: o.not_ports.clone(),
        hosts: o.hosts.clone(),
        not_hosts: o.not_hosts.clone(),
    }
}

/// What an endpoint can do about mTLS, before the DestinationRule has its say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PeerTls {
    /// No sidecar (a ServiceEntry endpoint, a DNS host): always plaintext.
    Plaintext,
    /// A WorkloadEntry labelled `security.istio.io/tlsMode: istio`.
    MeshWorkload {
        /// The identity it presents.
        spiffe_id: String,
    },
    /// A connected proxy.
    Proxy {
        /// It has an identity and serves mTLS (`Node.mtls`).
        serves_mtls: bool,
        /// Its own PeerAuthentication says DISABLE for its app port.
        inbound_disabled: bool,
        /// Its own PeerAuthentication says STRICT for its app port.
        inbound_strict: bool,
        /// The identity it presents.
        spiffe_id: String,
    },
}

impl PeerTls {
    /// A connected proxy, its inbound mode resolved from `resources`.
    pub(super) fn of_node(
        node: &pb::Node,
        namespace: &str,
        index: &SecurityIndex<'_>,
        settings: &MeshSettings,
    ) -> Self {
        let inbound = index.peer_policy(namespace, &node.labels);
        let mode = inbound.mode_for_port(node.app_port);
        PeerTls::Proxy {
            serves_mtls: node.mtls,
            inbound_disabled: mode == pb::MtlsMode::Disable,
            inbound_strict: mode == pb::MtlsMode::Strict,
            spiffe_id: spiffe_id(settings, namespace, &node.service_account),
        }
    }

    /// A ServiceEntry endpoint or WorkloadEntry in `namespace`.
    pub(super) fn of_workload_entry(
        labels: &BTreeMap<String, String>,
        namespace: &str,
        service_account: Option<&str>,
        settings: &MeshSettings,
    ) -> Self {
        if labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio") {
            PeerTls::MeshWorkload {
                spiffe_id: spiffe_id(settings, namespace, service_account.unwrap_or_default()),
            }
        } else {
            PeerTls::Plaintext
        }
    }

    /// A proxy whose own policy is STRICT but that cannot serve mTLS (no proven
    /// identity: registered over plaintext discovery). Nobody may reach it: with
    /// plaintext its STRICT peers would receive plaintext, so it is left out of
    /// every cluster.
    pub(super) fn is_strict_without_mtls(&self) -> bool {
        matches!(
            self,
            PeerTls::Proxy {
                serves_mtls: false,
                inbound_strict: true,
                ..
            }
        )
    }

    /// Auto mTLS, as Istio: `Endpoint.mtls` and `Endpoint.spiffe_id` (empty
    /// for plaintext) under the cluster's DestinationRule `tls.mode`.
    /// DISABLE always wins; ISTIO_MUTUAL overrides the destination's own
    /// DISABLE but cannot give mTLS to an endpoint that does not serve it.
    pub(super) fn endpoint_tls(&self, rule: Option<TlsMode>) -> (bool, String) {
        let mtls = match (self, rule) {
            (PeerTls::Plaintext, _) | (_, Some(TlsMode::Disable)) => false,
            (PeerTls::MeshWorkload { .. }, _) => true,
            (PeerTls::Proxy { serves_mtls, .. }, Some(TlsMode::IstioMutual)) => *serves_mtls,
            (
                PeerTls::Proxy {
                    serves_mtls,
                    inbound_disabled,
                    ..
                },
                None,
            ) => *serves_mtls && !inbound_disabled,
        };
        let id = match self {
            PeerTls::MeshWorkload { spiffe_id } | PeerTls::Proxy { spiffe_id, .. } if mtls => {
                spiffe_id.clone()
            }
            _ => String::new(),
        };
        (mtls, id)
    }
}

/// `spiffe://<td>/ns/<namespace>/sa/<service account>`; an empty service
/// account is Istio's `default`.
fn spiffe_id(settings: &MeshSettings, namespace: &str, service_account: &str) -> String {
    let sa = if service_account.is_empty() {
        "default"
    } else {
        service_account
    };
    format!("spiffe://{}/ns/{namespace}/sa/{sa}", settings.trust_domain)
}

#[cfg(test)]
mod tests;
