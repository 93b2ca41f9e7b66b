//! `selector.matchLabels`, the workload selector of the security kinds.

use std::collections::BTreeMap;

use super::cursor::{Ctx, Node, Schema};

const SELECTOR: Schema = Schema {
    known: &["matchLabels"],
    unsupported: &[],
};

/// Reads `selector`. `Some(None)`: it selects no workload in particular
/// (no `matchLabels`, or empty ones, which Istio reads as "no selector");
/// `None`: an error was recorded.
pub(crate) fn match_labels(
    ctx: &mut Ctx,
    node: &Node<'_>,
) -> Option<Option<BTreeMap<String, String>>> {
    let selector = node.map(ctx, &SELECTOR)?;
    let labels = match selector.get("matchLabels") {
        None => BTreeMap::new(),
        Some(labels) => labels.string_map(ctx)?,
    };
    Some((!labels.is_empty()).then_some(labels))
}
