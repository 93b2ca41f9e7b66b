//! Unit tests for Sidecar parsing.

use std::collections::BTreeMap;

use super::super::Severity;
use super::super::model::{DnsPattern, EgressHost, HostNamespace, OutboundMode, Sidecar, Spec};
use super::super::test_support::{messages, only_spec, parse_spec};

fn sidecar(spec: &str) -> Sidecar {
    match only_spec(&parse_spec("Sidecar", spec)) {
        Spec::Sidecar(s) => s.clone(),
        other => panic!("not a Sidecar: {other:?}"),
    }
}

fn errors(spec: &str) -> Vec<String> {
    messages(&parse_spec("Sidecar", spec), Severity::Error)
}

#[test]
fn egress_hosts_selector_and_mode_load() {
    let s = sidecar(
        "
  workloadSelector:
    labels: {app: productpage}
  egress:
  - hosts: [\"./*\", \"istio-system/*\"]
  - hosts:
    - \"*/*.Example.com\"
    - \"prod/reviews.prod.svc.cluster.local\"
    - \"~/*\"
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
",
    );
    let host = |namespace, dns| EgressHost { namespace, dns };
    assert_eq!(
        s,
        Sidecar {
            workload_selector: Some(BTreeMap::from([("app".into(), "productpage".into())])),
            egress: Some(vec![
                host(HostNamespace::Own, DnsPattern::Any),
                host(HostNamespace::Named("istio-system".into()), DnsPattern::Any),
                host(
                    HostNamespace::Any,
                    DnsPattern::Suffix(".example.com".into())
                ),
                host(
                    HostNamespace::Named("prod".into()),
                    DnsPattern::Exact("reviews.prod.svc.cluster.local".into())
                ),
                host(HostNamespace::NoNamespace, DnsPattern::Any),
            ]),
            outbound_traffic_policy: Some(OutboundMode::RegistryOnly),
        }
    );
}

#[test]
fn an_empty_sidecar_scopes_nothing_and_empty_labels_select_every_workload() {
    assert_eq!(
        sidecar("  {}\n"),
        Sidecar {
            workload_selector: None,
            egress: None,
            outbound_traffic_policy: None,
        }
    );
    let s = sidecar("  workloadSelector: {labels: {}}\n  outboundTrafficPolicy: {}\n");
    assert_eq!(s.workload_selector, None);
    assert_eq!(s.outbound_traffic_policy, None);
}

#[test]
fn each_bad_field_is_named_with_its_reason() {
    for (spec, expected) in [
        (
            "  egress:\n  - hosts: [reviews]\n",
            "spec.egress[0].hosts[0]: egress host `reviews`: expected `namespace/dnsName`",
        ),
        (
            "  egress:\n  - hosts: [\"prod/reviews\"]\n",
            "spec.egress[0].hosts[0]: egress host `prod/reviews`: `reviews` is a short name; \
             Istio matches the fully qualified name",
        ),
        (
            "  egress:\n  - hosts: [\"prod/a.*.com\"]\n",
            "egress host `prod/a.*.com`: a wildcard is allowed only as the whole name or its \
             first label",
        ),
        (
            "  egress:\n  - hosts: [\"Bad_NS!/*\"]\n",
            "egress host `Bad_NS!/*`: the namespace must be `*`, `.`, `~` or a namespace name",
        ),
        (
            "  egress:\n  - hosts: [\"./*.\"]\n",
            "egress host `./*.`: after `*.` comes a domain name",
        ),
        ("  egress: []\n", "spec.egress"),
        ("  egress:\n  - {}\n", "spec.egress[0]"),
        (
            "  egress:\n  - hosts: [\"./*\"]\n    port: {number: 80}\n",
            "spec.egress[0].port: `port` is not supported by Remora yet",
        ),
        (
            "  ingress:\n  - port: {number: 80}\n",
            "spec.ingress: `ingress` is not supported by Remora yet",
        ),
        (
            "  outboundTrafficPolicy: {mode: DENY}\n",
            "spec.outboundTrafficPolicy.mode: unknown mode `DENY`; expected ALLOW_ANY or \
             REGISTRY_ONLY",
        ),
        (
            "  outboundTrafficPolicy: {egressProxy: {host: x}}\n",
            "`egressProxy` is not supported by Remora yet",
        ),
        (
            "  workloadSelector: {matchLabels: {app: x}}\n",
            "spec.workloadSelector.matchLabels: unknown field `matchLabels`",
        ),
        (
            "  egres: []\n",
            "unknown field `egres`; did you mean `egress`?",
        ),
    ] {
        let errors = errors(spec);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{spec:?}: {errors:#?}"
        );
    }
}

#[test]
fn too_many_egress_hosts_are_refused_with_the_count() {
    let hosts: Vec<String> = (0..=super::MAX_EGRESS_HOSTS)
        .map(|i| format!("\"ns/h{i}.example.com\""))
        .collect();
    let errors = errors(&format!("  egress:\n  - hosts: [{}]\n", hosts.join(", ")));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("1025 egress hosts; at most 1024")),
        "{errors:#?}"
    );
}
