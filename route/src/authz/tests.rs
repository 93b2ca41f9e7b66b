use remora_certs::{SpiffeId, TrustDomain};
use remora_proto::pb;

use super::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn policy(name: &str, rules: Vec<pb::AuthorizationRule>) -> pb::AuthorizationPolicy {
    pb::AuthorizationPolicy {
        name: name.to_owned(),
        rules,
    }
}

fn from(source: pb::AuthorizationSource) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        from: vec![source],
        to: vec![],
    }
}

fn to(op: pb::AuthorizationOperation) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        from: vec![],
        to: vec![op],
    }
}

fn principals(v: &[&str]) -> pb::AuthorizationSource {
    pb::AuthorizationSource {
        principals: strings(v),
        ..Default::default()
    }
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::workload(&TrustDomain::new("cluster.local").unwrap(), ns, sa).unwrap()
}

/// A GET of `/api/items?q=1` on `reviews:9080` from `peer`.
fn request(peer: Option<&SpiffeId>) -> RequestAttributes<'_> {
    RequestAttributes {
        method: "GET",
        path: "/api/items",
        host: "Reviews.Default",
        port: 9080,
        ..Default::default()
    }
    .with_peer(peer)
}

fn allow_only(rules: Vec<pb::AuthorizationRule>) -> Authorizer {
    Authorizer::build(&[], &[policy("shop/allow", rules)]).unwrap()
}

fn allowed(authz: &Authorizer, req: &RequestAttributes<'_>) -> bool {
    authz.check(req).is_ok()
}

#[test]
fn no_policies_allow_everything() {
    let authz = Authorizer::build(&[], &[]).unwrap();
    assert!(authz.is_empty());
    assert!(allowed(&authz, &request(None)));
}

#[test]
fn deny_policies_come_first_and_name_the_policy() {
    let frontend = id("shop", "frontend");
    let deny = policy(
        "shop/no-frontend",
        vec![from(principals(&["cluster.local/ns/shop/sa/frontend"]))],
    );
    let allow = policy("shop/all", vec![pb::AuthorizationRule::default()]);
    let authz = Authorizer::build(&[deny], &[allow]).unwrap();
    let err = authz.check(&request(Some(&frontend))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "RBAC: access denied by AuthorizationPolicy shop/no-frontend"
    );
    assert!(allowed(&authz, &request(Some(&id("shop", "cart")))));
}

#[test]
fn allow_policies_allow_only_what_a_rule_matches() {
    let authz = allow_only(vec![from(principals(&[
        "cluster.local/ns/shop/sa/frontend",
    ]))]);
    assert!(allowed(&authz, &request(Some(&id("shop", "frontend")))));
    let err = authz
        .check(&request(Some(&id("shop", "cart"))))
        .unwrap_err();
    assert_eq!(err, Denied::NoAllowMatched);
    assert_eq!(
        err.to_string(),
        "RBAC: access denied: no ALLOW policy matched"
    );
}

#[test]
fn a_policy_without_rules_matches_nothing() {
    // ALLOW with no rules: denies all.
    let authz = allow_only(vec![]);
    assert!(!allowed(&authz, &request(Some(&id("shop", "frontend")))));
    // DENY with no rules: denies nothing.
    let authz = Authorizer::build(&[policy("shop/empty", vec![])], &[]).unwrap();
    assert!(allowed(&authz, &request(None)));
}

#[test]
fn an_empty_rule_matches_every_request() {
    let authz = allow_only(vec![pb::AuthorizationRule::default()]);
    assert!(allowed(&authz, &request(None)));
}

#[test]
fn a_rule_needs_both_from_and_to() {
    let rule = pb::AuthorizationRule {
        from: vec![principals(&["cluster.local/ns/shop/sa/frontend"])],
        to: vec![pb::AuthorizationOperation {
            methods: strings(&["POST"]),
            ..Default::default()
        }],
    };
    let authz = allow_only(vec![rule]);
    let (frontend, cart) = (id("shop", "frontend"), id("shop", "cart"));
    // Right source, wrong method.
    assert!(!allowed(&authz, &request(Some(&frontend))));
    let mut post = request(Some(&frontend));
    post.method = "POST";
    assert!(allowed(&authz, &post));
    post = post.with_peer(Some(&cart));
    assert!(!allowed(&authz, &post));
}

#[test]
fn any_source_or_operation_of_a_rule_may_match() {
    let rule = pb::AuthorizationRule {
        from: vec![
            principals(&["cluster.local/ns/shop/sa/cart"]),
            principals(&["cluster.local/ns/shop/sa/frontend"]),
        ],
        to: vec![
            pb::AuthorizationOperation {
                paths: strings(&["/admin"]),
                ..Default::default()
            },
            pb::AuthorizationOperation {
                paths: strings(&["/api/*"]),
                ..Default::default()
            },
        ],
    };
    let authz = allow_only(vec![rule]);
    assert!(allowed(&authz, &request(Some(&id("shop", "frontend")))));
}

#[test]
fn every_non_empty_field_of_a_source_must_match() {
    let source = pb::AuthorizationSource {
        principals: strings(&["*"]),
        namespaces: strings(&["billing"]),
        ..Default::default()
    };
    let authz = allow_only(vec![from(source)]);
    assert!(!allowed(&authz, &request(Some(&id("shop", "frontend")))));
    assert!(allowed(&authz, &request(Some(&id("billing", "frontend")))));
}

#[test]
fn values_match_exactly_by_prefix_by_suffix_or_presence() {
    for (pattern, sa, expected) in [
        ("cluster.local/ns/shop/sa/frontend", "frontend", true),
        ("cluster.local/ns/shop/sa/front", "frontend", false),
        ("cluster.local/ns/shop/*", "frontend", true),
        ("cluster.local/ns/other/*", "frontend", false),
        ("*/sa/frontend", "frontend", true),
        ("*/sa/cart", "frontend", false),
        ("*", "frontend", true),
    ] {
        let authz = allow_only(vec![from(principals(&[pattern]))]);
        assert_eq!(
            allowed(&authz, &request(Some(&id("shop", sa)))),
            expected,
            "{pattern} vs {sa}"
        );
    }
}

#[test]
fn a_plaintext_peer_matches_no_principal_or_namespace_but_not_principals() {
    for source in [
        principals(&["*"]),
        pb::AuthorizationSource {
            namespaces: strings(&["*"]),
            ..Default::default()
        },
    ] {
        assert!(!allowed(&allow_only(vec![from(source)]), &request(None)));
    }
    // Istio's "deny plaintext": DENY notPrincipals ["*"].
    let deny = policy(
        "shop/require-mtls",
        vec![from(pb::AuthorizationSource {
            not_principals: strings(&["*"]),
            ..Default::default()
        })],
    );
    let authz = Authorizer::build(&[deny], &[]).unwrap();
    assert!(!allowed(&authz, &request(None)));
    assert!(allowed(&authz, &request(Some(&id("shop", "frontend")))));
}

#[test]
fn not_fields_exclude_what_they_match() {
    let source = pb::AuthorizationSource {
        not_namespaces: strings(&["untrusted"]),
        ..Default::default()
    };
    let authz = allow_only(vec![from(source)]);
    assert!(allowed(&authz, &request(Some(&id("shop", "a")))));
    assert!(!allowed(&authz, &request(Some(&id("untrusted", "a")))));
    let op = pb::AuthorizationOperation {
        not_methods: strings(&["DELETE"]),
        not_paths: strings(&["/admin*"]),
        ..Default::default()
    };
    let authz = allow_only(vec![to(op)]);
    assert!(allowed(&authz, &request(None)));
    let mut req = request(None);
    req.method = "DELETE";
    assert!(!allowed(&authz, &req));
    let mut req = request(None);
    req.path = "/admin/users";
    assert!(!allowed(&authz, &req));
}

#[test]
fn ports_compare_with_the_app_port() {
    let authz = allow_only(vec![to(pb::AuthorizationOperation {
        ports: strings(&["9080"]),
        ..Default::default()
    })]);
    assert!(allowed(&authz, &request(None)));
    let mut req = request(None);
    req.port = 8080;
    assert!(!allowed(&authz, &req));
    let authz = allow_only(vec![to(pb::AuthorizationOperation {
        not_ports: strings(&["9080"]),
        ..Default::default()
    })]);
    assert!(!allowed(&authz, &request(None)));
}

#[test]
fn hosts_compare_case_insensitively() {
    for (pattern, expected) in [
        ("reviews.default", true),
        ("REVIEWS.*", true),
        ("*.DEFAULT", true),
        ("ratings.default", false),
    ] {
        let authz = allow_only(vec![to(pb::AuthorizationOperation {
            hosts: strings(&[pattern]),
            ..Default::default()
        })]);
        assert_eq!(allowed(&authz, &request(None)), expected, "{pattern}");
    }
}

#[test]
fn paths_compare_exactly_and_are_case_sensitive() {
    let authz = allow_only(vec![to(pb::AuthorizationOperation {
        paths: strings(&["/API/items"]),
        ..Default::default()
    })]);
    assert!(!allowed(&authz, &request(None)));
}

#[test]
fn a_port_that_is_not_a_number_is_refused_with_its_place() {
    let bad = policy(
        "shop/bad",
        vec![
            pb::AuthorizationRule::default(),
            to(pb::AuthorizationOperation {
                ports: strings(&["http"]),
                ..Default::default()
            }),
        ],
    );
    let err = Authorizer::build(&[], &[bad]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inbound AuthorizationPolicy shop/bad rules[1].to[0].ports: `http` is not a port (1-65535)"
    );
}

#[test]
fn on_tcp_http_only_fields_skip_allow_rules_and_are_ignored_by_deny_rules() {
    let frontend = id("shop", "frontend");
    let tcp = RequestAttributes {
        port: 6379,
        tcp: true,
        ..Default::default()
    }
    .with_peer(Some(&frontend));
    let rule = |methods: &[&str], ports: &[&str]| pb::AuthorizationRule {
        from: vec![principals(&["cluster.local/ns/shop/sa/frontend"])],
        to: vec![pb::AuthorizationOperation {
            methods: strings(methods),
            ports: strings(ports),
            ..Default::default()
        }],
    };
    // ALLOW: principal and port match; a rule naming a method never does.
    assert!(allowed(&allow_only(vec![rule(&[], &["6379"])]), &tcp));
    assert!(!allowed(&allow_only(vec![rule(&[], &["5432"])]), &tcp));
    assert!(!allowed(&allow_only(vec![rule(&["GET"], &["6379"])]), &tcp));
    // DENY: the method is ignored, so the rule denies on principal and port.
    let deny =
        Authorizer::build(&[policy("shop/deny", vec![rule(&["GET"], &["6379"])])], &[]).unwrap();
    assert!(!allowed(&deny, &tcp));
    let other_port = RequestAttributes { port: 5432, ..tcp };
    assert!(allowed(&deny, &other_port));
}
