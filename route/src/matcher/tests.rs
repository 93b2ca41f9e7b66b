use super::*;
use pb::string_match::Kind;

fn sm(kind: Kind) -> Option<pb::StringMatch> {
    Some(pb::StringMatch { kind: Some(kind) })
}

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn uri_exact_prefix_regex() {
    let exact = RequestMatch::compile(
        &pb::RouteMatch {
            uri: sm(Kind::Exact("/a".into())),
            ..Default::default()
        },
        "m",
    )
    .unwrap();
    assert!(exact.matches(&parts("GET", "/a?x=1", &[])));
    assert!(!exact.matches(&parts("GET", "/ab", &[])));
    let prefix = RequestMatch::compile(
        &pb::RouteMatch {
            uri: sm(Kind::Prefix("/api/".into())),
            ..Default::default()
        },
        "m",
    )
    .unwrap();
    assert!(prefix.matches(&parts("GET", "/api/x", &[])));
    assert!(!prefix.matches(&parts("GET", "/apix", &[])));
    let regex = RequestMatch::compile(
        &pb::RouteMatch {
            uri: sm(Kind::Regex("/v[0-9]+/.*".into())),
            ..Default::default()
        },
        "m",
    )
    .unwrap();
    assert!(regex.matches(&parts("GET", "/v2/items", &[])));
    assert!(
        !regex.matches(&parts("GET", "/x/v2/items", &[])),
        "regex must match the whole path"
    );
}

#[test]
fn ignore_uri_case_folds_path_and_pattern() {
    let m = pb::RouteMatch {
        uri: sm(Kind::Prefix("/Api".into())),
        ignore_uri_case: true,
        ..Default::default()
    };
    let m = RequestMatch::compile(&m, "m").unwrap();
    assert!(m.matches(&parts("GET", "/API/x", &[])));
    assert!(m.matches(&parts("GET", "/api/x", &[])));
}

#[test]
fn headers_present_exact_prefix_regex_are_anded() {
    let m = pb::RouteMatch {
        headers: vec![
            pb::KeyMatch {
                name: "end-user".into(),
                value: sm(Kind::Exact("jason".into())),
            },
            pb::KeyMatch {
                name: "x-present".into(),
                value: None,
            },
            pb::KeyMatch {
                name: "x-prefix".into(),
                value: sm(Kind::Prefix("ab".into())),
            },
            pb::KeyMatch {
                name: "x-re".into(),
                value: sm(Kind::Regex("[0-9]+".into())),
            },
        ],
        ..Default::default()
    };
    let m = RequestMatch::compile(&m, "m").unwrap();
    let all = [
        ("end-user", "jason"),
        ("x-present", ""),
        ("x-prefix", "abc"),
        ("x-re", "42"),
    ];
    assert!(m.matches(&parts("GET", "/", &all)));
    for skip in 0..all.len() {
        let some: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, h)| *h)
            .collect();
        assert!(
            !m.matches(&parts("GET", "/", &some)),
            "missing header {skip} must not match"
        );
    }
    assert!(!m.matches(&parts(
        "GET",
        "/",
        &[
            ("end-user", "jason"),
            ("x-present", ""),
            ("x-prefix", "abc"),
            ("x-re", "4a")
        ]
    )));
}

#[test]
fn method_authority_and_query() {
    let m = pb::RouteMatch {
        method: sm(Kind::Exact("POST".into())),
        authority: sm(Kind::Prefix("reviews".into())),
        query_params: vec![
            pb::KeyMatch {
                name: "debug".into(),
                value: sm(Kind::Exact("1".into())),
            },
            pb::KeyMatch {
                name: "trace".into(),
                value: None,
            },
        ],
        ..Default::default()
    };
    let m = RequestMatch::compile(&m, "m").unwrap();
    assert!(m.matches(&parts(
        "POST",
        "/?debug=1&trace",
        &[("host", "reviews:9080")]
    )));
    assert!(!m.matches(&parts("GET", "/?debug=1&trace", &[("host", "reviews")])));
    assert!(!m.matches(&parts("POST", "/?debug=2&trace", &[("host", "reviews")])));
    assert!(!m.matches(&parts("POST", "/?debug=1", &[("host", "reviews")])));
    assert!(!m.matches(&parts("POST", "/?debug=1&trace", &[("host", "ratings")])));
}

#[test]
fn bad_regex_is_an_error_naming_the_field() {
    let m = pb::RouteMatch {
        uri: sm(Kind::Regex("(".into())),
        ..Default::default()
    };
    let err = RequestMatch::compile(&m, "route r match[0]").unwrap_err();
    assert!(
        matches!(err, ConfigError::Regex { ref field, .. } if field == "route r match[0].uri"),
        "{err}"
    );
}
