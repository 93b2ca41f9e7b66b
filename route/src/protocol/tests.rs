//! Unit tests for the upstream HTTP version.

use http::Version;

use super::*;

const H1: Version = Version::HTTP_11;
const H2: Version = Version::HTTP_2;

fn port(number: u32, protocol: pb::PortProtocol, target_port: u32) -> pb::ServicePort {
    pb::ServicePort {
        number,
        protocol: protocol.into(),
        target_port,
    }
}

fn ports(list: &[pb::ServicePort]) -> ServicePorts {
    ServicePorts::build(list, "|svc").expect("valid ports")
}

#[test]
fn the_declared_protocol_decides_unless_a_destination_rule_says_otherwise() {
    use PortProtocol::{Http1, Http2, Tcp, Undeclared};
    use UpstreamPolicy::{ByPort, ClientProtocol, Upgrade};
    // (port, policy, what the client spoke, what the upstream gets)
    let table = [
        (Http1, ByPort, H2, H1),
        (Http1, ByPort, H1, H1),
        (Http1, ByPort, Version::HTTP_10, H1),
        (Http2, ByPort, H1, H2),
        (Http2, ByPort, H2, H2),
        (Undeclared, ByPort, H1, H1),
        (Undeclared, ByPort, H2, H2),
        (Tcp, ByPort, H2, H2),
        (Tcp, ByPort, H1, H1),
        (Http1, Upgrade, H1, H2),
        (Undeclared, Upgrade, H1, H2),
        (Http2, Upgrade, H1, H2),
        (Http1, ClientProtocol, H2, H2),
        (Http2, ClientProtocol, H1, H1),
        (Undeclared, ClientProtocol, Version::HTTP_10, H1),
    ];
    for (port, policy, client, want) in table {
        assert_eq!(
            upstream_version(port, policy, client),
            want,
            "{port:?} {policy:?} {client:?}"
        );
    }
}

#[test]
fn the_app_gets_its_port_s_protocol_or_what_reached_the_sidecar() {
    use PortProtocol::{Http1, Http2, Tcp, Undeclared};
    for (port, received, want) in [
        (Http1, H2, H1),
        (Http1, H1, H1),
        (Http2, H1, H2),
        (Undeclared, H2, H2),
        (Undeclared, H1, H1),
        (Tcp, H2, H2),
    ] {
        assert_eq!(app_version(port, received), want, "{port:?} {received:?}");
    }
}

#[test]
fn a_request_s_port_is_the_one_it_calls_else_the_service_s_only_port() {
    let one = ports(&[port(80, pb::PortProtocol::Http, 0)]);
    assert_eq!(one.for_request(Some(80)), PortProtocol::Http1);
    assert_eq!(one.for_request(None), PortProtocol::Http1);
    // Routed here from another service's port: the only port is where it goes.
    assert_eq!(one.for_request(Some(9080)), PortProtocol::Http1);

    let two = ports(&[
        port(80, pb::PortProtocol::Http, 0),
        port(50051, pb::PortProtocol::Http2, 0),
    ]);
    assert_eq!(two.for_request(Some(50051)), PortProtocol::Http2);
    assert_eq!(two.for_request(Some(80)), PortProtocol::Http1);
    assert_eq!(two.for_request(None), PortProtocol::Undeclared);
    assert_eq!(two.for_request(Some(1)), PortProtocol::Undeclared);

    let none = ServicePorts::default();
    assert_eq!(none.for_request(Some(80)), PortProtocol::Undeclared);
    assert_eq!(none.for_request(None), PortProtocol::Undeclared);
}

#[test]
fn an_app_port_is_matched_by_target_port_and_the_app_port_takes_an_only_port() {
    let declared = ports(&[port(80, pb::PortProtocol::Http2, 8080)]);
    assert_eq!(declared.for_app_port(8080, false), PortProtocol::Http2);
    assert_eq!(
        declared.for_app_port(80, false),
        PortProtocol::Undeclared,
        "the service port is not the app's"
    );
    // `--app` serves every request that names no port: the only port's.
    assert_eq!(declared.for_app_port(3000, true), PortProtocol::Http2);

    let no_target = ports(&[port(9080, pb::PortProtocol::Http, 0)]);
    assert_eq!(no_target.for_app_port(9080, false), PortProtocol::Http1);
    assert_eq!(
        no_target.for_app_port(9090, false),
        PortProtocol::Undeclared
    );

    let two = ports(&[
        port(80, pb::PortProtocol::Http, 0),
        port(81, pb::PortProtocol::Http2, 0),
    ]);
    assert_eq!(two.for_app_port(3000, true), PortProtocol::Undeclared);
}

#[test]
fn bad_ports_are_refused_naming_cluster_and_field() {
    for (bad, want) in [
        (
            port(0, pb::PortProtocol::Http, 0),
            "ports[0]: 0 is not a port",
        ),
        (
            port(70000, pb::PortProtocol::Http, 0),
            "ports[0]: 70000 is not a port",
        ),
        (
            port(80, pb::PortProtocol::Http, 65536),
            "ports[0]: target port 65536 is not a port",
        ),
        (
            pb::ServicePort {
                number: 80,
                protocol: 9,
                target_port: 0,
            },
            "ports[0]: unknown protocol 9",
        ),
    ] {
        let err = ServicePorts::build(&[bad], "|svc").unwrap_err();
        assert_eq!(err.to_string(), format!("cluster |svc: {want}"));
    }
}

#[test]
fn the_connection_pool_gives_the_policy() {
    let pool = |policy: pb::H2UpgradePolicy, client: bool| pb::ConnectionPool {
        h2_upgrade_policy: policy.into(),
        use_client_protocol: client,
        ..Default::default()
    };
    let build = |p: &pb::ConnectionPool| UpstreamPolicy::build(Some(p), "|svc");
    assert_eq!(
        UpstreamPolicy::build(None, "|svc"),
        Ok(UpstreamPolicy::ByPort)
    );
    assert_eq!(
        build(&pool(pb::H2UpgradePolicy::Default, false)),
        Ok(UpstreamPolicy::ByPort)
    );
    assert_eq!(
        build(&pool(pb::H2UpgradePolicy::DoNotUpgrade, false)),
        Ok(UpstreamPolicy::ByPort)
    );
    assert_eq!(
        build(&pool(pb::H2UpgradePolicy::Upgrade, false)),
        Ok(UpstreamPolicy::Upgrade)
    );
    assert_eq!(
        build(&pool(pb::H2UpgradePolicy::DoNotUpgrade, true)),
        Ok(UpstreamPolicy::ClientProtocol)
    );
    assert_eq!(
        build(&pool(pb::H2UpgradePolicy::Upgrade, true))
            .unwrap_err()
            .to_string(),
        "cluster |svc: use_client_protocol and h2_upgrade_policy UPGRADE are both set"
    );
    let unknown = pb::ConnectionPool {
        h2_upgrade_policy: 7,
        ..Default::default()
    };
    assert_eq!(
        build(&unknown).unwrap_err().to_string(),
        "cluster |svc: unknown h2_upgrade_policy 7"
    );
}
