use remora_certs::{SpiffeId, TrustDomain};

use super::*;

fn sidecar() -> Peer {
    let td = TrustDomain::new("cluster.local").unwrap();
    Peer {
        identity: Some(SpiffeId::workload(&td, "default", "productpage").unwrap()),
        tls: true,
    }
}

#[test]
fn a_sidecar_s_port_is_taken_and_removed() {
    let mut headers = HeaderMap::new();
    mark(&mut headers, 9090);
    assert_eq!(take(&mut headers, &sidecar()), Ok(Some(9090)));
    assert!(headers.get(DST_PORT).is_none());
}

#[test]
fn a_port_from_a_client_without_identity_is_removed_and_ignored() {
    for peer in [
        Peer::plaintext(),
        Peer {
            identity: None,
            tls: true,
        },
    ] {
        let mut headers = HeaderMap::new();
        headers.append(DST_PORT, HeaderValue::from_static("22"));
        headers.append(DST_PORT, HeaderValue::from_static("x"));
        assert_eq!(take(&mut headers, &peer), Ok(None));
        assert!(headers.get(DST_PORT).is_none());
    }
}

#[test]
fn a_bad_port_from_a_sidecar_is_refused_with_the_reason() {
    for (values, reason) in [
        (&["0"][..], "port 0"),
        (&["65536"][..], "not a port number"),
        (&["80x"][..], "not a port number"),
        (&["80", "81"][..], "sent more than once"),
    ] {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(DST_PORT, HeaderValue::from_static(v));
        }
        let err = take(&mut headers, &sidecar()).unwrap_err();
        assert_eq!(err.reason, reason, "{values:?}");
        assert!(headers.get(DST_PORT).is_none());
    }
}

#[test]
fn strip_removes_every_copy() {
    let mut headers = HeaderMap::new();
    headers.append(DST_PORT, HeaderValue::from_static("1"));
    headers.append(DST_PORT, HeaderValue::from_static("2"));
    strip(&mut headers);
    assert!(headers.get(DST_PORT).is_none());
}
