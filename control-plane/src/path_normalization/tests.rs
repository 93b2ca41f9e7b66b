use super::*;

#[test]
fn istio_and_envoy_names_parse_in_any_case() {
    assert_eq!(
        parse_path_normalization("DECODE_AND_MERGE_SLASHES"),
        Ok(pb::PathNormalization::DecodeAndMergeSlashes)
    );
    assert_eq!(
        parse_path_normalization("merge-slashes"),
        Ok(pb::PathNormalization::MergeSlashes)
    );
    assert_eq!(
        parse_escaped_slashes("reject_request"),
        Ok(pb::EscapedSlashesAction::RejectRequest)
    );
}

#[test]
fn unknown_names_list_the_known_ones() {
    let err = parse_path_normalization("STRICT").unwrap_err();
    assert!(
        err.contains("NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES"),
        "{err}"
    );
    let err = parse_escaped_slashes("UNESCAPE_AND_REDIRECT").unwrap_err();
    assert!(err.contains("not supported"), "{err}");
    // DEFAULT is the absence of the flag, not a value of it.
    assert!(parse_escaped_slashes("DEFAULT").is_err());
}
