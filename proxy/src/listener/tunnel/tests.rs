use std::net::{Ipv6Addr, SocketAddrV6};

use super::*;

#[test]
fn every_kind_of_destination_is_a_connect_authority() {
    // A link-local address with its zone too: `[fe80::1%3]:80`.
    let zoned = SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1), 80, 0, 3);
    for target in [
        "10.0.0.1:9080".parse().expect("v4"),
        "[2001:db8::1]:443".parse().expect("v6"),
        SocketAddr::V6(zoned),
    ] {
        let uri = connect_target(target).expect("an authority");
        assert_eq!(uri.to_string(), target.to_string());
        assert_eq!(uri.port_u16(), Some(target.port()));
    }
}

#[test]
fn a_tunnel_kept_shut_by_a_limit_is_logged_as_overflow_not_as_a_connect_failure() {
    let address = "10.0.0.2:15006".to_owned();
    let overflow = TunnelError::Upstream(UpstreamError::Overflow {
        address: address.clone(),
        limit: "maxConnections (1)".into(),
    });
    assert_eq!(overflow.flag(), "UO");
    let refused = TunnelError::Upstream(UpstreamError::Connect {
        address: address.clone(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    });
    assert_eq!(refused.flag(), "UF");
    let denied = TunnelError::Refused {
        address,
        target: "10.0.0.3:6379".parse().expect("addr"),
        status: StatusCode::FORBIDDEN,
        reason: "RBAC: access denied".into(),
    };
    assert_eq!(denied.flag(), "UF");
}
