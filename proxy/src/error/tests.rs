use super::*;

fn upstream(e: UpstreamError) -> (u16, &'static str) {
    let e = ProxyError::Upstream(e);
    (e.status().as_u16(), e.flag())
}

#[test]
fn each_failure_has_its_status_and_flag() {
    let address = || "10.0.0.1:80".to_owned();
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let cases = [
        (
            upstream(UpstreamError::Connect {
                address: address(),
                source: refused,
            }),
            (503, "UF"),
        ),
        (
            upstream(UpstreamError::ClosedBeforeSend { address: address() }),
            (503, "UF"),
        ),
        (
            upstream(UpstreamError::Overflow {
                address: address(),
                limit: "maxConnections (1)".to_owned(),
            }),
            (503, "UO"),
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
    let no_endpoint = ProxyError::NoEndpoint {
        service: "reviews".to_owned(),
        subset: "v1".to_owned(),
    };
    assert_eq!(
        (no_endpoint.status().as_u16(), no_endpoint.flag()),
        (503, "UH")
    );
    let timeout = ProxyError::Timeout {
        after: Duration::from_secs(1),
    };
    assert_eq!((timeout.status().as_u16(), timeout.flag()), (504, "UT"));
}
