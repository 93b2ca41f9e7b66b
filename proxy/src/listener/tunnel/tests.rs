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
