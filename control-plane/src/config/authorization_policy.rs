//! `AuthorizationPolicy.spec`: which workloads, ALLOW or DENY, and rules
//! over the peer's identity (`from.source`) and the request (`to.operation`).
//!
//! Everything a rule can say that Remora would not check (`when`,
//! `requestPrincipals`, `ipBlocks`, ...) is an error: a policy that matches
//! more or less than it says is worse than none.

use super::cursor::{Ctx, Map, Node, Schema, TransposeNone};
use super::model::{
    AuthorizationAction, AuthorizationOperation, AuthorizationPolicy, AuthorizationRule,
    AuthorizationSource,
};
use super::selector;

const SPEC: Schema = Schema {
    known: &["selector", "action", "rules"],
    unsupported: &["provider", "targetRef", "targetRefs"],
};

const RULE: Schema = Schema {
    known: &["from", "to"],
    unsupported: &["when"],
};

const FROM: Schema = Schema {
    known: &["source"],
    unsupported: &[],
};

const TO: Schema = Schema {
    known: &["operation"],
    unsupported: &[],
};

const SOURCE: Schema = Schema {
    known: &["principals", "notPrincipals", "namespaces", "notNamespaces"],
    unsupported: &[
        "requestPrincipals",
        "notRequestPrincipals",
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
    ],
};

const OPERATION: Schema = Schema {
    known: &[
        "methods",
        "notMethods",
        "paths",
        "notPaths",
        "ports",
        "notPorts",
        "hosts",
        "notHosts",
    ],
    unsupported: &[],
};

/// Reads an AuthorizationPolicy spec.
pub(crate) fn parse(ctx: &mut Ctx, spec: &Node<'_>) -> Option<AuthorizationPolicy> {
    let errors = ctx.resource_errors();
    let ap = spec.map(ctx, &SPEC)?;
    let selector = ap
        .get("selector")
        .map(|n| selector::match_labels(ctx, n))
        .transpose_none()
        .map(Option::flatten);
    let action = match ap.get("action") {
        None => Some(AuthorizationAction::Allow),
        Some(n) => action(ctx, n),
    };
    let rules = match ap.get("rules") {
        None => Some(Vec::new()),
        Some(n) => n.seq(ctx).map(|items| {
            items
                .iter()
                .filter_map(|item| rule(ctx, item))
                .collect::<Vec<_>>()
        }),
    };
    let policy = AuthorizationPolicy {
        selector: selector?,
        action: action?,
        rules: rules?,
    };
    (ctx.resource_errors() == errors).then_some(policy)
}

fn action(ctx: &mut Ctx, node: &Node<'_>) -> Option<AuthorizationAction> {
    let message = match node.str(ctx)? {
        "ALLOW" => return Some(AuthorizationAction::Allow),
        "DENY" => return Some(AuthorizationAction::Deny),
        "AUDIT" => "action `AUDIT` (audit logging) is not supported by Remora; \
                    use ALLOW or DENY"
            .to_owned(),
        "CUSTOM" => "action `CUSTOM` (an external authorizer) is not supported by Remora; \
                     use ALLOW or DENY"
            .to_owned(),
        other => format!("unknown action `{other}`; expected ALLOW or DENY"),
    };
    ctx.error(node.line(), node.path(), message);
    None
}

fn rule(ctx: &mut Ctx, node: &Node<'_>) -> Option<AuthorizationRule> {
    let errors = ctx.resource_errors();
    // `- {}` matches every request, as in Istio; `- ~` is an error (a
    // missing rule is not read as "allow everything").
    let r = node.map(ctx, &RULE)?;
    let from = match r.get("from") {
        None => Vec::new(),
        Some(n) => n
            .non_empty_seq(ctx)?
            .iter()
            .filter_map(|item| {
                let f = item.map(ctx, &FROM)?;
                let node = f.required(ctx, "source")?.clone();
                source(ctx, &node)
            })
            .collect(),
    };
    let to = match r.get("to") {
        None => Vec::new(),
        Some(n) => n
            .non_empty_seq(ctx)?
            .iter()
            .filter_map(|item| {
                let t = item.map(ctx, &TO)?;
                let node = t.required(ctx, "operation")?.clone();
                operation(ctx, &node)
            })
            .collect(),
    };
    (ctx.resource_errors() == errors).then_some(AuthorizationRule { from, to })
}

fn source(ctx: &mut Ctx, node: &Node<'_>) -> Option<AuthorizationSource> {
    let errors = ctx.resource_errors();
    let s = node.map(ctx, &SOURCE)?;
    let out = AuthorizationSource {
        principals: list(ctx, &s, "principals", Value::Principal),
        not_principals: list(ctx, &s, "notPrincipals", Value::Principal),
        namespaces: list(ctx, &s, "namespaces", Value::Text),
        not_namespaces: list(ctx, &s, "notNamespaces", Value::Text),
    };
    if ctx.resource_errors() != errors {
        return None;
    }
    if out == AuthorizationSource::default() {
        ctx.error(
            node.line(),
            node.path(),
            "must set at least one of `principals`, `notPrincipals`, `namespaces`, \
             `notNamespaces` (Istio rejects an empty source)",
        );
        return None;
    }
    Some(out)
}

fn operation(ctx: &mut Ctx, node: &Node<'_>) -> Option<AuthorizationOperation> {
    let errors = ctx.resource_errors();
    let o = node.map(ctx, &OPERATION)?;
    let out = AuthorizationOperation {
        methods: list(ctx, &o, "methods", Value::Text),
        not_methods: list(ctx, &o, "notMethods", Value::Text),
        paths: list(ctx, &o, "paths", Value::Path),
        not_paths: list(ctx, &o, "notPaths", Value::Path),
        ports: list(ctx, &o, "ports", Value::Port),
        not_ports: list(ctx, &o, "notPorts", Value::Port),
        hosts: list(ctx, &o, "hosts", Value::Text),
        not_hosts: list(ctx, &o, "notHosts", Value::Text),
    };
    if ctx.resource_errors() != errors {
        return None;
    }
    if out == AuthorizationOperation::default() {
        ctx.error(
            node.line(),
            node.path(),
            "must set at least one of `methods`, `paths`, `ports`, `hosts` or their `not` \
             forms (Istio rejects an empty operation)",
        );
        return None;
    }
    Some(out)
}

/// What a list holds, for the checks on each value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Value {
    /// Exact, `prefix*`, `*suffix` or `*`.
    Text,
    /// A [`Value::Text`] that is not a SPIFFE URI.
    Principal,
    /// A [`Value::Text`] without path templates.
    Path,
    /// A port number, 1..=65535, as a string.
    Port,
}

/// Reads the list `key` of `map`; every bad value is reported (the caller
/// compares error counts).
fn list(ctx: &mut Ctx, map: &Map<'_>, key: &str, kind: Value) -> Vec<String> {
    let Some(items) = map.get(key).and_then(|n| n.seq(ctx)) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| value(ctx, item, kind).map(str::to_owned))
        .collect()
}

fn value<'a>(ctx: &mut Ctx, node: &Node<'a>, kind: Value) -> Option<&'a str> {
    let text = node.non_empty_str(ctx)?;
    let problem = match kind {
        Value::Port => match text.parse::<u16>() {
            Ok(port) if port != 0 && port.to_string() == text => return Some(text),
            _ => format!("port `{text}` must be a number between 1 and 65535"),
        },
        Value::Path if text.contains('{') => format!(
            "path templates (`{text}`) are not supported by Remora yet; use exact, \
             `prefix*` or `*suffix` paths"
        ),
        _ if !wildcard_ok(text) => format!(
            "`{text}` has a `*` in the middle; a value is exact, `prefix*`, `*suffix` or `*` \
             alone (as in Istio)"
        ),
        Value::Principal if text.starts_with("spiffe://") => format!(
            "principal `{text}` would never match: principals are written without \
             `spiffe://`, e.g. `cluster.local/ns/default/sa/reviews`"
        ),
        Value::Text | Value::Principal | Value::Path => return Some(text),
    };
    ctx.error(node.line(), node.path(), problem);
    None
}

/// Istio's rule: a `*` only as the whole value, its first or its last character.
fn wildcard_ok(text: &str) -> bool {
    if text == "*" {
        return true;
    }
    let inner = text
        .strip_prefix('*')
        .or_else(|| text.strip_suffix('*'))
        .unwrap_or(text);
    !inner.contains('*')
}

#[cfg(test)]
mod tests;
