use super::*;

#[test]
fn durations_accept_istio_units_and_fractions() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
    assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
}

#[test]
fn durations_reject_malformed_text() {
    for bad in [
        "",
        "30",
        "s",
        "10x",
        "1..5s",
        ".s",
        "-1s",
        "1 s",
        "5d",
        "99999999999999999999999h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn dns_names_follow_rfc1123() {
    assert!(is_dns1123_subdomain("reviews"));
    assert!(is_dns1123_subdomain("reviews-v2.prod"));
    assert!(!is_dns1123_subdomain("Reviews"));
    assert!(!is_dns1123_subdomain("-reviews"));
    assert!(!is_dns1123_subdomain("reviews..prod"));
    assert!(!is_dns1123_subdomain("re_views"));
    assert!(is_dns1123_label("default"));
    assert!(!is_dns1123_label("a.b"));
}
