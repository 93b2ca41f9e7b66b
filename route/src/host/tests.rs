use super::*;

#[test]
fn host_of_strips_port_and_brackets() {
    assert_eq!(host_of("reviews"), "reviews");
    assert_eq!(host_of("reviews:9080"), "reviews");
    assert_eq!(host_of("[::1]:80"), "::1");
    assert_eq!(host_of("[::1]"), "::1");
}

#[test]
fn port_of_reads_the_port_if_any() {
    assert_eq!(port_of("httpbin:9999"), Some(9999));
    assert_eq!(port_of("httpbin"), None);
    assert_eq!(port_of("[::1]:80"), Some(80));
    assert_eq!(port_of("[::1]"), None);
    assert_eq!(port_of("httpbin:x"), None);
}
