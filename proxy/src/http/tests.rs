use super::*;

#[test]
fn grpc_abort_is_a_trailers_only_response() {
    let resp = abort_reply(Abort::Grpc(14));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert_eq!(resp.headers()["grpc-message"], "fault injected");
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("close, x-private"),
    );
    h.insert("x-private", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    h.insert("end-user", HeaderValue::from_static("jason"));
    strip_hop_by_hop(&mut h);
    assert!(
        h.get("x-private").is_none()
            && h.get("keep-alive").is_none()
            && h.get(header::CONNECTION).is_none()
    );
    assert_eq!(h.get(header::TE).unwrap(), "trailers");
    assert_eq!(h.get("end-user").unwrap(), "jason");
}

#[test]
fn connection_cannot_remove_host_or_xfcc() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("reviews"));
    h.insert(
        "x-forwarded-client-cert",
        HeaderValue::from_static("By=a;URI=b"),
    );
    h.append(header::CONNECTION, HeaderValue::from_static("Host"));
    h.append(
        header::CONNECTION,
        HeaderValue::from_static("x-forwarded-client-cert, X-Private"),
    );
    h.insert("x-private", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.get(header::HOST).unwrap(), "reviews");
    assert_eq!(h.get("x-forwarded-client-cert").unwrap(), "By=a;URI=b");
    // Every Connection line counts, not only the first.
    assert!(h.get("x-private").is_none());
    assert!(h.get(header::CONNECTION).is_none());
}

#[test]
fn each_hop_by_hop_header_alone_is_removed() {
    for name in [
        "connection",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static("x"));
        h.insert("end-user", HeaderValue::from_static("jason"));
        strip_hop_by_hop(&mut h);
        assert!(h.get(name).is_none(), "{name} is removed when alone");
        assert_eq!(h.get("end-user").unwrap(), "jason");
    }
}
