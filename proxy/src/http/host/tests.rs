use http::Request;

use super::*;

fn parts(target: &str, version: Version, hosts: &[&str]) -> Parts {
    let mut req = Request::get(target).version(version);
    for host in hosts {
        req = req.header(header::HOST, *host);
    }
    req.body(()).unwrap().into_parts().0
}

#[test]
fn one_host_that_agrees_with_the_target_passes() {
    for (target, hosts) in [
        ("/x", &["reviews"][..]),
        ("/x", &["reviews:9080"][..]),
        ("/x", &["[::1]:80"][..]),
        ("http://reviews/x", &["reviews"][..]),
        ("http://Reviews:9080/x", &["reviews:9080"][..]),
    ] {
        assert_eq!(
            check_host(&parts(target, Version::HTTP_11, hosts)),
            Ok(()),
            "{target} {hosts:?}"
        );
    }
    // h2 needs no Host: `:authority` is the URI's.
    assert_eq!(
        check_host(&parts("http://reviews/x", Version::HTTP_2, &[])),
        Ok(())
    );
    // HTTP/1.0 may go without.
    assert_eq!(check_host(&parts("/x", Version::HTTP_10, &[])), Ok(()));
}

#[test]
fn two_hosts_are_refused() {
    let p = parts("/x", Version::HTTP_11, &["reviews", "admin.reviews"]);
    assert_eq!(check_host(&p), Err(HostError::Duplicate));
    let p = parts("/x", Version::HTTP_11, &["reviews", "reviews"]);
    assert_eq!(check_host(&p), Err(HostError::Duplicate));
}

#[test]
fn a_host_that_disagrees_with_the_absolute_form_or_authority_is_refused() {
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let p = parts("http://admin.reviews/x", version, &["reviews"]);
        assert_eq!(
            check_host(&p),
            Err(HostError::Mismatch {
                host: "reviews".to_owned(),
                authority: "admin.reviews".to_owned(),
            })
        );
    }
    let p = parts("http://reviews:9080/x", Version::HTTP_11, &["reviews"]);
    assert!(matches!(check_host(&p), Err(HostError::Mismatch { .. })));
    let p = parts("http://reviews/x", Version::HTTP_11, &[""]);
    assert!(matches!(check_host(&p), Err(HostError::Mismatch { .. })));
}

#[test]
fn a_missing_or_malformed_host_is_refused() {
    assert_eq!(
        check_host(&parts("/x", Version::HTTP_11, &[])),
        Err(HostError::Missing)
    );
    assert_eq!(
        check_host(&parts("http://reviews/x", Version::HTTP_11, &[])),
        Err(HostError::Missing)
    );
    for bad in [
        "user@reviews",
        "reviews/x",
        "reviews:80x",
        "re views",
        "[::1",
        "[::1]x",
        "[]",
        "reviews?",
        "reviews#",
        "a\\b",
    ] {
        assert_eq!(
            check_host(&parts("/x", Version::HTTP_11, &[bad])),
            Err(HostError::Invalid),
            "{bad}"
        );
    }
}
