use super::*;

#[test]
fn short_names_are_qualified_with_the_namespace() {
    assert_eq!(
        qualify_host("reviews", "default"),
        "reviews.default.svc.cluster.local"
    );
    assert_eq!(
        qualify_host("Reviews", "prod"),
        "reviews.prod.svc.cluster.local"
    );
}

#[test]
fn names_with_a_dot_are_kept_lower_cased() {
    assert_eq!(qualify_host("reviews.prod", "default"), "reviews.prod");
    assert_eq!(
        qualify_host("API.Example.com", "default"),
        "api.example.com"
    );
}
