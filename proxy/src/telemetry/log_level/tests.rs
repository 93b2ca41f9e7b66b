use super::*;

#[test]
fn levels_and_full_directives_parse() {
    for ok in [
        "debug",
        "info",
        "remora_proxy=debug,hyper=info",
        "warn,remora_proxy=trace",
    ] {
        assert!(parse(ok).is_ok(), "{ok}");
    }
}

#[test]
fn bad_directives_name_themselves_and_the_reason() {
    for bad in ["", "remora_proxy=loud", "a=b=c"] {
        let err = parse(bad).expect_err(bad).to_string();
        assert!(err.contains("invalid log directive"), "{bad}: {err}");
    }
}

#[test]
fn the_level_comes_from_the_query_percent_decoded() {
    assert_eq!(
        query_param("level=debug", "level").as_deref(),
        Some("debug")
    );
    assert_eq!(
        query_param("x=1&level=remora_proxy=debug,hyper=info", "level").as_deref(),
        Some("remora_proxy=debug,hyper=info")
    );
    assert_eq!(
        query_param("level=remora_proxy%3Ddebug%2Chyper%3Dinfo", "level").as_deref(),
        Some("remora_proxy=debug,hyper=info")
    );
    assert_eq!(query_param("level=%zz", "level"), None);
    assert_eq!(query_param("other=1", "level"), None);
}

#[test]
fn admin_rejects_a_missing_or_bad_level() {
    assert_eq!(admin(&Method::POST, None).0, StatusCode::BAD_REQUEST);
    assert_eq!(
        admin(&Method::POST, Some("level=a=b=c")).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin(&Method::PUT, Some("level=debug")).0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn set_without_a_subscriber_says_so() {
    // Unit tests never call `init`.
    assert_eq!(set("debug"), Err(LogLevelError::NotInstalled));
    assert_eq!(
        set("a=b=c").map_err(|e| matches!(e, LogLevelError::Invalid { .. })),
        Err(true)
    );
}
