//! SPIFFE ID parsing against the examples and rules of the SPIFFE ID specification.

use std::collections::HashSet;

use remora_certs::{SpiffeId, SpiffeIdErrorKind, TrustDomain};

#[test]
fn spec_valid_examples_parse() {
    for valid in [
        "spiffe://trust-domain-name/path",
        "spiffe://example.org/service",
        "spiffe://staging.example.com/payments/mysql",
        "spiffe://k8s-west.example.com/ns/staging/sa/default",
        "spiffe://example.org/9eebccd2-12bf-40a6-b262-65fe0487d453",
        "spiffe://trustdomain",
        "spiffe://trust_domain.with-all.chars0123456789/Path_With-ALL.chars0123456789",
        "spiffe://td/a/b/c/d",
        "spiffe://td/..a/.b/c..",
    ] {
        let id = SpiffeId::parse(valid).unwrap_or_else(|e| panic!("{valid}: {e}"));
        assert_eq!(id.as_str(), valid);
        assert_eq!(id.to_string(), valid);
    }
}

#[test]
fn spec_invalid_examples_are_refused_with_the_rule_and_position() {
    use SpiffeIdErrorKind as K;
    let cases: &[(&str, SpiffeIdErrorKind)] = &[
        ("", K::Empty),
        ("http://example.org/path", K::WrongScheme),
        ("SPIFFE://example.org/path", K::WrongScheme),
        ("spiffe:/example.org/path", K::WrongScheme),
        ("spiffe://", K::MissingTrustDomain),
        ("spiffe:///path", K::MissingTrustDomain),
        (
            "spiffe://Example.org/path",
            K::UppercaseTrustDomain { ch: 'E', at: 9 },
        ),
        ("spiffe://example.org:8080/path", K::Port { at: 20 }),
        ("spiffe://user@example.org/path", K::Userinfo { at: 13 }),
        (
            "spiffe://exa$mple.org/path",
            K::TrustDomainChar { ch: '$', at: 12 },
        ),
        ("spiffe://example.org/path?query", K::Query { at: 25 }),
        ("spiffe://example.org?query", K::Query { at: 20 }),
        ("spiffe://example.org/path#fragment", K::Fragment { at: 25 }),
        ("spiffe://example.org/p%41th", K::PercentEncoded { at: 22 }),
        (
            "spiffe://example.org/pa th",
            K::PathChar { ch: ' ', at: 23 },
        ),
        ("spiffe://example.org/päth", K::PathChar { ch: 'ä', at: 22 }),
        ("spiffe://example.org/", K::TrailingSlash),
        ("spiffe://example.org/path/", K::TrailingSlash),
        ("spiffe://example.org//path", K::EmptySegment { at: 20 }),
        ("spiffe://example.org/a//b", K::EmptySegment { at: 22 }),
        (
            "spiffe://example.org/./path",
            K::DotSegment {
                segment: ".",
                at: 21,
            },
        ),
        (
            "spiffe://example.org/a/../b",
            K::DotSegment {
                segment: "..",
                at: 23,
            },
        ),
        (
            "spiffe://example.org/a/..",
            K::DotSegment {
                segment: "..",
                at: 23,
            },
        ),
    ];
    for (input, kind) in cases {
        let error = SpiffeId::parse(input).expect_err(input);
        assert_eq!(error.kind(), kind, "{input}");
        assert_eq!(error.input(), *input);
        assert!(error.to_string().contains("invalid SPIFFE ID"), "{error}");
    }
}

#[test]
fn error_messages_say_what_and_where() {
    let error = SpiffeId::parse("spiffe://example.org:8080/path").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid SPIFFE ID \"spiffe://example.org:8080/path\": a port is not allowed (':' at byte 20)"
    );
    let error = SpiffeId::parse("spiffe://example.org/a/../b").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid SPIFFE ID \"spiffe://example.org/a/../b\": the path segment \"..\" at byte 23 \
         is not allowed ('.' and '..' are relative)"
    );
}

#[test]
fn length_limits_are_enforced() {
    let td = "a".repeat(255);
    assert!(SpiffeId::parse(&format!("spiffe://{td}/x")).is_ok());
    let long_td = "a".repeat(256);
    let error = SpiffeId::parse(&format!("spiffe://{long_td}/x")).unwrap_err();
    assert_eq!(
        error.kind(),
        &SpiffeIdErrorKind::TrustDomainTooLong { len: 256 }
    );

    let prefix = "spiffe://td/";
    let exactly = format!("{prefix}{}", "p".repeat(2048 - prefix.len()));
    assert!(SpiffeId::parse(&exactly).is_ok());
    let over = format!("{exactly}p");
    let error = SpiffeId::parse(&over).unwrap_err();
    assert_eq!(error.kind(), &SpiffeIdErrorKind::TooLong { len: 2049 });
    assert!(error.to_string().len() < 400, "long inputs are shortened");
}

#[test]
fn accessors_split_trust_domain_path_and_istio_parts() {
    let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/cart".parse().unwrap();
    assert_eq!(id.trust_domain_name(), "cluster.local");
    assert_eq!(
        id.trust_domain(),
        TrustDomain::new("cluster.local").unwrap()
    );
    assert_eq!(id.path(), "/ns/shop/sa/cart");
    assert_eq!(id.namespace(), Some("shop"));
    assert_eq!(id.service_account(), Some("cart"));
    assert!(!id.is_trust_domain_id());

    for not_istio in [
        "spiffe://td/ns/shop",
        "spiffe://td/ns/shop/sa/cart/extra",
        "spiffe://td/namespace/shop/sa/cart",
        "spiffe://td",
    ] {
        let id = SpiffeId::parse(not_istio).unwrap();
        assert_eq!(id.namespace(), None, "{not_istio}");
        assert_eq!(id.service_account(), None, "{not_istio}");
    }
    let td_id = SpiffeId::parse("spiffe://td").unwrap();
    assert_eq!(td_id.path(), "");
    assert!(td_id.is_trust_domain_id());
}

#[test]
fn workload_builds_istio_ids_and_validates_parts() {
    let td = TrustDomain::new("cluster.local").unwrap();
    let id = SpiffeId::workload(&td, "default", "bookinfo-productpage").unwrap();
    assert_eq!(
        id.as_str(),
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    );
    assert_eq!(id.namespace(), Some("default"));

    let error = SpiffeId::workload(&td, "a/b", "sa").unwrap_err();
    assert_eq!(
        error.kind(),
        &SpiffeIdErrorKind::NotOneSegment { field: "namespace" }
    );
    let error = SpiffeId::workload(&td, "ns", "").unwrap_err();
    assert_eq!(error.kind(), &SpiffeIdErrorKind::TrailingSlash);
    let error = SpiffeId::workload(&td, "..", "sa").unwrap_err();
    assert!(matches!(error.kind(), SpiffeIdErrorKind::DotSegment { .. }));
    let error = SpiffeId::workload(&td, "ns", "s a").unwrap_err();
    assert!(matches!(
        error.kind(),
        SpiffeIdErrorKind::PathChar { ch: ' ', .. }
    ));
}

#[test]
fn trust_domain_names_are_validated() {
    assert_eq!(
        TrustDomain::new("example.org").unwrap().as_str(),
        "example.org"
    );
    assert_eq!(
        TrustDomain::new("example.org").unwrap().id().as_str(),
        "spiffe://example.org"
    );
    let error = TrustDomain::new("spiffe://example.org").unwrap_err();
    assert_eq!(error.kind(), &SpiffeIdErrorKind::SchemeInTrustDomain);
    assert!(
        error.to_string().starts_with("invalid trust domain"),
        "{error}"
    );
    let error = TrustDomain::new("Example.org").unwrap_err();
    assert_eq!(
        error.kind(),
        &SpiffeIdErrorKind::UppercaseTrustDomain { ch: 'E', at: 0 }
    );
    assert!(TrustDomain::new("").is_err());
    assert!(TrustDomain::new("example.org/path").is_err());
}

#[test]
fn ids_compare_hash_and_order_by_uri() {
    let a = SpiffeId::parse("spiffe://td/a").unwrap();
    let b = SpiffeId::parse("spiffe://td/b").unwrap();
    assert!(a < b);
    assert_eq!(a, SpiffeId::parse("spiffe://td/a").unwrap());
    let set: HashSet<SpiffeId> = [a.clone(), a.clone(), b].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert_ne!(
        a,
        SpiffeId::parse("spiffe://td/A").unwrap(),
        "paths are case-sensitive"
    );
}
