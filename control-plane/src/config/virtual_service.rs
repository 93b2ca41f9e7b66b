//! `VirtualService.spec`: hosts and HTTP routes.

use super::cursor::{Ctx, Node, Schema, TransposeNone};
use super::model::{HttpMatch, HttpRoute, RouteDestination, VirtualService};
use super::resilience;
use super::string_match::{self, Present};
use super::values;

const SPEC: Schema = Schema {
    known: &["hosts", "http"],
    unsupported: &["gateways", "tcp", "tls", "exportTo"],
};

const HTTP_ROUTE: Schema = Schema {
    known: &["name", "match", "route", "timeout", "retries", "fault"],
    unsupported: &[
        "mirror",
        "mirrors",
        "mirrorPercent",
        "mirrorPercentage",
        "redirect",
        "rewrite",
        "delegate",
        "corsPolicy",
        "headers",
        "directResponse",
    ],
};

const HTTP_MATCH: Schema = Schema {
    known: &[
        "name",
        "uri",
        "headers",
        "authority",
        "method",
        "queryParams",
        "ignoreUriCase",
    ],
    unsupported: &[
        "scheme",
        "port",
        "sourceLabels",
        "gateways",
        "withoutHeaders",
        "sourceNamespace",
        "statPrefix",
    ],
};

const ROUTE_DESTINATION: Schema = Schema {
    known: &["destination", "weight"],
    unsupported: &["headers"],
};

const DESTINATION: Schema = Schema {
    known: &["host", "subset", "port"],
    unsupported: &[],
};

const PORT_SELECTOR: Schema = Schema {
    known: &["number"],
    unsupported: &[],
};

/// The largest weight one destination may carry; keeps any sum far from overflow.
const MAX_WEIGHT: i64 = 1_000_000;

/// Reads a VirtualService spec. Returns `None` when a required part is unusable.
pub(crate) fn parse(ctx: &mut Ctx, spec: &Node<'_>) -> Option<VirtualService> {
    let spec = spec.map(ctx, &SPEC)?;
    let hosts = spec
        .required(ctx, "hosts")
        .and_then(|n| n.non_empty_seq(ctx))
        .map(|items| {
            items
                .iter()
                .filter_map(|n| values::host(ctx, n).map(str::to_owned))
                .collect::<Vec<_>>()
        });
    let http = spec.required(ctx, "http").and_then(|n| {
        let items = n.non_empty_seq(ctx)?;
        let routes: Vec<_> = items.iter().map(|n| http_route(ctx, n)).collect();
        warn_unreachable(ctx, &items, &routes);
        routes.into_iter().collect::<Option<Vec<_>>>()
    });
    Some(VirtualService {
        hosts: hosts?,
        http: http?,
    })
}

fn http_route(ctx: &mut Ctx, node: &Node<'_>) -> Option<HttpRoute> {
    let route = node.map(ctx, &HTTP_ROUTE)?;
    let name = route
        .get("name")
        .and_then(|n| n.str(ctx))
        .map(str::to_owned);
    let matches = match route.get("match") {
        None => Some(Vec::new()),
        Some(n) => n.seq(ctx).and_then(|items| {
            let parsed: Vec<_> = items.iter().map(|m| http_match(ctx, m)).collect();
            parsed.into_iter().collect()
        }),
    };
    let destinations = route
        .required(ctx, "route")
        .and_then(|n| destinations(ctx, n));
    let resilience = resilience::parse_route_fields(ctx, &route)?;
    Some(HttpRoute {
        name,
        matches: matches?,
        route: destinations?,
        timeout: resilience.timeout,
        retries: resilience.retries,
        fault: resilience.fault,
    })
}

fn http_match(ctx: &mut Ctx, node: &Node<'_>) -> Option<HttpMatch> {
    let m = node.map(ctx, &HTTP_MATCH)?;
    let errors = ctx.resource_errors();
    let mut out = HttpMatch {
        name: m.get("name").and_then(|n| n.str(ctx)).map(str::to_owned),
        ..HttpMatch::default()
    };
    let single = |ctx: &mut Ctx, key: &str| {
        m.get(key)
            .and_then(|n| string_match::parse(ctx, n, Present::NotAllowed))
            .flatten()
    };
    out.uri = single(ctx, "uri");
    out.authority = single(ctx, "authority");
    out.method = single(ctx, "method");
    if let Some(n) = m.get("headers") {
        out.headers = string_match::named(ctx, n, string_match::Names::Headers).unwrap_or_default();
    }
    if let Some(n) = m.get("queryParams") {
        out.query_params =
            string_match::named(ctx, n, string_match::Names::QueryParams).unwrap_or_default();
    }
    if let Some(n) = m.get("ignoreUriCase") {
        out.ignore_uri_case = n.bool(ctx).unwrap_or_default();
    }
    (ctx.resource_errors() == errors).then_some(out)
}

fn destinations(ctx: &mut Ctx, node: &Node<'_>) -> Option<Vec<RouteDestination>> {
    let items = node.non_empty_seq(ctx)?;
    let several = items.len() > 1;
    let errors = ctx.resource_errors();
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let Some(rd) = item.map(ctx, &ROUTE_DESTINATION) else {
            continue;
        };
        let weight = match rd.get("weight") {
            Some(w) => w.int_in(ctx, 0..=MAX_WEIGHT),
            None if several => {
                ctx.error(
                    rd.line(),
                    &item.field_path("weight"),
                    "missing `weight`: when a route has several destinations, \
                     each needs a weight (its share of their sum)",
                );
                None
            }
            None => Some(100),
        };
        let destination = rd
            .required(ctx, "destination")
            .and_then(|d| destination(ctx, d));
        if let (Some(weight), Some((host, subset, port))) = (weight, destination) {
            out.push(RouteDestination {
                host,
                subset,
                port,
                weight: u32::try_from(weight).unwrap_or_default(),
            });
        }
    }
    if ctx.resource_errors() != errors {
        return None;
    }
    if out.iter().all(|d| d.weight == 0) {
        ctx.error(
            node.line(),
            node.path(),
            "all weights are 0; at least one destination needs a weight above 0",
        );
        return None;
    }
    Some(out)
}

type Destination = (String, Option<String>, Option<u16>);

fn destination(ctx: &mut Ctx, node: &Node<'_>) -> Option<Destination> {
    let d = node.map(ctx, &DESTINATION)?;
    let host = d.required(ctx, "host").and_then(|n| values::host(ctx, n));
    let subset = d.get("subset").map(|n| values::object_name(ctx, n));
    let port = d.get("port").map(|n| {
        let selector = n.map(ctx, &PORT_SELECTOR)?;
        selector.required(ctx, "number")?.port(ctx)
    });
    Some((
        host?.to_owned(),
        subset.map(|s| s.map(str::to_owned)).transpose_none()?,
        port.transpose_none()?,
    ))
}

/// Warns about every route that follows one matching all requests.
fn warn_unreachable(ctx: &mut Ctx, items: &[Node<'_>], routes: &[Option<HttpRoute>]) {
    let catch_all = routes
        .iter()
        .position(|r| r.as_ref().is_some_and(matches_everything));
    let Some(first) = catch_all else {
        return;
    };
    for item in &items[first + 1..] {
        ctx.warn(
            item.line(),
            item.path(),
            format!(
                "this route is unreachable: `{}` before it matches every request",
                items[first].path()
            ),
        );
    }
}

/// A route with no match, an empty match entry, or `uri: {prefix: /}` alone.
pub(crate) fn matches_everything(route: &HttpRoute) -> bool {
    use super::model::StringMatch;
    route.matches.is_empty()
        || route.matches.iter().any(|m| {
            let uri_all = match &m.uri {
                None => true,
                Some(StringMatch::Prefix(p)) => p.is_empty() || p == "/",
                Some(_) => false,
            };
            uri_all
                && m.headers.is_empty()
                && m.authority.is_none()
                && m.method.is_none()
                && m.query_params.is_empty()
        })
}

#[cfg(test)]
mod tests;
