use http::Request;

use super::*;
use crate::listener::outbound::prepare_upstream_request;

fn h1(uri: &str, host: &str) -> Parts {
    Request::get(uri)
        .version(Version::HTTP_11)
        .header(header::HOST, host)
        .header("x-app", "1")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[test]
fn http11_round_trips_through_h2_with_its_host_and_path() {
    let mut parts = h1("/reviews/1?full=true", "reviews:9080");
    encode(&mut parts).unwrap();
    assert_eq!(parts.version, Version::HTTP_2);
    assert_eq!(parts.uri, "http://reviews:9080/reviews/1?full=true");
    assert_eq!(parts.headers.get(ORIG_PROTO).unwrap(), "HTTP/1.1");
    assert!(parts.headers.get(header::HOST).is_none());

    decode(&mut parts);
    prepare_upstream_request(&mut parts).unwrap();
    assert_eq!(parts.version, Version::HTTP_11);
    assert_eq!(parts.uri, "/reviews/1?full=true");
    assert_eq!(parts.headers.get(header::HOST).unwrap(), "reviews:9080");
    assert!(parts.headers.get(ORIG_PROTO).is_none());
    assert_eq!(parts.headers.get("x-app").unwrap(), "1");
}

#[test]
fn h2_from_the_app_is_neither_marked_nor_downgraded() {
    let mut parts = Request::post("http://greeter:50051/helloworld.Greeter/SayHello")
        .version(Version::HTTP_2)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    encode(&mut parts).unwrap();
    assert!(parts.headers.get(ORIG_PROTO).is_none());
    decode(&mut parts);
    assert_eq!(parts.version, Version::HTTP_2);
    assert_eq!(
        parts.uri,
        "http://greeter:50051/helloworld.Greeter/SayHello"
    );
}

#[test]
fn a_mark_on_a_plain_http11_request_is_removed_and_ignored() {
    let mut parts = h1("/", "reviews");
    parts.headers.insert(ORIG_PROTO, HTTP_11);
    decode(&mut parts);
    assert!(parts.headers.get(ORIG_PROTO).is_none());
    assert_eq!(parts.version, Version::HTTP_11);
}

#[test]
fn a_host_that_is_not_an_authority_is_a_bad_request() {
    let mut parts = h1("/", "bad host");
    assert!(matches!(encode(&mut parts), Err(ProxyError::NoHost)));
}

#[test]
fn an_h2_request_sent_on_as_http11_takes_its_authority_as_host() {
    let mut parts = Request::get("http://httpbin:8000/get?x=1")
        .version(Version::HTTP_2)
        .header("x-app", "1")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    parts.version = Version::HTTP_11; // an HTTP port's protocol
    prepare_upstream_request(&mut parts).unwrap();
    assert_eq!(parts.version, Version::HTTP_11);
    assert_eq!(parts.uri, "/get?x=1");
    assert_eq!(parts.headers.get(header::HOST).unwrap(), "httpbin:8000");
    assert_eq!(parts.headers.get("x-app").unwrap(), "1");
}

#[test]
fn an_http11_request_sent_on_as_h2_takes_its_host_as_authority() {
    let mut parts = h1("/get?x=1", "httpbin:8000");
    parts.version = Version::HTTP_2; // an HTTP2 port's protocol
    prepare_upstream_request(&mut parts).unwrap();
    assert_eq!(parts.version, Version::HTTP_2);
    assert_eq!(parts.uri, "http://httpbin:8000/get?x=1");
    assert!(
        parts.headers.get(header::HOST).is_none(),
        ":authority carries it"
    );
    // Not marked: it is h2 now, and the server's sidecar sees h2.
    encode(&mut parts).unwrap();
    assert!(parts.headers.get(ORIG_PROTO).is_none());
}
