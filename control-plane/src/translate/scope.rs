//! The `Sidecar` resource: which services a proxy is told about.
//!
//! A workload takes the first Sidecar of its namespace whose
//! `workloadSelector` matches its labels, else its namespace's Sidecar
//! without selector, else the root namespace's Sidecar without selector (the
//! mesh default), else none: every service, as before. Istio breaks a tie
//! between two matching selectors by age; Remora, which has no creation
//! times, by resource order (file name, then position), and validation
//! refuses two defaults in one namespace.
//!
//! With `egress`, the proxy gets the virtual hosts of the services its hosts
//! name (`namespace/dnsName`; `.` is the workload's own namespace, also in
//! the root namespace's default, as in Istio), and the clusters of those services and of
//! every destination their routes name — a route is never left pointing at a
//! cluster the proxy does not have — and its own service's clusters, whose
//! declared ports tell its inbound side the protocol of its app. A host outside the scope is, to the
//! proxy, outside the mesh: `outboundTrafficPolicy` decides, as in Istio.

use std::collections::HashMap;

use remora_proto::pb;

use crate::config::model::{
    DnsPattern, EgressHost, HostNamespace, OutboundMode, Resource, Sidecar, Spec,
};

/// One Sidecar, with where it lives.
#[derive(Debug, Clone, Copy)]
struct SidecarRef<'a> {
    /// Its position among the resources.
    id: usize,
    /// The spec.
    sidecar: &'a Sidecar,
}

/// The Sidecar that applies to a workload, and the workload's namespace,
/// which its `.` names (also for the root namespace's default, as in Istio).
#[derive(Debug, Clone)]
pub(super) struct Scope<'a> {
    sidecar: SidecarRef<'a>,
    namespace: String,
    /// The workload's own service, fully qualified (empty for none).
    own_service: String,
}

impl Scope<'_> {
    /// What views under this scope share parts by: the Sidecar (its
    /// position among the resources, the same in every view of one
    /// translation) and the namespace its `.` means; `None` when it narrows
    /// nothing.
    pub(super) fn key(&self) -> Option<(usize, &str, &str)> {
        self.scopes().then_some((
            self.sidecar.id,
            self.namespace.as_str(),
            self.own_service.as_str(),
        ))
    }

    /// Whether `host` is the workload's own service: its clusters stay in
    /// any scope.
    pub(super) fn is_own_service(&self, host: &str) -> bool {
        !self.own_service.is_empty() && host == self.own_service
    }

    /// Whether a proxy under this Sidecar is told about `host` (fully
    /// qualified, lower case), a service of `host_namespace`.
    pub(super) fn takes(&self, host: &str, host_namespace: &str) -> bool {
        match &self.sidecar.sidecar.egress {
            None => true,
            Some(hosts) => hosts.iter().any(|h| self.matches(h, host, host_namespace)),
        }
    }

    /// Whether it narrows anything: a Sidecar without `egress` does not.
    pub(super) fn scopes(&self) -> bool {
        self.sidecar.sidecar.egress.is_some()
    }

    /// Its `outboundTrafficPolicy.mode`, when it sets one.
    pub(super) fn outbound_traffic_policy(&self) -> Option<OutboundMode> {
        self.sidecar.sidecar.outbound_traffic_policy
    }

    fn matches(&self, egress: &EgressHost, host: &str, host_namespace: &str) -> bool {
        let namespace = match &egress.namespace {
            HostNamespace::Any => true,
            HostNamespace::Own => host_namespace == self.namespace,
            HostNamespace::NoNamespace => false,
            HostNamespace::Named(ns) => host_namespace == ns,
        };
        namespace
            && match &egress.dns {
                DnsPattern::Any => true,
                DnsPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
                DnsPattern::Exact(name) => host == name,
            }
    }
}

/// Every Sidecar of a config, by namespace, in resource order.
#[derive(Debug, Default)]
pub(super) struct Sidecars<'a> {
    by_namespace: HashMap<&'a str, Vec<SidecarRef<'a>>>,
}

impl<'a> Sidecars<'a> {
    pub(super) fn new(resources: &'a [Resource]) -> Self {
        let mut by_namespace: HashMap<&str, Vec<SidecarRef<'_>>> = HashMap::new();
        for (id, r) in resources.iter().enumerate() {
            if let Spec::Sidecar(sidecar) = &r.spec {
                let namespace = r.meta.namespace.as_str();
                by_namespace
                    .entry(namespace)
                    .or_default()
                    .push(SidecarRef { id, sidecar });
            }
        }
        Self { by_namespace }
    }

    /// The Sidecar of a workload in `namespace` with `labels` (see the
    /// module's doc), if any applies.
    pub(super) fn of_workload(&self, node: &pb::Node, root_namespace: &str) -> Option<Scope<'a>> {
        let namespace = super::namespace_of(node);
        let labels = &node.labels;
        let own = self.by_namespace.get(namespace).map(Vec::as_slice);
        let selected = own.into_iter().flatten().find(|s| {
            s.sidecar
                .workload_selector
                .as_ref()
                .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
        });
        let default_of = |ns: &str| {
            self.by_namespace
                .get(ns)
                .into_iter()
                .flatten()
                .find(|s| s.sidecar.workload_selector.is_none())
                .copied()
        };
        let sidecar = selected
            .copied()
            .or_else(|| default_of(namespace))
            .or_else(|| default_of(root_namespace))?;
        Some(Scope {
            sidecar,
            namespace: namespace.to_owned(),
            own_service: if node.service.is_empty() {
                String::new()
            } else {
                format!("{}.{namespace}.{}", node.service, super::CLUSTER_DOMAIN)
            },
        })
    }
}
