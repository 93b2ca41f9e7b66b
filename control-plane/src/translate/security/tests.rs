//! PeerAuthentication precedence and AuthorizationPolicy selection.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::config::parse_str;

fn resources(yaml: &str) -> Vec<Resource> {
    let outcome = parse_str(Path::new("security.yaml"), yaml);
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    outcome.resources
}

/// [`super::inbound_policy`] over an index of `resources`.
fn inbound_policy(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    resources: &[Resource],
    settings: &MeshSettings,
) -> pb::InboundPolicy {
    let index = SecurityIndex::new(resources, &settings.root_namespace);
    super::inbound_policy(namespace, labels, &index, settings)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A PeerAuthentication document.
fn pa(namespace: &str, name: &str, body: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: \
         {{name: {name}, namespace: {namespace}}}\nspec:\n{body}\n"
    )
}

/// An AuthorizationPolicy document.
fn ap(namespace: &str, name: &str, body: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: \
         {{name: {name}, namespace: {namespace}}}\nspec:\n{body}\n"
    )
}

const ROOT: &str = "istio-system";

fn mode(yaml: &str, namespace: &str, workload: &[(&str, &str)]) -> pb::MtlsMode {
    peer_policy(namespace, &labels(workload), &resources(yaml), ROOT).mode
}

#[test]
fn nothing_at_all_is_permissive() {
    assert_eq!(mode("", "default", &[]), pb::MtlsMode::Permissive);
}

#[test]
fn mesh_policy_applies_to_every_namespace() {
    let yaml = pa(ROOT, "default", "  mtls: {mode: STRICT}");
    assert_eq!(mode(&yaml, "default", &[]), pb::MtlsMode::Strict);
    assert_eq!(mode(&yaml, "prod", &[("app", "a")]), pb::MtlsMode::Strict);
}

#[test]
fn a_namespace_wide_policy_elsewhere_is_not_mesh_wide() {
    let yaml = pa("prod", "default", "  mtls: {mode: STRICT}");
    assert_eq!(mode(&yaml, "prod", &[]), pb::MtlsMode::Strict);
    assert_eq!(mode(&yaml, "default", &[]), pb::MtlsMode::Permissive);
}

#[test]
fn workload_beats_namespace_beats_mesh() {
    let yaml = [
        pa(ROOT, "mesh", "  mtls: {mode: STRICT}"),
        pa("prod", "ns", "  mtls: {mode: DISABLE}"),
        pa(
            "prod",
            "reviews",
            "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: PERMISSIVE}",
        ),
    ]
    .concat();
    assert_eq!(
        mode(&yaml, "prod", &[("app", "reviews")]),
        pb::MtlsMode::Permissive
    );
    assert_eq!(
        mode(&yaml, "prod", &[("app", "ratings")]),
        pb::MtlsMode::Disable
    );
    assert_eq!(
        mode(&yaml, "test", &[("app", "reviews")]),
        pb::MtlsMode::Strict
    );
}

#[test]
fn a_selector_policy_applies_only_in_its_own_namespace() {
    // Even in the root namespace, a selector policy is not mesh-wide.
    let yaml = pa(
        ROOT,
        "gateway",
        "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}",
    );
    assert_eq!(
        mode(&yaml, "default", &[("app", "reviews")]),
        pb::MtlsMode::Permissive
    );
    assert_eq!(
        mode(&yaml, ROOT, &[("app", "reviews")]),
        pb::MtlsMode::Strict
    );
}

#[test]
fn unset_inherits_from_the_next_scope() {
    let yaml = [
        pa(ROOT, "mesh", "  mtls: {mode: STRICT}"),
        pa("prod", "ns", "  mtls: {mode: UNSET}"),
        pa(
            "prod",
            "reviews",
            "  selector: {matchLabels: {app: reviews}}",
        ),
    ]
    .concat();
    assert_eq!(
        mode(&yaml, "prod", &[("app", "reviews")]),
        pb::MtlsMode::Strict
    );
    // UNSET at mesh level is PERMISSIVE.
    let unset_mesh = pa(ROOT, "mesh", "  mtls: {mode: UNSET}");
    assert_eq!(mode(&unset_mesh, "prod", &[]), pb::MtlsMode::Permissive);
}

#[test]
fn port_level_mtls_comes_from_the_workload_policy_and_unset_takes_its_mode() {
    let yaml = [
        pa(ROOT, "mesh", "  mtls: {mode: DISABLE}"),
        pa(
            "prod",
            "reviews",
            "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}\n  \
             portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {mode: UNSET}",
        ),
    ]
    .concat();
    let policy = peer_policy(
        "prod",
        &labels(&[("app", "reviews")]),
        &resources(&yaml),
        ROOT,
    );
    assert_eq!(policy.mode, pb::MtlsMode::Strict);
    assert_eq!(
        policy.port_mtls,
        [(8080, pb::MtlsMode::Disable), (9090, pb::MtlsMode::Strict)].into()
    );
    assert_eq!(policy.mode_for_port(8080), pb::MtlsMode::Disable);
    assert_eq!(policy.mode_for_port(9090), pb::MtlsMode::Strict);
    assert_eq!(policy.mode_for_port(7000), pb::MtlsMode::Strict);

    // A workload policy whose own mode is UNSET: its ports' UNSET resolve
    // to the inherited mode.
    let inherited = [
        pa(ROOT, "mesh", "  mtls: {mode: DISABLE}"),
        pa(
            "prod",
            "reviews",
            "  selector: {matchLabels: {app: reviews}}\n  portLevelMtls:\n    \
             8080: {mode: STRICT}\n    9090: {mode: UNSET}",
        ),
    ]
    .concat();
    let policy = peer_policy(
        "prod",
        &labels(&[("app", "reviews")]),
        &resources(&inherited),
        ROOT,
    );
    assert_eq!(policy.mode, pb::MtlsMode::Disable);
    assert_eq!(
        policy.port_mtls,
        [(8080, pb::MtlsMode::Strict), (9090, pb::MtlsMode::Disable)].into()
    );
}

#[test]
fn of_two_matching_workload_policies_the_first_by_name_wins() {
    let yaml = [
        pa(
            "prod",
            "zz",
            "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: DISABLE}",
        ),
        pa(
            "prod",
            "aa",
            "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}",
        ),
    ]
    .concat();
    assert_eq!(
        mode(&yaml, "prod", &[("app", "reviews")]),
        pb::MtlsMode::Strict
    );
}

fn inbound(yaml: &str, namespace: &str, workload: &[(&str, &str)]) -> pb::InboundPolicy {
    inbound_policy(
        namespace,
        &labels(workload),
        &resources(yaml),
        &MeshSettings::default(),
    )
}

fn names(policies: &[pb::AuthorizationPolicy]) -> Vec<&str> {
    policies.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn authorization_policies_apply_from_the_root_and_the_workloads_namespace() {
    let yaml = [
        ap(
            ROOT,
            "mesh-deny",
            "  action: DENY\n  rules: [{from: [{source: {namespaces: [evil]}}]}]",
        ),
        ap(
            ROOT,
            "mesh-reviews",
            "  selector: {matchLabels: {app: reviews}}",
        ),
        ap("prod", "ns-allow", "  rules: [{}]"),
        ap(
            "prod",
            "a-reviews-only",
            "  selector: {matchLabels: {app: reviews}}\n  rules: [{}]",
        ),
        ap("test", "other-namespace", "  action: DENY\n  rules: [{}]"),
    ]
    .concat();

    let reviews = inbound(&yaml, "prod", &[("app", "reviews")]);
    assert_eq!(names(&reviews.deny), ["istio-system/mesh-deny"]);
    assert_eq!(
        names(&reviews.allow),
        [
            "istio-system/mesh-reviews",
            "prod/a-reviews-only",
            "prod/ns-allow"
        ]
    );
    assert_eq!(
        reviews.deny[0].rules,
        [pb::AuthorizationRule {
            from: vec![pb::AuthorizationSource {
                namespaces: vec!["evil".into()],
                ..Default::default()
            }],
            to: Vec::new(),
        }]
    );
    // `spec: {}`: an ALLOW policy without rules (denies everything).
    assert!(reviews.allow[0].rules.is_empty());

    let ratings = inbound(&yaml, "prod", &[("app", "ratings")]);
    assert_eq!(names(&ratings.deny), ["istio-system/mesh-deny"]);
    assert_eq!(names(&ratings.allow), ["prod/ns-allow"]);

    let elsewhere = inbound(&yaml, "default", &[("app", "reviews")]);
    assert_eq!(names(&elsewhere.deny), ["istio-system/mesh-deny"]);
    assert_eq!(names(&elsewhere.allow), ["istio-system/mesh-reviews"]);
}

#[test]
fn inbound_policy_carries_mode_ports_and_trust_domain() {
    let yaml = pa(
        "prod",
        "reviews",
        "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}\n  \
         portLevelMtls:\n    8080: {mode: PERMISSIVE}",
    );
    let settings = MeshSettings {
        trust_domain: remora_certs::TrustDomain::new("example.org").expect("td"),
        root_namespace: "mesh-root".into(),
        ..MeshSettings::default()
    };
    let policy = inbound_policy(
        "prod",
        &labels(&[("app", "reviews")]),
        &resources(&yaml),
        &settings,
    );
    assert_eq!(
        policy,
        pb::InboundPolicy {
            mtls: pb::MtlsMode::Strict.into(),
            port_mtls: [(8080, pb::MtlsMode::Permissive.into())].into(),
            deny: Vec::new(),
            allow: Vec::new(),
            trust_domain: "example.org".into(),
        }
    );
}

#[test]
fn the_root_namespace_setting_decides_what_is_mesh_wide() {
    let yaml = [
        pa("mesh-root", "default", "  mtls: {mode: STRICT}"),
        ap("mesh-root", "deny-all", "  action: DENY\n  rules: [{}]"),
    ]
    .concat();
    let settings = MeshSettings {
        root_namespace: "mesh-root".into(),
        ..MeshSettings::default()
    };
    let policy = inbound_policy("prod", &BTreeMap::new(), &resources(&yaml), &settings);
    assert_eq!(policy.mtls, i32::from(pb::MtlsMode::Strict));
    assert_eq!(names(&policy.deny), ["mesh-root/deny-all"]);

    // With Istio's default root namespace, neither applies to `prod`.
    let default = inbound(&yaml, "prod", &[]);
    assert_eq!(default.mtls, i32::from(pb::MtlsMode::Permissive));
    assert!(default.deny.is_empty());
}
