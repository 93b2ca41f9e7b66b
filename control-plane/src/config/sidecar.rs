//! `Sidecar.spec` (networking.istio.io): the services a workload's proxy is
//! told about (`egress[].hosts`), and what it does with destinations outside
//! the mesh (`outboundTrafficPolicy.mode`). A proxy told about fewer
//! services holds a smaller config; the control plane pushes it less.

use super::cursor::{Ctx, Node, Schema, TransposeNone};
use super::model::{DnsPattern, EgressHost, HostNamespace, OutboundMode, Sidecar};

const SPEC: Schema = Schema {
    known: &["workloadSelector", "egress", "outboundTrafficPolicy"],
    unsupported: &["ingress", "inboundConnectionPool"],
};

const WORKLOAD_SELECTOR: Schema = Schema {
    known: &["labels"],
    unsupported: &[],
};

const EGRESS: Schema = Schema {
    known: &["hosts"],
    unsupported: &["port", "bind", "captureMode"],
};

const OUTBOUND_TRAFFIC_POLICY: Schema = Schema {
    known: &["mode"],
    unsupported: &["egressProxy"],
};

/// The most hosts one Sidecar may name, all `egress` entries together: a
/// scope, not a registry.
pub(crate) const MAX_EGRESS_HOSTS: usize = 1024;

/// Reads a Sidecar spec.
pub(crate) fn parse(ctx: &mut Ctx, spec: &Node<'_>) -> Option<Sidecar> {
    let errors = ctx.resource_errors();
    let sc = spec.map(ctx, &SPEC)?;
    let workload_selector = sc
        .get("workloadSelector")
        .map(|n| {
            let ws = n.map(ctx, &WORKLOAD_SELECTOR)?;
            let labels = ws.required(ctx, "labels")?.string_map(ctx)?;
            // Empty labels select every workload: Istio reads them as no selector.
            Some((!labels.is_empty()).then_some(labels))
        })
        .transpose_none()
        .map(Option::flatten);
    let egress = sc.get("egress").map(|n| egress(ctx, n)).transpose_none();
    let outbound = sc
        .get("outboundTrafficPolicy")
        .map(|n| outbound_traffic_policy(ctx, n))
        .transpose_none()
        .map(Option::flatten);
    let (workload_selector, egress, outbound_traffic_policy) =
        (workload_selector?, egress?, outbound?);
    (ctx.resource_errors() == errors).then_some(Sidecar {
        workload_selector,
        egress,
        outbound_traffic_policy,
    })
}

/// `egress`: the hosts of every entry together.
fn egress(ctx: &mut Ctx, node: &Node<'_>) -> Option<Vec<EgressHost>> {
    let mut hosts = Vec::new();
    let mut ok = true;
    for entry in node.non_empty_seq(ctx)? {
        let Some(listener) = entry.map(ctx, &EGRESS) else {
            ok = false;
            continue;
        };
        let Some(list) = listener
            .required(ctx, "hosts")
            .and_then(|n| n.non_empty_seq(ctx))
        else {
            ok = false;
            continue;
        };
        for host in list {
            match egress_host(ctx, &host) {
                Some(h) => hosts.push(h),
                None => ok = false,
            }
        }
    }
    if hosts.len() > MAX_EGRESS_HOSTS {
        ctx.error(
            node.line(),
            node.path(),
            format!(
                "{} egress hosts; at most {MAX_EGRESS_HOSTS} (use `namespace/*` or a `*.` wildcard)",
                hosts.len()
            ),
        );
        return None;
    }
    ok.then_some(hosts)
}

/// One `namespace/dnsName` of `egress[].hosts`.
fn egress_host(ctx: &mut Ctx, node: &Node<'_>) -> Option<EgressHost> {
    let text = node.non_empty_str(ctx)?;
    let mut bad = |why: &str| {
        ctx.error(
            node.line(),
            node.path(),
            format!("egress host `{text}`: {why}"),
        );
        None
    };
    let Some((namespace, dns)) = text.split_once('/') else {
        return bad(
            "expected `namespace/dnsName` (e.g. `./*`, `istio-system/*`, `prod/reviews.prod.svc.cluster.local`)",
        );
    };
    let namespace = match namespace {
        "*" => HostNamespace::Any,
        "." => HostNamespace::Own,
        "~" => HostNamespace::NoNamespace,
        name if super::values::is_dns1123_label(name) => HostNamespace::Named(name.to_owned()),
        _ => return bad("the namespace must be `*`, `.`, `~` or a namespace name"),
    };
    let dns = dns.to_ascii_lowercase();
    let pattern = if dns == "*" {
        DnsPattern::Any
    } else if let Some(suffix) = dns.strip_prefix("*.") {
        if !is_hostname(suffix) {
            return bad("after `*.` comes a domain name");
        }
        DnsPattern::Suffix(format!(".{suffix}"))
    } else if dns.contains('*') {
        return bad(
            "a wildcard is allowed only as the whole name or its first label (`*.example.com`)",
        );
    } else if !is_hostname(&dns) {
        return bad("not a host name");
    } else if !dns.contains('.') {
        let fqdn = match &namespace {
            HostNamespace::Named(ns) => format!("`{ns}/{dns}.{ns}.svc.cluster.local`"),
            _ => format!("`{dns}.<namespace>.svc.cluster.local`"),
        };
        return bad(&format!(
            "`{dns}` is a short name; Istio matches the fully qualified name (e.g. {fqdn})"
        ));
    } else {
        DnsPattern::Exact(dns)
    };
    Some(EgressHost {
        namespace,
        dns: pattern,
    })
}

fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `outboundTrafficPolicy`: `mode` (no mode: the mesh's).
fn outbound_traffic_policy(ctx: &mut Ctx, node: &Node<'_>) -> Option<Option<OutboundMode>> {
    let policy = node.map(ctx, &OUTBOUND_TRAFFIC_POLICY)?;
    let Some(mode) = policy.get("mode") else {
        return Some(None);
    };
    match mode.str(ctx)? {
        "ALLOW_ANY" => Some(Some(OutboundMode::AllowAny)),
        "REGISTRY_ONLY" => Some(Some(OutboundMode::RegistryOnly)),
        other => {
            ctx.error(
                mode.line(),
                mode.path(),
                format!("unknown mode `{other}`; expected ALLOW_ANY or REGISTRY_ONLY"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
