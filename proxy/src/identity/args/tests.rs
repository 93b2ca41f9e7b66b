use super::*;

fn args() -> IdentityArgs {
    IdentityArgs {
        token: None,
        token_file: None,
        ca_cert: None,
        ca_address: None,
        trust_domain: TrustDomain::new("cluster.local").expect("td"),
        cert_lifetime: None,
    }
}

#[test]
fn lifetimes_parse_as_whole_seconds_with_units() {
    assert_eq!(parse_lifetime("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_lifetime("24h"), Ok(Duration::from_secs(86_400)));
    assert_eq!(parse_lifetime("1h30m"), Ok(Duration::from_secs(5_400)));
    for bad in [
        "",
        "10",
        "s",
        "1.5s",
        "10ms",
        "0s",
        "-1s",
        "99999999999999999999h",
    ] {
        assert!(parse_lifetime(bad).is_err(), "{bad} should not parse");
    }
    assert!(
        parse_lifetime("10d")
            .expect_err("days")
            .contains("unknown unit `d`")
    );
}

#[test]
fn no_token_means_no_identity() {
    let settings = args()
        .settings("http://127.0.0.1:15010", "default", "reviews")
        .expect("settings");
    assert!(settings.is_none());
}

#[test]
fn a_token_file_is_trimmed_and_an_empty_or_missing_one_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("token");
    std::fs::write(&path, "  v1.default.reviews.mac\n").expect("write");
    let mut a = args();
    a.token_file = Some(path.clone());
    let settings = a
        .settings("http://cp:15010", "default", "reviews")
        .expect("settings")
        .expect("identity on");
    assert_eq!(settings.token, "v1.default.reviews.mac");
    assert_eq!(
        settings.id.as_str(),
        "spiffe://cluster.local/ns/default/sa/reviews"
    );

    std::fs::write(&path, " \n").expect("write");
    let error = a.settings("http://cp:15010", "default", "reviews");
    assert!(
        matches!(error, Err(SettingsError::EmptyToken { .. })),
        "{error:?}"
    );

    a.token_file = Some(dir.path().join("missing"));
    let error = a
        .settings("http://cp:15010", "default", "reviews")
        .expect_err("missing file");
    assert!(error.to_string().contains("cannot read the token file"));
}

#[test]
fn the_default_address_is_port_15012_with_a_bundle_and_the_control_plane_without() {
    assert_eq!(
        default_ca_address("http://cp.mesh:9000", true).expect("addr"),
        CaAddress {
            host: "cp.mesh".into(),
            port: 15012
        }
    );
    assert_eq!(
        default_ca_address("http://cp.mesh:9000", false)
            .expect("addr")
            .to_string(),
        "cp.mesh:9000"
    );
    assert_eq!(
        default_ca_address("http://[::1]", false)
            .expect("addr")
            .to_string(),
        "[::1]:15010"
    );
}

#[test]
fn a_ca_address_must_be_host_and_port() {
    assert_eq!(
        parse_host_port("127.0.0.1:15012", None)
            .expect("addr")
            .to_string(),
        "127.0.0.1:15012"
    );
    for bad in ["127.0.0.1", "http://cp:15012", "cp:0", ":15012", "a@cp:1"] {
        assert!(
            parse_host_port(bad, None).is_err(),
            "{bad} should not parse"
        );
    }
}
