use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn extract(pairs: &[(&str, &str)]) -> Incoming {
    Incoming::extract(&headers(pairs))
}

fn parent(trace: &str, span: &str) -> Option<Parent> {
    Some(Parent {
        trace_id: TraceId::from_hex(trace).expect("trace id"),
        span_id: SpanId::from_hex(span).expect("span id"),
    })
}

fn text(map: &HeaderMap, name: &str) -> Option<String> {
    map.get(name).map(|v| v.to_str().expect("ascii").to_owned())
}

#[test]
fn traceparent_gives_parent_and_sampled_flag() {
    let sampled = extract(&[("traceparent", &format!("00-{TRACE}-{SPAN}-01"))]);
    assert_eq!(sampled.parent, parent(TRACE, SPAN));
    assert_eq!(sampled.sampling, Sampling::Sampled);
    assert_eq!(sampled.b3, None);
    let unsampled = extract(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]);
    assert_eq!(unsampled.sampling, Sampling::NotSampled);
    // Other flag bits do not matter.
    let other = extract(&[("traceparent", &format!("00-{TRACE}-{SPAN}-03"))]);
    assert_eq!(other.sampling, Sampling::Sampled);
}

#[test]
fn invalid_traceparents_are_ignored() {
    let zero_trace = "0".repeat(32);
    let zero_span = "0".repeat(16);
    for bad in [
        format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
        format!("ff-{TRACE}-{SPAN}-01"),
        format!("00-{zero_trace}-{SPAN}-01"),
        format!("00-{TRACE}-{zero_span}-01"),
        format!("00-{TRACE}-{SPAN}-1"),
        format!("00-{TRACE}-{SPAN}-01-extra"),
        format!("00_{TRACE}-{SPAN}-01"),
        format!("00-+{}-{SPAN}-01", &TRACE[1..]),
        String::new(),
    ] {
        assert_eq!(
            extract(&[("traceparent", &bad)]),
            Incoming::default(),
            "{bad}"
        );
    }
}

#[test]
fn later_traceparent_versions_may_append_fields() {
    let future = extract(&[("traceparent", &format!("01-{TRACE}-{SPAN}-01-what-comes"))]);
    assert_eq!(future.parent, parent(TRACE, SPAN));
}

#[test]
fn b3_single_header_forms() {
    let full = extract(&[("b3", &format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90"))]);
    assert_eq!(full.parent, parent(TRACE, SPAN));
    assert_eq!(full.sampling, Sampling::Sampled);
    assert_eq!(full.b3, Some(B3Format::Single { trace_id_64: false }));

    let deferred = extract(&[("b3", &format!("{TRACE}-{SPAN}"))]);
    assert_eq!(deferred.sampling, Sampling::Deferred);

    let narrow = extract(&[("b3", &format!("a3ce929d0e0e4736-{SPAN}-d"))]);
    assert_eq!(
        narrow.parent,
        parent("0000000000000000a3ce929d0e0e4736", SPAN)
    );
    assert_eq!(narrow.sampling, Sampling::Debug);
    assert_eq!(narrow.b3, Some(B3Format::Single { trace_id_64: true }));

    let deny = extract(&[("b3", "0")]);
    assert_eq!(deny.parent, None);
    assert_eq!(deny.sampling, Sampling::NotSampled);
    assert!(deny.b3.is_some());
}

#[test]
fn invalid_b3_single_headers_are_ignored() {
    for bad in [
        TRACE.to_owned(),
        format!("{TRACE}-{SPAN}-2"),
        format!("{TRACE}-{SPAN}-1-short"),
        format!("{TRACE}-{SPAN}-1-{SPAN}-more"),
        format!("{}-{SPAN}-1", &TRACE[..20]),
        "x".to_owned(),
    ] {
        let incoming = extract(&[("b3", &bad)]);
        assert_eq!(incoming.parent, None, "{bad}");
        assert_eq!(incoming.b3, None, "{bad}");
    }
}

#[test]
fn b3_multi_headers_forms() {
    let full = extract(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
        ("x-b3-sampled", "1"),
    ]);
    assert_eq!(full.parent, parent(TRACE, SPAN));
    assert_eq!(full.sampling, Sampling::Sampled);
    assert_eq!(full.b3, Some(B3Format::Multi { trace_id_64: false }));

    let narrow_upper = extract(&[
        ("x-b3-traceid", "A3CE929D0E0E4736"),
        ("x-b3-spanid", SPAN),
        ("x-b3-sampled", "true"),
    ]);
    assert_eq!(
        narrow_upper.parent,
        parent("0000000000000000a3ce929d0e0e4736", SPAN)
    );
    assert_eq!(narrow_upper.b3, Some(B3Format::Multi { trace_id_64: true }));

    let debug = extract(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-flags", "1"),
    ]);
    assert_eq!(debug.sampling, Sampling::Debug);

    let decision_only = extract(&[("x-b3-sampled", "0")]);
    assert_eq!(decision_only.parent, None);
    assert_eq!(decision_only.sampling, Sampling::NotSampled);

    let half = extract(&[("x-b3-traceid", TRACE), ("x-b3-sampled", "1")]);
    assert_eq!(half, Incoming::default());
}

#[test]
fn traceparent_wins_over_b3_but_b3_format_is_kept() {
    let other = "11111111111111111111111111111111";
    let incoming = extract(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("b3", &format!("{other}-{SPAN}-0")),
    ]);
    assert_eq!(incoming.parent, parent(TRACE, SPAN));
    assert_eq!(incoming.sampling, Sampling::Sampled);
    assert_eq!(incoming.b3, Some(B3Format::Single { trace_id_64: false }));
}

fn outgoing(sampled: bool, debug: bool, parent: bool) -> Outgoing {
    Outgoing {
        trace_id: TraceId::from_hex(TRACE).expect("trace id"),
        span_id: SpanId::from_hex("1111111111111111").expect("span id"),
        parent_span_id: parent.then(|| SpanId::from_hex(SPAN).expect("span id")),
        sampled,
        debug,
    }
}

#[test]
fn inject_writes_traceparent_and_keeps_tracestate() {
    let mut map = headers(&[("tracestate", "vendor=x")]);
    outgoing(true, false, false).inject(&mut map, None);
    assert_eq!(
        text(&map, "traceparent").as_deref(),
        Some(format!("00-{TRACE}-1111111111111111-01").as_str())
    );
    assert_eq!(text(&map, "tracestate").as_deref(), Some("vendor=x"));
    assert_eq!(text(&map, "b3"), None);
    outgoing(false, false, false).inject(&mut map, None);
    assert!(text(&map, "traceparent").expect("written").ends_with("-00"));
}

#[test]
fn inject_answers_b3_single_in_kind() {
    let mut map = HeaderMap::new();
    outgoing(true, false, true).inject(&mut map, Some(B3Format::Single { trace_id_64: false }));
    assert_eq!(
        text(&map, "b3").as_deref(),
        Some(format!("{TRACE}-1111111111111111-1").as_str())
    );
    outgoing(true, true, true).inject(&mut map, Some(B3Format::Single { trace_id_64: false }));
    assert!(text(&map, "b3").expect("written").ends_with("-d"));
}

#[test]
fn narrow_b3_trace_id_stays_narrow_unless_wider_bits_are_set() {
    let mut narrow = outgoing(false, false, false);
    narrow.trace_id = TraceId::from_hex("a3ce929d0e0e4736").expect("trace id");
    let mut map = HeaderMap::new();
    narrow.inject(&mut map, Some(B3Format::Single { trace_id_64: true }));
    assert_eq!(
        text(&map, "b3").as_deref(),
        Some("a3ce929d0e0e4736-1111111111111111-0")
    );
    // A 128-bit id (from traceparent) is never cut to 64 bits.
    let mut map = HeaderMap::new();
    outgoing(false, false, false).inject(&mut map, Some(B3Format::Multi { trace_id_64: true }));
    assert_eq!(text(&map, "x-b3-traceid").as_deref(), Some(TRACE));
}

#[test]
fn inject_answers_b3_multi_in_kind() {
    let mut map = headers(&[
        ("x-b3-flags", "1"),
        ("x-b3-parentspanid", "2222222222222222"),
    ]);
    outgoing(true, false, true).inject(&mut map, Some(B3Format::Multi { trace_id_64: false }));
    assert_eq!(text(&map, "x-b3-traceid").as_deref(), Some(TRACE));
    assert_eq!(
        text(&map, "x-b3-spanid").as_deref(),
        Some("1111111111111111")
    );
    assert_eq!(text(&map, "x-b3-parentspanid").as_deref(), Some(SPAN));
    assert_eq!(text(&map, "x-b3-sampled").as_deref(), Some("1"));
    assert_eq!(text(&map, "x-b3-flags"), None);

    let mut map = headers(&[("x-b3-parentspanid", "2222222222222222")]);
    outgoing(true, true, false).inject(&mut map, Some(B3Format::Multi { trace_id_64: false }));
    assert_eq!(text(&map, "x-b3-flags").as_deref(), Some("1"));
    assert_eq!(text(&map, "x-b3-sampled"), None);
    assert_eq!(text(&map, "x-b3-parentspanid"), None);
}

#[test]
fn request_id_is_kept_or_made() {
    let mut map = headers(&[("x-request-id", "abc")]);
    assert_eq!(ensure_request_id(&mut map), "abc");
    let mut map = headers(&[("x-request-id", "")]);
    let made = ensure_request_id(&mut map);
    assert_eq!(map.get("x-request-id"), Some(&made));
    assert_ne!(made, "");
    // Unique per request: HPACK must not index it.
    assert!(map.get("x-request-id").is_some_and(|v| v.is_sensitive()));
}

#[test]
fn made_request_ids_are_uuid_v4() {
    let a = new_request_id();
    let b = new_request_id();
    assert_ne!(a, b);
    let a = a.to_str().expect("ascii");
    let groups: Vec<&str> = a.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{a}"
    );
    assert!(groups[2].starts_with('4'), "{a}");
    assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{a}");
    assert!(
        a.bytes()
            .all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    );
}

#[test]
fn the_context_is_found_among_few_headers_and_among_many() {
    let filler: Vec<(String, String)> = (0..SCAN_LIMIT + 4)
        .map(|i| (format!("x-filler-{i}"), "v".to_owned()))
        .collect();
    let traceparent = format!("00-{TRACE}-{SPAN}-01");
    let b3 = format!("{TRACE}-{SPAN}-1");
    let cases: [(&str, &str); 4] = [
        ("traceparent", &traceparent),
        ("b3", &b3),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "1"),
    ];
    for (name, value) in cases {
        for count in [0, 3, SCAN_LIMIT - 1, SCAN_LIMIT + 4] {
            let mut pairs: Vec<(&str, &str)> = filler[..count]
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            pairs.push((name, value));
            let found = extract(&pairs);
            assert_ne!(found, Incoming::default(), "{name} among {count} others");
        }
    }
    // Names that merely start like them are not read.
    assert_eq!(
        extract(&[("trace", "1"), ("b3x", "1"), ("x-b3-spanid", SPAN)]),
        Incoming::default()
    );
}
