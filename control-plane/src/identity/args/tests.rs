use super::*;

fn args(tls: Option<&str>) -> IdentityArgs {
    IdentityArgs {
        data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        trust_domain: TrustDomain::new("cluster.local").expect("td"),
        cert_lifetime: Duration::from_secs(3600),
        grpc_tls_addr: tls.map(|a| a.parse().expect("addr")),
    }
}

#[test]
fn the_tls_port_follows_the_grpc_address_unless_given() {
    let grpc = |a: &str| a.parse::<SocketAddr>().expect("addr");
    assert_eq!(
        args(None).tls_addr(grpc("0.0.0.0:15010")),
        grpc("0.0.0.0:15012")
    );
    assert_eq!(
        args(None).tls_addr(grpc("127.0.0.1:0")),
        grpc("127.0.0.1:0")
    );
    assert_eq!(
        args(Some("10.0.0.1:9000")).tls_addr(grpc("127.0.0.1:0")),
        grpc("10.0.0.1:9000")
    );
}

#[test]
fn lifetimes_are_positive_durations() {
    assert_eq!(parse_lifetime("24h"), Ok(Duration::from_secs(86_400)));
    assert_eq!(parse_lifetime("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_lifetime("1h30m"), Ok(Duration::from_secs(5400)));
    assert!(
        parse_lifetime("0s")
            .expect_err("zero")
            .contains("longer than zero")
    );
    assert!(
        parse_lifetime("24")
            .expect_err("no unit")
            .contains("\"24h\"")
    );
    assert!(parse_lifetime("1d").is_err());
}
