//! `remora serve --path-normalization` and `--escaped-slashes`: how every
//! proxy normalises request paths, by Istio's and Envoy's names, sent in
//! each snapshot's `MeshSettings`.

use remora_proto::pb;

/// The normalisations, by Istio's `pathNormalization.normalization` names.
const NORMALIZATIONS: [(&str, pb::PathNormalization); 4] = [
    ("NONE", pb::PathNormalization::None),
    ("BASE", pb::PathNormalization::Base),
    ("MERGE_SLASHES", pb::PathNormalization::MergeSlashes),
    (
        "DECODE_AND_MERGE_SLASHES",
        pb::PathNormalization::DecodeAndMergeSlashes,
    ),
];

/// The escaped-slash actions, by Envoy's `path_with_escaped_slashes_action`
/// names.
const ESCAPED_SLASHES: [(&str, pb::EscapedSlashesAction); 3] = [
    ("KEEP_UNCHANGED", pb::EscapedSlashesAction::KeepUnchanged),
    ("REJECT_REQUEST", pb::EscapedSlashesAction::RejectRequest),
    (
        "UNESCAPE_AND_FORWARD",
        pb::EscapedSlashesAction::UnescapeAndForward,
    ),
];

/// Parses `BASE`, `merge-slashes`, ... (case and `-`/`_` do not matter):
/// the `clap` value parser of `--path-normalization`.
pub fn parse_path_normalization(text: &str) -> Result<pb::PathNormalization, String> {
    lookup(&NORMALIZATIONS, text).ok_or_else(|| {
        format!(
            "unknown path normalization {text:?}; expected one of {}",
            names(&NORMALIZATIONS)
        )
    })
}

/// Parses `KEEP_UNCHANGED`, `reject-request`, ...: the `clap` value parser
/// of `--escaped-slashes`. Envoy's `UNESCAPE_AND_REDIRECT` is refused with
/// the reason.
pub fn parse_escaped_slashes(text: &str) -> Result<pb::EscapedSlashesAction, String> {
    if canonical(text) == "UNESCAPE_AND_REDIRECT" {
        return Err(
            "UNESCAPE_AND_REDIRECT is not supported: a sidecar answers the calling \
                    app, which would have to follow a redirect for every such path; use \
                    UNESCAPE_AND_FORWARD or REJECT_REQUEST"
                .to_owned(),
        );
    }
    lookup(&ESCAPED_SLASHES, text).ok_or_else(|| {
        format!(
            "unknown escaped-slashes action {text:?}; expected one of {}",
            names(&ESCAPED_SLASHES)
        )
    })
}

fn canonical(text: &str) -> String {
    text.trim().to_ascii_uppercase().replace('-', "_")
}

fn lookup<T: Copy>(table: &[(&str, T)], text: &str) -> Option<T> {
    let wanted = canonical(text);
    table
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| *value)
}

fn names<T>(table: &[(&str, T)]) -> String {
    table
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
