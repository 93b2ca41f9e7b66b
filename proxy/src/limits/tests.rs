use http::{HeaderValue, Request};

use super::*;

fn request_with(header_bytes: usize) -> request::Parts {
    Request::get("/a")
        .header(
            "x-big",
            HeaderValue::from_str(&"a".repeat(header_bytes)).unwrap(),
        )
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[test]
fn a_request_over_the_limit_is_refused_with_its_size_and_the_flag() {
    let limits = HeaderLimits::new(1, 1, 100);
    assert_eq!(limits.check_request(&request_with(1000), false), Ok(()));
    let err = limits
        .check_request(&request_with(1100), false)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "request headers are 1110 bytes, over the limit of 1024 bytes \
             (--max-request-headers-kb)"
    );
    // From another sidecar, what it may have added is allowed for.
    assert_eq!(limits.check_request(&request_with(1100), true), Ok(()));
}

#[test]
fn too_many_headers_are_refused() {
    let limits = HeaderLimits::new(60, 60, 3);
    let mut headers = HeaderMap::new();
    for i in 0..4 {
        headers.insert(
            http::HeaderName::try_from(format!("x-{i}")).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    assert!(matches!(
        limits.check_response(&headers, false),
        Err(TooLarge::Count { count: 4, .. })
    ));
    assert_eq!(limits.check_response(&headers, true), Ok(()));
}

#[test]
fn the_h2_layer_accepts_well_over_what_the_check_lets_through() {
    let limits = HeaderLimits::default();
    let passed = limits.request_bytes
        + HOP_ALLOWANCE
        + (limits.count + HOP_ALLOWANCE_COUNT) * H2_FIELD_OVERHEAD;
    assert!(limits.h2_list_size(limits.request_bytes) as usize > passed);
    assert!(HeaderLimits::h1_buf_size(limits.request_bytes) > limits.request_bytes);
    assert_eq!(limits.h1_max_headers(), None);
}

#[test]
fn the_connection_limit_follows_the_open_file_limit_and_keeps_a_reserve() {
    assert_eq!(ConnectionLimits::for_open_files(1024).max, 256);
    assert_eq!(ConnectionLimits::for_open_files(1 << 20).max, 16_384);
    assert_eq!(ConnectionLimits::for_open_files(8).max, 16);
    let limits = ConnectionLimits {
        max: 100,
        mtls_reserve_percent: 25,
    };
    assert_eq!(limits.plaintext_max(true), 75);
    assert_eq!(limits.plaintext_max(false), 100);
}
