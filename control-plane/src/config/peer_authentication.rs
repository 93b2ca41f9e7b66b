//! `PeerAuthentication.spec`: which workloads, and whether their inbound
//! listener requires mTLS (`mtls.mode`, `portLevelMtls`).

use std::collections::BTreeMap;

use super::cursor::{Ctx, Node, Schema, TransposeNone};
use super::model::{PeerAuthentication, PeerMode};
use super::selector;

const SPEC: Schema = Schema {
    known: &["selector", "mtls", "portLevelMtls"],
    unsupported: &["targetRef", "targetRefs"],
};

const MTLS: Schema = Schema {
    known: &["mode"],
    unsupported: &[],
};

const MODES: &str = "STRICT, PERMISSIVE, DISABLE or UNSET";

/// Reads a PeerAuthentication spec.
pub(crate) fn parse(ctx: &mut Ctx, spec: &Node<'_>) -> Option<PeerAuthentication> {
    let errors = ctx.resource_errors();
    let pa = spec.map(ctx, &SPEC)?;
    let selector = pa
        .get("selector")
        .map(|n| selector::match_labels(ctx, n))
        .transpose_none()
        .map(Option::flatten);
    let mode = match pa.get("mtls") {
        None => Some(PeerMode::Unset),
        Some(n) => mtls(ctx, n),
    };
    let port_level_mtls = match pa.get("portLevelMtls") {
        None => Some(BTreeMap::new()),
        Some(n) => port_level(ctx, n),
    };
    let (selector, mode, port_level_mtls) = (selector?, mode?, port_level_mtls?);
    if !port_level_mtls.is_empty() && selector.is_none() {
        ctx.error(
            pa.key_line("portLevelMtls").unwrap_or(pa.line()),
            &spec.field_path("portLevelMtls"),
            "`portLevelMtls` needs a `selector` with `matchLabels` (Istio does not allow \
             port-level mTLS in a namespace-wide or mesh-wide policy)",
        );
    }
    (ctx.resource_errors() == errors).then_some(PeerAuthentication {
        selector,
        mode,
        port_level_mtls,
    })
}

/// `mtls` or a `portLevelMtls` value: `{mode: ...}`; no `mode` is UNSET.
fn mtls(ctx: &mut Ctx, node: &Node<'_>) -> Option<PeerMode> {
    if node.is_null() {
        return Some(PeerMode::Unset);
    }
    let m = node.map(ctx, &MTLS)?;
    match m.get("mode") {
        None => Some(PeerMode::Unset),
        Some(n) => mode(ctx, n),
    }
}

fn mode(ctx: &mut Ctx, node: &Node<'_>) -> Option<PeerMode> {
    let mode = match node.str(ctx)? {
        "UNSET" => PeerMode::Unset,
        "PERMISSIVE" => PeerMode::Permissive,
        "STRICT" => PeerMode::Strict,
        "DISABLE" => PeerMode::Disable,
        other => {
            ctx.error(
                node.line(),
                node.path(),
                format!("unknown mTLS mode `{other}`; expected {MODES}"),
            );
            return None;
        }
    };
    Some(mode)
}

fn port_level(ctx: &mut Ctx, node: &Node<'_>) -> Option<BTreeMap<u16, PeerMode>> {
    let errors = ctx.resource_errors();
    let mut out = BTreeMap::new();
    for (port, value) in node.port_entries(ctx)? {
        if let Some(mode) = mtls(ctx, &value) {
            out.insert(port, mode);
        }
    }
    (ctx.resource_errors() == errors).then_some(out)
}

#[cfg(test)]
mod tests;
