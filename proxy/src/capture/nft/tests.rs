use super::*;

#[test]
fn a_diagnostic_fits_on_one_line() {
    let stderr = "/dev/stdin:3:1-5: Error: Could not process rule: Operation not permitted\ntable inet remora\n^^^^^\n";
    assert_eq!(
        one_line(stderr),
        "/dev/stdin:3:1-5: Error: Could not process rule: Operation not permitted | table inet remora"
    );
    assert_eq!(one_line(""), "(no message)");
}

#[test]
fn an_explicit_nft_is_taken_as_given() {
    assert_eq!(
        locate(Some(Path::new("/opt/nft"))).expect("explicit"),
        PathBuf::from("/opt/nft")
    );
}
