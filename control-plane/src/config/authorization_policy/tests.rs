//! Unit tests for AuthorizationPolicy parsing.

use super::super::Severity;
use super::super::model::{
    AuthorizationAction, AuthorizationOperation, AuthorizationPolicy, AuthorizationRule,
    AuthorizationSource, Spec,
};
use super::super::test_support::{messages, only_spec, parse_security};

fn ap(spec: &str) -> AuthorizationPolicy {
    let outcome = parse_security("AuthorizationPolicy", spec);
    match only_spec(&outcome) {
        Spec::AuthorizationPolicy(ap) => ap.clone(),
        other => panic!("not an AuthorizationPolicy: {other:?}"),
    }
}

fn errors(spec: &str) -> Vec<String> {
    messages(
        &parse_security("AuthorizationPolicy", spec),
        Severity::Error,
    )
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn empty_spec_is_an_allow_policy_without_rules() {
    assert_eq!(ap("  {}\n"), AuthorizationPolicy::default());
    assert_eq!(ap("  {}\n").action, AuthorizationAction::Allow);
}

#[test]
fn every_source_and_operation_field_loads() {
    let policy = ap("
  selector:
    matchLabels: {app: reviews}
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/productpage, '*/sa/admin']
        notPrincipals: ['cluster.local/*']
        namespaces: [default]
        notNamespaces: [test]
    to:
    - operation:
        methods: [GET, HEAD]
        notMethods: [DELETE]
        paths: [/api/*, '*.css', /health]
        notPaths: [/admin]
        ports: ['8080']
        notPorts: ['9090']
        hosts: ['*']
        notHosts: [evil.example.com]
  - {}
");
    assert_eq!(policy.action, AuthorizationAction::Deny);
    assert_eq!(
        policy.rules,
        [
            AuthorizationRule {
                from: vec![AuthorizationSource {
                    principals: strings(&["cluster.local/ns/default/sa/productpage", "*/sa/admin"]),
                    not_principals: strings(&["cluster.local/*"]),
                    namespaces: strings(&["default"]),
                    not_namespaces: strings(&["test"]),
                }],
                to: vec![AuthorizationOperation {
                    methods: strings(&["GET", "HEAD"]),
                    not_methods: strings(&["DELETE"]),
                    paths: strings(&["/api/*", "*.css", "/health"]),
                    not_paths: strings(&["/admin"]),
                    ports: strings(&["8080"]),
                    not_ports: strings(&["9090"]),
                    hosts: strings(&["*"]),
                    not_hosts: strings(&["evil.example.com"]),
                }],
            },
            AuthorizationRule::default(),
        ]
    );
}

#[test]
fn audit_custom_and_unknown_actions_are_errors() {
    assert_eq!(
        errors("  action: AUDIT\n"),
        [
            "spec.action: action `AUDIT` (audit logging) is not supported by Remora; use ALLOW or DENY"
        ]
    );
    assert_eq!(
        errors("  action: CUSTOM\n  provider: {name: ext-authz}\n"),
        [
            "spec.action: action `CUSTOM` (an external authorizer) is not supported by Remora; \
             use ALLOW or DENY",
            "spec.provider: `provider` is not supported by Remora yet",
        ]
    );
    assert_eq!(
        errors("  action: allow\n"),
        ["spec.action: unknown action `allow`; expected ALLOW or DENY"]
    );
}

#[test]
fn conditions_and_sources_remora_cannot_check_are_errors() {
    assert_eq!(
        errors(
            "
  targetRefs: [{kind: Service, name: reviews}]
  rules:
  - from:
    - source:
        requestPrincipals: ['*']
        ipBlocks: [10.0.0.0/8]
        remoteIpBlocks: [1.2.3.4]
        namespaces: [default]
    when:
    - key: request.headers[x-user]
      values: [admin]
"
        ),
        [
            "spec.targetRefs: `targetRefs` is not supported by Remora yet",
            "spec.rules[0].from[0].source.requestPrincipals: `requestPrincipals` is not \
             supported by Remora yet",
            "spec.rules[0].from[0].source.ipBlocks: `ipBlocks` is not supported by Remora yet",
            "spec.rules[0].from[0].source.remoteIpBlocks: `remoteIpBlocks` is not supported by \
             Remora yet",
            "spec.rules[0].when: `when` is not supported by Remora yet",
        ]
    );
}

#[test]
fn a_star_in_the_middle_is_an_error() {
    assert_eq!(
        errors(
            "
  rules:
  - to:
    - operation:
        paths: ['/api/*/users', '*/x*', /ok*]
        hosts: ['**']
"
        ),
        [
            "spec.rules[0].to[0].operation.paths[0]: `/api/*/users` has a `*` in the middle; a \
             value is exact, `prefix*`, `*suffix` or `*` alone (as in Istio)",
            "spec.rules[0].to[0].operation.paths[1]: `*/x*` has a `*` in the middle; a value is \
             exact, `prefix*`, `*suffix` or `*` alone (as in Istio)",
            "spec.rules[0].to[0].operation.hosts[0]: `**` has a `*` in the middle; a value is \
             exact, `prefix*`, `*suffix` or `*` alone (as in Istio)",
        ]
    );
}

#[test]
fn ports_must_be_port_numbers_written_as_strings() {
    assert_eq!(
        errors(
            "
  rules:
  - to:
    - operation:
        ports: ['0', '65536', 'http', '80*', '080']
        notPorts: [8080]
"
        ),
        [
            "spec.rules[0].to[0].operation.ports[0]: port `0` must be a number between 1 and \
             65535",
            "spec.rules[0].to[0].operation.ports[1]: port `65536` must be a number between 1 and \
             65535",
            "spec.rules[0].to[0].operation.ports[2]: port `http` must be a number between 1 and \
             65535",
            "spec.rules[0].to[0].operation.ports[3]: port `80*` must be a number between 1 and \
             65535",
            "spec.rules[0].to[0].operation.ports[4]: port `080` must be a number between 1 and \
             65535",
            "spec.rules[0].to[0].operation.notPorts[0]: must be a string, got integer 8080 \
             (quote it to make it a string)",
        ]
    );
}

#[test]
fn empty_lists_sources_and_values_are_errors() {
    assert_eq!(
        errors(
            "
  rules:
  - from: []
  - from:
    - source: {}
    to:
    - operation: {notMethods: ['']}
  - to:
    - {}
  - ~
"
        ),
        [
            "spec.rules[0].from: must have at least one entry",
            "spec.rules[1].from[0].source: must set at least one of `principals`, \
             `notPrincipals`, `namespaces`, `notNamespaces` (Istio rejects an empty source)",
            "spec.rules[1].to[0].operation.notMethods[0]: must not be empty",
            "spec.rules[2].to[0].operation: missing required field `operation`",
            "spec.rules[3]: must be a mapping, got nothing (null)",
        ]
    );
}

#[test]
fn spiffe_uris_and_path_templates_are_errors() {
    assert_eq!(
        errors(
            "
  rules:
  - from:
    - source: {principals: ['spiffe://cluster.local/ns/default/sa/a']}
    to:
    - operation: {paths: ['/users/{*}']}
"
        ),
        [
            "spec.rules[0].from[0].source.principals[0]: principal \
             `spiffe://cluster.local/ns/default/sa/a` would never match: principals are written \
             without `spiffe://`, e.g. `cluster.local/ns/default/sa/reviews`",
            "spec.rules[0].to[0].operation.paths[0]: path templates (`/users/{*}`) are not \
             supported by Remora yet; use exact, `prefix*` or `*suffix` paths",
        ]
    );
}
