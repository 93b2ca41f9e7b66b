//! Unit tests for PeerAuthentication parsing.

use std::collections::BTreeMap;

use super::super::Severity;
use super::super::model::{PeerAuthentication, PeerMode, Spec};
use super::super::test_support::{messages, only_spec, parse_security};

fn pa(spec: &str) -> PeerAuthentication {
    let outcome = parse_security("PeerAuthentication", spec);
    match only_spec(&outcome) {
        Spec::PeerAuthentication(pa) => pa.clone(),
        other => panic!("not a PeerAuthentication: {other:?}"),
    }
}

fn errors(spec: &str) -> Vec<String> {
    messages(&parse_security("PeerAuthentication", spec), Severity::Error)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn every_mode_reads_and_no_mtls_is_unset() {
    for (written, mode) in [
        ("STRICT", PeerMode::Strict),
        ("PERMISSIVE", PeerMode::Permissive),
        ("DISABLE", PeerMode::Disable),
        ("UNSET", PeerMode::Unset),
    ] {
        assert_eq!(pa(&format!("  mtls: {{mode: {written}}}\n")).mode, mode);
    }
    assert_eq!(pa("  {}\n"), PeerAuthentication::default());
    assert_eq!(pa("  mtls: {}\n").mode, PeerMode::Unset);
}

#[test]
fn selector_and_port_level_mtls_load() {
    let policy = pa("
  selector:
    matchLabels: {app: reviews}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
    \"9090\": {mode: UNSET}
    9091: {}
");
    assert_eq!(policy.selector, Some(labels(&[("app", "reviews")])));
    assert_eq!(policy.mode, PeerMode::Strict);
    assert_eq!(
        policy.port_level_mtls,
        [
            (8080, PeerMode::Disable),
            (9090, PeerMode::Unset),
            (9091, PeerMode::Unset)
        ]
        .into()
    );
    assert!(policy.selects(&labels(&[("app", "reviews"), ("version", "v1")])));
    assert!(!policy.selects(&labels(&[("app", "ratings")])));
}

#[test]
fn empty_match_labels_are_no_selector() {
    assert_eq!(pa("  selector: {matchLabels: {}}\n").selector, None);
    assert_eq!(pa("  selector: {}\n").selector, None);
}

#[test]
fn unknown_mode_lists_the_valid_ones() {
    assert_eq!(
        errors("  mtls: {mode: strict}\n"),
        [
            "spec.mtls.mode: unknown mTLS mode `strict`; expected STRICT, PERMISSIVE, DISABLE \
             or UNSET"
        ]
    );
    assert_eq!(
        errors("  selector: {matchLabels: {app: a}}\n  portLevelMtls: {80: {mode: OFF}}\n"),
        [
            "spec.portLevelMtls.80.mode: unknown mTLS mode `OFF`; expected STRICT, PERMISSIVE, \
             DISABLE or UNSET"
        ]
    );
}

#[test]
fn port_level_mtls_needs_a_selector_and_valid_ports() {
    assert_eq!(
        errors("  portLevelMtls:\n    8080: {mode: DISABLE}\n"),
        [
            "spec.portLevelMtls: `portLevelMtls` needs a `selector` with `matchLabels` (Istio \
             does not allow port-level mTLS in a namespace-wide or mesh-wide policy)"
        ]
    );
    assert_eq!(
        errors(
            "
  selector: {matchLabels: {app: a}}
  portLevelMtls:
    0: {mode: DISABLE}
    65536: {mode: DISABLE}
    http: {mode: DISABLE}
    80: {mode: DISABLE}
    \"80\": {mode: STRICT}
"
        ),
        [
            "spec.portLevelMtls: keys must be port numbers between 1 and 65535, got integer 0",
            "spec.portLevelMtls: keys must be port numbers between 1 and 65535, got integer \
             65536",
            "spec.portLevelMtls: keys must be port numbers between 1 and 65535, got string \
             \"http\"",
            "spec.portLevelMtls.80: port 80 is given twice (first at line 12)",
        ]
    );
}

#[test]
fn other_spec_fields_are_unsupported_or_unknown() {
    assert_eq!(
        errors(
            "
  targetRef: {kind: Service, name: reviews}
  mtsl: {mode: STRICT}
  selector: {labels: {app: a}}
"
        ),
        [
            "spec.targetRef: `targetRef` is not supported by Remora yet",
            "spec.mtsl: unknown field `mtsl`; did you mean `mtls`?",
            "spec.selector.labels: unknown field `labels`; expected one of `matchLabels`",
        ]
    );
}
