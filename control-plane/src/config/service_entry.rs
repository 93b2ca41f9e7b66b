//! `ServiceEntry.spec` and `WorkloadEntry.spec` (also the shape of a
//! ServiceEntry's `endpoints[]`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::cursor::{Ctx, Entry, Node, Schema, TransposeNone};
use super::model::{Location, Resolution, ServiceEntry, ServicePort, WorkloadEntry};
use super::values;

const SPEC: Schema = Schema {
    known: &[
        "hosts",
        "ports",
        "location",
        "resolution",
        "endpoints",
        "workloadSelector",
    ],
    unsupported: &["addresses", "exportTo", "subjectAltNames"],
};

const PORT: Schema = Schema {
    known: &["number", "name", "protocol", "targetPort"],
    unsupported: &[],
};

const WORKLOAD_SELECTOR: Schema = Schema {
    known: &["labels"],
    unsupported: &[],
};

const WORKLOAD_ENTRY: Schema = Schema {
    known: &["address", "ports", "labels", "serviceAccount"],
    unsupported: &["network", "locality", "weight"],
};

const PROTOCOLS: &[&str] = &["HTTP", "HTTP2", "GRPC", "GRPC-WEB", "TCP"];
const LATER_PROTOCOLS: &[&str] = &["HTTPS", "TLS", "UDP", "MONGO", "MYSQL", "REDIS"];

/// Reads a ServiceEntry spec.
pub(crate) fn parse(ctx: &mut Ctx, spec: &Node<'_>) -> Option<ServiceEntry> {
    let errors = ctx.resource_errors();
    let se = spec.map(ctx, &SPEC)?;
    let hosts = se
        .required(ctx, "hosts")
        .and_then(|n| n.non_empty_seq(ctx))
        .map(|items| {
            items
                .iter()
                .filter_map(|n| values::host(ctx, n).map(str::to_owned))
                .collect::<Vec<_>>()
        });
    let port = se.required(ctx, "ports").and_then(|n| ports(ctx, n));
    let port_name = port.as_ref().map(|p| p.name.as_str());
    let location = se
        .get("location")
        .map(|n| location(ctx, n))
        .transpose_none();
    let resolution = match se.get("resolution") {
        Some(n) => resolution(ctx, n),
        None => {
            ctx.error(
                se.line(),
                &spec.field_path("resolution"),
                "missing required field `resolution`: Remora supports STATIC and DNS \
                 (Istio's default, NONE, is not supported yet)",
            );
            None
        }
    };
    let endpoints = match se.get("endpoints") {
        None => Some(Vec::new()),
        Some(n) => n.seq(ctx).map(|items| {
            items
                .iter()
                .filter_map(|item| workload_entry(ctx, item, port_name))
                .map(|(entry, address)| (entry, address.line(), item_path(&address)))
                .collect::<Vec<_>>()
        }),
    };
    let selector = se
        .get("workloadSelector")
        .map(|n| {
            let ws = n.map(ctx, &WORKLOAD_SELECTOR)?;
            ws.required(ctx, "labels")?.string_map(ctx)
        })
        .transpose_none();

    let (hosts, port, location, resolution, endpoints, selector) =
        (hosts?, port?, location?, resolution?, endpoints?, selector?);
    if ctx.resource_errors() != errors {
        return None;
    }
    check_endpoints(ctx, spec, resolution, &endpoints, selector.is_some());
    (ctx.resource_errors() == errors).then(|| ServiceEntry {
        hosts,
        ports: vec![port],
        location: location.unwrap_or_default(),
        resolution,
        endpoints: endpoints.into_iter().map(|(e, _, _)| e).collect(),
        workload_selector: selector,
    })
}

fn check_endpoints(
    ctx: &mut Ctx,
    spec: &Node<'_>,
    resolution: Resolution,
    endpoints: &[(WorkloadEntry, usize, String)],
    has_selector: bool,
) {
    if !endpoints.is_empty() && has_selector {
        ctx.error(
            spec.line(),
            &spec.field_path("workloadSelector"),
            "give either `endpoints` or `workloadSelector`, not both (Istio rejects both)",
        );
    }
    if resolution == Resolution::Static {
        if endpoints.is_empty() && !has_selector {
            ctx.error(
                spec.line(),
                &spec.field_path("resolution"),
                "resolution STATIC needs `endpoints` or a `workloadSelector`",
            );
        }
        for (entry, line, path) in endpoints {
            if entry.address.parse::<IpAddr>().is_err() {
                ctx.error(
                    *line,
                    &format!("{path}.address"),
                    format!(
                        "resolution STATIC needs IP addresses, `{}` is not one \
                         (use resolution DNS for host names)",
                        entry.address
                    ),
                );
            }
        }
    }
}

fn ports(ctx: &mut Ctx, node: &Node<'_>) -> Option<ServicePort> {
    let items = node.non_empty_seq(ctx)?;
    if items.len() > 1 {
        ctx.error(
            items[1].line(),
            node.path(),
            format!(
                "{} ports are given, but multiple ports are not supported by Remora yet; \
                 give exactly one",
                items.len()
            ),
        );
        return None;
    }
    let p = items[0].map(ctx, &PORT)?;
    let number = p.required(ctx, "number").and_then(|n| n.port(ctx));
    let name = p.required(ctx, "name").and_then(|n| n.non_empty_str(ctx));
    let protocol = p.get("protocol").map(|n| protocol(ctx, n)).transpose_none();
    let target_port = p.get("targetPort").map(|n| n.port(ctx)).transpose_none();
    Some(ServicePort {
        number: number?,
        name: name?.to_owned(),
        protocol: protocol?,
        target_port: target_port?,
    })
}

fn protocol(ctx: &mut Ctx, node: &Node<'_>) -> Option<String> {
    let written = node.str(ctx)?;
    let upper = written.to_ascii_uppercase();
    if PROTOCOLS.contains(&upper.as_str()) {
        return Some(upper);
    }
    let message = if LATER_PROTOCOLS.contains(&upper.as_str()) {
        format!(
            "protocol `{written}` is not supported by Remora yet; use HTTP, HTTP2, GRPC, GRPC-WEB or TCP"
        )
    } else {
        format!("unknown protocol `{written}`; expected HTTP, HTTP2, GRPC, GRPC-WEB or TCP")
    };
    ctx.error(node.line(), node.path(), message);
    None
}

fn location(ctx: &mut Ctx, node: &Node<'_>) -> Option<Location> {
    match node.str(ctx)? {
        "MESH_EXTERNAL" => Some(Location::MeshExternal),
        "MESH_INTERNAL" => Some(Location::MeshInternal),
        other => {
            ctx.error(
                node.line(),
                node.path(),
                format!("unknown location `{other}`; expected MESH_EXTERNAL or MESH_INTERNAL"),
            );
            None
        }
    }
}

fn resolution(ctx: &mut Ctx, node: &Node<'_>) -> Option<Resolution> {
    let message = match node.str(ctx)? {
        "STATIC" => return Some(Resolution::Static),
        "DNS" => return Some(Resolution::Dns),
        other @ ("NONE" | "DNS_ROUND_ROBIN") => {
            format!("resolution `{other}` is not supported by Remora yet; use STATIC or DNS")
        }
        other => format!("unknown resolution `{other}`; expected STATIC or DNS"),
    };
    ctx.error(node.line(), node.path(), message);
    None
}

/// Reads a WorkloadEntry spec (or a ServiceEntry endpoint, whose port names
/// should name `service_port`); also returns the `address` node so that
/// callers can point at it.
pub(crate) fn workload_entry<'a>(
    ctx: &mut Ctx,
    node: &Node<'a>,
    service_port: Option<&str>,
) -> Option<(WorkloadEntry, Node<'a>)> {
    let errors = ctx.resource_errors();
    let we = node.map(ctx, &WORKLOAD_ENTRY)?;
    let address_node = we.required(ctx, "address").cloned();
    let address = address_node.as_ref().and_then(|n| address(ctx, n));
    let ports = match we.get("ports") {
        None => Some(BTreeMap::new()),
        Some(n) => n.entries(ctx).map(|entries| {
            for e in &entries {
                warn_unused_port(ctx, e, service_port);
            }
            entries
                .iter()
                .filter_map(|e| Some((e.key.to_owned(), e.value.port(ctx)?)))
                .collect()
        }),
    };
    let labels = match we.get("labels") {
        None => Some(BTreeMap::new()),
        Some(n) => n.string_map(ctx),
    };
    let service_account = we
        .get("serviceAccount")
        .map(|n| values::object_name(ctx, n).map(str::to_owned))
        .transpose_none();
    let entry = WorkloadEntry {
        address: address?.to_owned(),
        ports: ports?,
        labels: labels?,
        service_account: service_account?,
    };
    (ctx.resource_errors() == errors).then_some((entry, address_node?))
}

fn warn_unused_port(ctx: &mut Ctx, entry: &Entry<'_>, service_port: Option<&str>) {
    if let Some(port) = service_port.filter(|p| *p != entry.key) {
        ctx.warn(
            entry.key_line,
            entry.value.path(),
            format!(
                "no port of this ServiceEntry is named `{}` (its port is `{port}`); \
                 this mapping is unused",
                entry.key
            ),
        );
    }
}

/// The path of the endpoint holding an `address` node.
fn item_path(address: &Node<'_>) -> String {
    let path = address.path();
    path.strip_suffix(".address").unwrap_or(path).to_owned()
}

/// An IP address or a DNS name.
fn address<'a>(ctx: &mut Ctx, node: &Node<'a>) -> Option<&'a str> {
    let text = node.non_empty_str(ctx)?;
    if text.parse::<IpAddr>().is_ok() {
        return Some(text);
    }
    if text.starts_with("unix://") {
        ctx.error(
            node.line(),
            node.path(),
            "unix domain socket addresses are not supported by Remora",
        );
        return None;
    }
    values::host(ctx, node)
}

#[cfg(test)]
mod tests;
