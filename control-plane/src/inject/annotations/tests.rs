use super::*;

fn options(pairs: &[(&str, &str)]) -> Result<PodOptions, FieldError> {
    PodOptions::from_annotations(pairs.iter().copied(), "metadata.annotations")
}

#[test]
fn exclusions_become_init_flags_sorted_and_normalised() {
    let o = options(&[
        (EXCLUDE_OUTBOUND_PORTS, "6379, 5432,5432"),
        (EXCLUDE_INBOUND_PORTS, "9901"),
        (
            EXCLUDE_OUTBOUND_IP_RANGES,
            "10.0.0.0/8, 169.254.169.254,fd00::/8",
        ),
        (INCLUDE_INBOUND_PORTS, "9080,9443"),
    ])
    .expect("valid");
    assert_eq!(
        o.capture.init_args(),
        [
            "--exclude-outbound-ports=5432,6379",
            "--exclude-inbound-ports=9901",
            "--exclude-outbound-cidrs=10.0.0.0/8,169.254.169.254/32,fd00::/8",
            "--include-inbound-ports=9080,9443",
        ]
    );
    let all = options(&[(INCLUDE_INBOUND_PORTS, "*")]).expect("valid");
    assert!(all.capture.init_args().is_empty());
}

#[test]
fn inject_false_skips_and_other_words_are_refused() {
    assert!(options(&[(INJECT, "false")]).expect("valid").skip);
    assert!(!options(&[(INJECT, "true")]).expect("valid").skip);
    let e = options(&[(INJECT, "maybe")]).expect_err("bad");
    assert_eq!(e.field, "metadata.annotations[\"sidecar.istio.io/inject\"]");
    assert!(e.message.contains("\"maybe\""), "{}", e.message);
}

#[test]
fn bad_values_name_the_annotation_and_the_item() {
    let e = options(&[(EXCLUDE_OUTBOUND_PORTS, "80,http")]).expect_err("bad");
    assert!(e.field.contains("excludeOutboundPorts"));
    assert!(
        e.message.contains("\"http\" is not a port"),
        "{}",
        e.message
    );
    let e = options(&[(EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/33")]).expect_err("bad");
    assert!(e.message.contains("0 to 32"), "{}", e.message);
    let e = options(&[(EXCLUDE_OUTBOUND_PORTS, "0")]).expect_err("bad");
    assert!(e.message.contains("1 to 65535"), "{}", e.message);
}

#[test]
fn capture_annotations_remora_cannot_honour_are_errors() {
    for key in [
        "traffic.sidecar.istio.io/includeOutboundPorts",
        "traffic.sidecar.istio.io/kubevirtInterfaces",
    ] {
        let e = options(&[(key, "1")]).expect_err(key);
        assert!(e.message.contains("not supported yet"), "{}", e.message);
    }
    let e = options(&[(INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8")]).expect_err("bad");
    assert!(e.message.contains("not supported yet"));
    assert!(options(&[(INCLUDE_OUTBOUND_IP_RANGES, "*")]).is_ok());
    assert!(options(&[(INTERCEPTION_MODE, "TPROXY")]).is_err());
    // Unrelated annotations pass.
    assert!(options(&[("sidecar.istio.io/logLevel", "debug")]).is_ok());
}

#[test]
fn concurrency_comes_from_proxy_config_yaml_or_json() {
    assert_eq!(
        options(&[(PROXY_CONFIG, "concurrency: 4\n")])
            .expect("yaml")
            .concurrency,
        Some(4)
    );
    assert_eq!(
        options(&[(
            PROXY_CONFIG,
            r#"{"concurrency": 1, "holdApplicationUntilProxyStarts": true}"#
        )])
        .expect("json")
        .concurrency,
        Some(1)
    );
    assert_eq!(
        options(&[(PROXY_CONFIG, "tracing: {}")])
            .expect("none")
            .concurrency,
        None
    );
    assert!(options(&[(PROXY_CONFIG, "concurrency: -1")]).is_err());
    assert!(options(&[(PROXY_CONFIG, "concurrency: two")]).is_err());
}

#[test]
fn resources_are_checked_quantities() {
    let o = options(&[(PROXY_CPU, "250m"), (PROXY_MEMORY_LIMIT, "1Gi")]).expect("valid");
    assert_eq!(o.resources.cpu.as_deref(), Some("250m"));
    assert_eq!(o.resources.memory_limit.as_deref(), Some("1Gi"));
    assert!(options(&[(PROXY_MEMORY, "lots")]).is_err());
}
