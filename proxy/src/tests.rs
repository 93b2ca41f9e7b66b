use super::*;

#[test]
fn the_pod_name_comes_from_the_flag_the_hostname_in_a_container_or_the_pid() {
    let args = |extra: &[&str]| {
        let mut argv = vec!["remora-proxy", "--service", "reviews"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("args")
    };
    assert_eq!(
        pod_name(&args(&["--pod-name", "reviews-v1-7d4b9-x2x"])),
        "reviews-v1-7d4b9-x2x"
    );
    assert_eq!(
        default_pod_name("reviews", 1, Some("3f2a9c01bd7e\n")),
        "reviews-3f2a9c01bd7e"
    );
    assert_eq!(default_pod_name("reviews", 4242, None), "reviews-4242");
    assert_eq!(default_pod_name("reviews", 1, Some("")), "reviews-1");
    for bad in ["", "Reviews", "a b", "-x", "x.", "x/y"] {
        assert!(
            Args::try_parse_from(["remora-proxy", "--service", "s", "--pod-name", bad]).is_err(),
            "{bad:?}"
        );
    }
}
