use super::*;

fn defaults() -> Capture {
    Capture {
        outbound_port: 15001,
        inbound_port: 15006,
        proxy_uid: 1337,
        proxy_gid: Some(1337),
        exclude_outbound_ports: Vec::new(),
        exclude_outbound_cidrs: Vec::new(),
        exclude_inbound_ports: Vec::new(),
        include_inbound_ports: InboundPorts::All,
    }
}

#[test]
fn the_default_rules_capture_all_tcp_but_the_proxys_own() {
    let expected = r#"# remora-proxy init: transparent capture for the sidecar.
# Remove with `remora-proxy init --cleanup` (deletes this table only).
table inet remora
delete table inet remora
table inet remora {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta l4proto != tcp return comment "only TCP is captured"
		iifname "lo" return comment "traffic from inside the pod"
		tcp dport { 15006, 15020, 15021, 15090 } return comment "the proxy's own ports"
		meta l4proto tcp redirect to :15006 comment "to the inbound listener"
	}

	chain output {
		type nat hook output priority -100; policy accept;
		meta l4proto != tcp return comment "only TCP is captured"
		meta skuid 1337 return comment "the proxy's own connections (--proxy-uid)"
		meta skgid 1337 return comment "the proxy's own connections (--proxy-gid)"
		oifname "lo" return comment "loopback, and the pod calling its own address"
		ip daddr 127.0.0.0/8 return comment "loopback"
		ip6 daddr ::1 return comment "loopback"
		meta l4proto tcp redirect to :15001 comment "to the outbound listener"
	}
}
"#;
    assert_eq!(defaults().ruleset(), expected);
}

#[test]
fn exclusions_come_before_the_redirect_and_cidrs_split_by_family() {
    let capture = Capture {
        exclude_outbound_ports: vec![5432, 6379],
        exclude_outbound_cidrs: vec![
            "fd00::/8".parse().expect("cidr"),
            "10.0.0.0/8".parse().expect("cidr"),
            "169.254.169.254".parse().expect("cidr"),
        ],
        exclude_inbound_ports: vec![22],
        include_inbound_ports: InboundPorts::Only(vec![8080, 9080]),
        ..defaults()
    };
    let rules = capture.ruleset();
    let lines: Vec<&str> = rules.lines().map(str::trim).collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in\n{rules}"))
    };
    assert!(at("tcp dport { 22 } return") < at("tcp dport { 8080, 9080 } redirect to :15006"));
    assert!(
        at("ip daddr { 10.0.0.0/8, 169.254.169.254/32 } return")
            < at("meta l4proto tcp redirect to :15001")
    );
    assert!(at("ip6 daddr { fd00::/8 } return") < at("meta l4proto tcp redirect to :15001"));
    assert!(at("tcp dport { 5432, 6379 } return") < at("meta l4proto tcp redirect to :15001"));
    // No catch-all inbound redirect when only some ports are included.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("meta l4proto tcp redirect to :15006"))
    );
}

#[test]
fn no_included_inbound_port_turns_inbound_capture_off() {
    let capture = Capture {
        include_inbound_ports: "".parse().expect("empty list"),
        ..defaults()
    };
    assert_eq!(
        capture.include_inbound_ports,
        InboundPorts::Only(Vec::new())
    );
    let rules = capture.ruleset();
    assert!(!rules.contains(":15006 comment"), "{rules}");
    assert!(rules.contains("redirect to :15001"), "{rules}");
}

#[test]
fn port_lists_are_sorted_deduplicated_and_checked() {
    assert_eq!(parse_ports("443, 80,80,").expect("ports"), vec![80, 443]);
    assert_eq!(parse_ports("").expect("empty"), Vec::<u16>::new());
    for bad in ["0", "65536", "http", "80;443"] {
        let err = parse_ports(bad).expect_err(bad);
        assert!(err.contains("is not a port"), "{bad}: {err}");
    }
    assert_eq!("*".parse::<InboundPorts>(), Ok(InboundPorts::All));
}

#[test]
fn cidrs_are_checked_and_their_host_bits_cleared() {
    let cidr = |s: &str| s.parse::<Cidr>().map(|c| c.to_string());
    assert_eq!(cidr("10.1.2.3/8").as_deref(), Ok("10.0.0.0/8"));
    assert_eq!(cidr("10.1.2.3").as_deref(), Ok("10.1.2.3/32"));
    assert_eq!(cidr("0.0.0.0/0").as_deref(), Ok("0.0.0.0/0"));
    assert_eq!(cidr("fd00:1::5/16").as_deref(), Ok("fd00::/16"));
    assert_eq!(cidr("::/0").as_deref(), Ok("::/0"));
    assert!(cidr("10.0.0.0/33").expect_err("/33").contains("0 to 32"));
    assert!(cidr("fd00::/129").expect_err("/129").contains("0 to 128"));
    assert!(
        cidr("reviews")
            .expect_err("name")
            .contains("not an IP address")
    );
}

#[test]
fn cleanup_deletes_our_table_only() {
    assert_eq!(
        cleanup_script(),
        "table inet remora\ndelete table inet remora\n"
    );
}
