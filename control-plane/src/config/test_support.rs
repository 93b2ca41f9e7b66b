//! Helpers for the config unit tests.

use std::path::Path;

use super::model::Spec;
use super::{FileOutcome, Severity, parse_str};

/// Wraps `spec` (indented YAML, without the `spec:` line) into a document
/// of `kind` named `t`, and parses it as `t.yaml`.
pub(crate) fn parse_spec(kind: &str, spec: &str) -> FileOutcome {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata:\n  name: t\nspec:\n{spec}"
    );
    parse_str(Path::new("t.yaml"), &text)
}

/// Like [`parse_spec`] for the `security.istio.io/v1` kinds.
pub(crate) fn parse_security(kind: &str, spec: &str) -> FileOutcome {
    let text = format!(
        "apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata:\n  name: t\nspec:\n{spec}"
    );
    parse_str(Path::new("t.yaml"), &text)
}

/// The messages of the diagnostics of `severity`, as `field: message`.
pub(crate) fn messages(outcome: &FileOutcome, severity: Severity) -> Vec<String> {
    outcome
        .diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .map(|d| format!("{}: {}", d.field.as_deref().unwrap_or("-"), d.message))
        .collect()
}

/// The one spec parsed without errors.
pub(crate) fn only_spec(outcome: &FileOutcome) -> &Spec {
    assert!(
        !outcome.has_errors(),
        "{:#?}",
        messages(outcome, Severity::Error)
    );
    assert_eq!(outcome.resources.len(), 1);
    &outcome.resources[0].spec
}
