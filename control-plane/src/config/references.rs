//! Checks across resources and files: duplicates, conflicting hosts,
//! conflicting PeerAuthentications, and subsets that no DestinationRule
//! defines.

use std::collections::HashMap;

use super::error::{Diagnostic, Severity};
use super::model::{Kind, Meta, Resource, Spec};

/// The fully qualified name of `host` as seen from `namespace`:
/// `reviews` in `default` is `reviews.default.svc.cluster.local`; a host
/// that already contains a dot is kept as is. Always lower-cased.
pub fn qualify_host(host: &str, namespace: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') {
        host
    } else {
        format!(
            "{host}.{}.svc.cluster.local",
            namespace.to_ascii_lowercase()
        )
    }
}

/// Checks that need every resource of every file at once:
///
/// - the same kind, namespace and name defined twice (error on the second);
/// - two DestinationRules for the same qualified host (error on the second);
/// - two VirtualServices claiming the same qualified host (error on the second);
/// - two PeerAuthentications without selector in one namespace: two
///   namespace-wide policies, or two mesh-wide ones in `root_namespace`
///   (error on the second, naming the first);
/// - two Sidecars without workloadSelector in one namespace (error on the
///   second, naming the first);
/// - a VirtualService destination naming a subset that no DestinationRule
///   for its host defines (warning: such requests get 503).
///
/// Resources are taken in the order given; "second" means later in it.
pub fn check_references(resources: &[Resource], root_namespace: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut by_identity: HashMap<(Kind, &str, &str), &Meta> = HashMap::new();
    let mut peer_auth_by_namespace: HashMap<&str, &Meta> = HashMap::new();
    let mut sidecar_by_namespace: HashMap<&str, &Meta> = HashMap::new();
    let mut rule_by_host: HashMap<String, &Resource> = HashMap::new();
    let mut service_by_host: HashMap<String, &Meta> = HashMap::new();

    for resource in resources {
        let meta = &resource.meta;
        let identity = (meta.kind, meta.namespace.as_str(), meta.name.as_str());
        if let Some(first) = by_identity.get(&identity) {
            out.push(diagnostic(
                Severity::Error,
                meta,
                None,
                format!(
                    "{} is defined twice; first at {}",
                    meta.display_name(),
                    at(first)
                ),
            ));
            continue;
        }
        by_identity.insert(identity, meta);
        match &resource.spec {
            Spec::DestinationRule(rule) => {
                let host = qualify_host(&rule.host, &meta.namespace);
                if let Some(first) = rule_by_host.get(&host) {
                    out.push(diagnostic(
                        Severity::Error,
                        meta,
                        Some("spec.host".to_owned()),
                        format!(
                            "host `{host}` already has {} ({}); Remora allows one \
                             DestinationRule per host",
                            first.meta.display_name(),
                            at(&first.meta)
                        ),
                    ));
                } else {
                    rule_by_host.insert(host, resource);
                }
            }
            Spec::VirtualService(service) => {
                for (i, host) in service.hosts.iter().enumerate() {
                    let host = qualify_host(host, &meta.namespace);
                    if let Some(first) = service_by_host.get(&host) {
                        let message = if std::ptr::eq(*first, meta) {
                            format!("host `{host}` is listed twice")
                        } else {
                            format!(
                                "host `{host}` is already claimed by {} ({}); \
                                 Remora allows one VirtualService per host",
                                first.display_name(),
                                at(first)
                            )
                        };
                        out.push(diagnostic(
                            Severity::Error,
                            meta,
                            Some(format!("spec.hosts[{i}]")),
                            message,
                        ));
                    } else {
                        service_by_host.insert(host, meta);
                    }
                }
            }
            Spec::PeerAuthentication(pa) if pa.selector.is_none() => {
                let namespace = meta.namespace.as_str();
                if let Some(first) = peer_auth_by_namespace.get(namespace) {
                    let scope = if namespace == root_namespace {
                        format!("mesh-wide (no selector in the root namespace `{namespace}`)")
                    } else {
                        format!("namespace-wide (no selector) in namespace `{namespace}`")
                    };
                    out.push(diagnostic(
                        Severity::Error,
                        meta,
                        Some("spec.selector".to_owned()),
                        format!(
                            "{} and {} ({}) are both {scope}; Istio allows one, so \
                             merge them or give one a selector",
                            meta.display_name(),
                            first.display_name(),
                            at(first)
                        ),
                    ));
                } else {
                    peer_auth_by_namespace.insert(namespace, meta);
                }
            }
            Spec::Sidecar(sc) if sc.workload_selector.is_none() => {
                let namespace = meta.namespace.as_str();
                if let Some(first) = sidecar_by_namespace.get(namespace) {
                    out.push(diagnostic(
                        Severity::Error,
                        meta,
                        Some("spec.workloadSelector".to_owned()),
                        format!(
                            "{} and {} ({}) are both the default Sidecar of namespace \
                             `{namespace}` (no workloadSelector); Istio allows one, so merge \
                             them or give one a workloadSelector",
                            meta.display_name(),
                            first.display_name(),
                            at(first)
                        ),
                    ));
                } else {
                    sidecar_by_namespace.insert(namespace, meta);
                }
            }
            Spec::ServiceEntry(_)
            | Spec::WorkloadEntry(_)
            | Spec::PeerAuthentication(_)
            | Spec::AuthorizationPolicy(_)
            | Spec::Sidecar(_) => {}
        }
    }

    for resource in resources {
        let Spec::VirtualService(service) = &resource.spec else {
            continue;
        };
        let meta = &resource.meta;
        for (i, route) in service.http.iter().enumerate() {
            for (j, destination) in route.route.iter().enumerate() {
                let Some(subset) = &destination.subset else {
                    continue;
                };
                let host = qualify_host(&destination.host, &meta.namespace);
                let defined = rule_by_host
                    .get(&host)
                    .is_some_and(|rule| match &rule.spec {
                        Spec::DestinationRule(rule) => {
                            rule.subsets.iter().any(|s| &s.name == subset)
                        }
                        _ => false,
                    });
                if !defined {
                    out.push(diagnostic(
                        Severity::Warning,
                        meta,
                        Some(format!("spec.http[{i}].route[{j}].destination.subset")),
                        format!(
                            "requests routed here will get 503 until a DestinationRule \
                             defines subset {subset} for host {host}"
                        ),
                    ));
                }
            }
        }
    }
    out
}

fn at(meta: &Meta) -> String {
    format!("{}:{}", meta.file.display(), meta.line)
}

fn diagnostic(
    severity: Severity,
    meta: &Meta,
    field: Option<String>,
    message: String,
) -> Diagnostic {
    Diagnostic {
        severity,
        file: meta.file.clone(),
        line: Some(meta.line),
        resource: Some(meta.display_name()),
        field,
        message,
    }
}

#[cfg(test)]
mod tests;
