use super::set_by_cargo_for_the_test;

#[test]
fn only_what_cargo_sets_for_the_test_is_left_out_of_the_build() {
    for name in [
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
        "CARGO_BIN_EXE_remora",
        "NEXTEST_RUN_ID",
    ] {
        assert!(set_by_cargo_for_the_test(name), "{name}");
    }
    for name in [
        "CARGO_HOME",
        "CARGO_BUILD_JOBS",
        "CARGO_NET_OFFLINE",
        "RUSTFLAGS",
        "PATH",
    ] {
        assert!(!set_by_cargo_for_the_test(name), "{name}");
    }
}
