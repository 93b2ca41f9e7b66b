use super::*;

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn resolve(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<TraceConfig, TraceError> {
    TraceConfig::resolve(
        flag,
        "reviews",
        Some("default"),
        SamplingRatio::ISTIO_DEFAULT,
        env(vars),
    )
}

#[test]
fn no_endpoint_anywhere_means_disabled() {
    let config = resolve(None, &[(OTEL_EXPORTER_OTLP_ENDPOINT, " ")]).expect("valid");
    assert_eq!(config.endpoint, None);
    assert_eq!(config.service_name, "reviews");
    assert_eq!(config.service_namespace.as_deref(), Some("default"));
}

#[test]
fn flag_beats_traces_variable_beats_generic_variable() {
    let vars = [
        (OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4317"),
        (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://traces:4317"),
    ];
    let endpoint = |flag| resolve(flag, &vars).expect("valid").endpoint;
    assert_eq!(
        endpoint(Some("http://flag:4317")).as_deref(),
        Some("http://flag:4317")
    );
    assert_eq!(endpoint(None).as_deref(), Some("http://traces:4317"));
    let generic = resolve(None, &vars[..1]).expect("valid").endpoint;
    assert_eq!(generic.as_deref(), Some("http://generic:4317"));
}

#[test]
fn endpoint_without_scheme_is_http() {
    let config = resolve(Some("jaeger:4317"), &[]).expect("valid");
    assert_eq!(config.endpoint.as_deref(), Some("http://jaeger:4317"));
}

#[test]
fn https_and_garbage_endpoints_are_refused() {
    for bad in [
        "https://jaeger:4317",
        "ftp://jaeger",
        "http://",
        "not a url",
    ] {
        let err = resolve(Some(bad), &[]).expect_err(bad);
        assert!(
            matches!(err, TraceError::InvalidEndpoint { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn otel_service_name_beats_service_flag() {
    let config = resolve(None, &[(OTEL_SERVICE_NAME, "reviews-v2")]).expect("valid");
    assert_eq!(config.service_name, "reviews-v2");
}

#[test]
fn sampling_is_a_percentage_in_range() {
    assert_eq!(
        SamplingRatio::parse_percent("1").map(SamplingRatio::get),
        Ok(0.01)
    );
    assert_eq!(
        SamplingRatio::parse_percent("100%").map(SamplingRatio::get),
        Ok(1.0)
    );
    assert_eq!(
        SamplingRatio::parse_percent("0").map(SamplingRatio::get),
        Ok(0.0)
    );
    for bad in ["-1", "100.5", "NaN", "lots"] {
        assert!(SamplingRatio::parse_percent(bad).is_err(), "{bad}");
    }
    assert!(SamplingRatio::new(1.5).is_err());
    assert_eq!(SamplingRatio::default(), SamplingRatio::ISTIO_DEFAULT);
}
