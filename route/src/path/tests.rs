use super::*;

const ALL: [PathNormalization; 6] = [
    PathNormalization::NONE,
    PathNormalization::BASE,
    PathNormalization::MERGE_SLASHES,
    PathNormalization::DECODE_AND_MERGE_SLASHES,
    PathNormalization {
        mode: PathMode::Base,
        escaped_slashes: EscapedSlashes::Reject,
    },
    PathNormalization {
        mode: PathMode::None,
        escaped_slashes: EscapedSlashes::Unescape,
    },
];

fn normal(n: PathNormalization, target: &str) -> Result<String, PathError> {
    let mut uri: Uri = target.parse().expect("a valid request target");
    n.apply(&mut uri)?;
    Ok(uri.to_string())
}

fn base(target: &str) -> Result<String, PathError> {
    normal(PathNormalization::BASE, target)
}

#[test]
fn the_reported_bypasses_of_a_deny_on_admin_normalise_as_istio_base_does() {
    let cases = [
        ("/admin", Ok("/admin")),
        // BASE keeps `//` (MERGE_SLASHES merges it) and case.
        ("//admin", Ok("//admin")),
        ("/ADMIN", Ok("/ADMIN")),
        ("/%61dmin", Ok("/admin")),
        // BASE keeps an escaped slash, hex digits upper-cased.
        ("/%2fadmin", Ok("/%2Fadmin")),
        ("/./admin", Ok("/admin")),
        ("/api/../admin", Ok("/admin")),
        ("/api/%2e%2e/admin", Ok("/admin")),
        ("/api/%2E%2E/admin", Ok("/admin")),
        ("/api\\..\\admin", Ok("/admin")),
        ("/api/..;/admin", Err(PathError::DotSegmentWithParameters)),
    ];
    for (raw, want) in cases {
        assert_eq!(base(raw), want.map(str::to_owned), "{raw}");
    }
}

#[test]
fn merge_slashes_and_decode_close_the_slash_bypasses() {
    let merge = PathNormalization::MERGE_SLASHES;
    let decode = PathNormalization::DECODE_AND_MERGE_SLASHES;
    assert_eq!(normal(merge, "//admin").unwrap(), "/admin");
    assert_eq!(normal(merge, "/a///b//").unwrap(), "/a/b/");
    assert_eq!(normal(merge, "/%2fadmin").unwrap(), "/%2Fadmin");
    assert_eq!(normal(decode, "/%2fadmin").unwrap(), "/admin");
    assert_eq!(normal(decode, "/%5cadmin").unwrap(), "/admin");
    assert_eq!(normal(decode, "/api%2F..%2Fadmin").unwrap(), "/admin");
    assert_eq!(normal(decode, "/a%2F%2Fb").unwrap(), "/a/b");
}

#[test]
fn escaped_slashes_follow_their_own_setting() {
    let reject = PathNormalization {
        escaped_slashes: EscapedSlashes::Reject,
        ..PathNormalization::BASE
    };
    for (raw, kept) in [
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%5Cb", "/a%5Cb"),
        ("/a%5cb", "/a%5Cb"),
    ] {
        assert_eq!(normal(reject, raw), Err(PathError::EscapedSlash), "{raw}");
        assert_eq!(base(raw).unwrap(), kept, "{raw}");
    }
    // Under NONE only the escaped-slash setting and `%00` act.
    let none_unescape = PathNormalization {
        escaped_slashes: EscapedSlashes::Unescape,
        ..PathNormalization::NONE
    };
    assert_eq!(
        normal(none_unescape, "/a%2fb/../%61").unwrap(),
        "/a/b/../%61"
    );
    assert_eq!(normal(none_unescape, "/a%5Cb").unwrap(), "/a\\b");
    assert_eq!(
        normal(PathNormalization::NONE, "/a%2fb/../%61").unwrap(),
        "/a%2fb/../%61"
    );
}

#[test]
fn unreserved_characters_are_decoded_and_other_encodings_kept_upper_case() {
    assert_eq!(
        base("/%41%5a%61%7a%30%39%2d%2e%5f%7e").unwrap(),
        "/AZaz09-._~"
    );
    assert_eq!(base("/a%20b%3b%3F%25").unwrap(), "/a%20b%3B%3F%25");
    // Decoding happens once: `%2561` is `%25` then `61`.
    assert_eq!(base("/%2561dmin").unwrap(), "/%2561dmin");
    // Non-ASCII text passes through.
    assert_eq!(base("/caf%C3%A9/é").unwrap(), "/caf%C3%A9/é");
}

#[test]
fn dot_segments_resolve_as_rfc_3986_says() {
    let cases = [
        ("/a/b/c/./../../g", "/a/g"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/..", "/"),
        ("/.", "/"),
        ("/a/.b/..c/...", "/a/.b/..c/..."),
        ("/a//../b", "/a/b"),
        ("/a/b;c=1/../d", "/a/d"),
    ];
    for (raw, want) in cases {
        assert_eq!(base(raw).unwrap(), want, "{raw}");
    }
}

#[test]
fn paths_that_cannot_be_normalised_safely_are_refused() {
    let cases = [
        ("/..", PathError::AboveRoot),
        ("/a/../..", PathError::AboveRoot),
        ("/a/%2e%2e/%2e%2e/b", PathError::AboveRoot),
        ("/a%00b", PathError::EncodedNul),
        ("/a%zzb", PathError::InvalidPercentEncoding),
        ("/a%2", PathError::InvalidPercentEncoding),
        ("/a%", PathError::InvalidPercentEncoding),
        ("/api/.;x=1/admin", PathError::DotSegmentWithParameters),
        ("/api/%2e%2e;/admin", PathError::DotSegmentWithParameters),
        ("/api/..;jsessionid=1", PathError::DotSegmentWithParameters),
    ];
    for (raw, want) in cases {
        assert_eq!(base(raw), Err(want), "{raw}");
    }
    // `%00` is refused whatever the setting (Istio: always 400).
    for n in ALL {
        assert_eq!(normal(n, "/a%00"), Err(PathError::EncodedNul), "{n:?}");
    }
    // NONE forwards what it cannot read.
    assert_eq!(
        normal(PathNormalization::NONE, "/a%zz/..").unwrap(),
        "/a%zz/.."
    );
}

#[test]
fn the_query_is_never_touched() {
    assert_eq!(
        base("/api/../x?next=/../admin&q=%2e%2E%2f").unwrap(),
        "/x?next=/../admin&q=%2e%2E%2f"
    );
    assert_eq!(base("/a?").unwrap(), "/a?");
    assert_eq!(base("/a?b?c").unwrap(), "/a?b?c");
    // Only the path is checked: a `%00` in the query is the app's business.
    assert_eq!(base("/a?x=%00").unwrap(), "/a?x=%00");
}

#[test]
fn asterisk_form_absolute_form_and_an_empty_path() {
    assert_eq!(base("*").unwrap(), "*");
    assert_eq!(
        base("http://reviews:9080/api/../admin?x=1").unwrap(),
        "http://reviews:9080/admin?x=1"
    );
    assert_eq!(base("http://reviews").unwrap(), "http://reviews/");
    // A target of only a query (`Uri` parsing refuses it, parts do not) is
    // `/` with that query.
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(PathAndQuery::from_static("?x=1"));
    let mut uri = Uri::from_parts(parts).unwrap();
    PathNormalization::BASE.apply(&mut uri).unwrap();
    assert_eq!(uri, "/?x=1");
    assert_eq!(PathNormalization::BASE.normalize("").unwrap(), "/");
    assert_eq!(
        PathNormalization::BASE.normalize("admin"),
        Err(PathError::NotAPath)
    );
}

#[test]
fn a_path_with_nothing_to_change_is_not_copied() {
    for raw in [
        "/",
        "/api/v1/items/42",
        "/a%20b/%C3%A9?q=%2e%2e",
        "/.well-known/x",
        "/a/..b/c.",
        "/a/",
        "/a//b",
    ] {
        let mut uri: Uri = raw.parse().unwrap();
        let before = uri.path_and_query().unwrap().as_str().as_ptr();
        PathNormalization::BASE.apply(&mut uri).unwrap();
        assert_eq!(uri, raw);
        assert_eq!(
            uri.path_and_query().unwrap().as_str().as_ptr(),
            before,
            "{raw} was rebuilt"
        );
    }
}

/// Every path of up to four pieces from an alphabet of the tricky ones,
/// under every setting: the fast check never passes a path that
/// normalisation would change or refuse, and normalising is idempotent.
#[test]
fn the_fast_check_agrees_with_normalisation_and_normalising_twice_changes_nothing() {
    const PIECES: [&str; 14] = [
        "/", ".", "..", "a", "%2e", "%2E", "%2f", "%5C", "%41", "%4a", "\\", ";", "%", "%00",
    ];
    let mut paths = vec![String::new()];
    for _ in 0..4 {
        let longer: Vec<String> = paths
            .iter()
            .flat_map(|p| PIECES.iter().map(move |piece| format!("{p}{piece}")))
            .collect();
        paths.extend(longer);
    }
    let mut checked = 0;
    for n in ALL {
        for tail in &paths {
            let path = format!("/{tail}");
            let result = n.normalize(&path);
            if n.is_normal(path.as_bytes()) {
                assert_eq!(result.as_deref(), Ok(path.as_str()), "{n:?} {path}");
            }
            if let Ok(once) = result {
                assert!(n.is_normal(once.as_bytes()), "{n:?} {path} → {once}");
                assert_eq!(n.normalize(&once).as_deref(), Ok(once.as_str()));
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000, "only {checked} paths normalised");
}
