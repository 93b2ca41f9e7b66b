use super::*;

fn cluster(addresses: &[&str]) -> pb::Cluster {
    pb::Cluster {
        name: "|reviews".into(),
        service: "reviews".into(),
        endpoints: addresses
            .iter()
            .map(|a| pb::Endpoint {
                address: (*a).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn endpoint_addresses_must_be_host_and_port() {
    assert!(ClusterSpec::compile(&cluster(&["10.0.0.1:80", "db.example.com:5432"])).is_ok());
    for bad in ["10.0.0.1", ":80", "10.0.0.1:0", "10.0.0.1:70000", "x:y"] {
        let err = ClusterSpec::compile(&cluster(&[bad])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cluster |reviews: endpoint address `{bad}` is not host:port")
        );
    }
}

#[test]
fn an_unknown_load_balancer_or_a_bad_tcp_port_is_refused() {
    let mut c = cluster(&[]);
    c.load_balancer = 9;
    let err = ClusterSpec::compile(&c).unwrap_err();
    assert_eq!(err.to_string(), "cluster |reviews: unknown load balancer 9");
    let mut c = cluster(&[]);
    c.tcp_ports = vec![6379, 0];
    let err = ClusterSpec::compile(&c).unwrap_err();
    assert!(
        err.to_string().contains("tcp_ports: 0 is not a port"),
        "{err}"
    );
}
