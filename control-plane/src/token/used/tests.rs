use super::*;

#[test]
fn a_used_token_is_refused_again_also_after_a_reload_until_it_expires() {
    let dir = tempfile::tempdir().expect("dir");
    let used = UsedTokens::load(dir.path(), 100).expect("load");
    used.claim("abc", 200, 100).expect("first use");
    assert!(matches!(
        used.claim("abc", 200, 150),
        Err(UsedTokenError::AlreadyUsed { .. })
    ));
    used.claim("def", 300, 150).expect("another token");
    let reloaded = UsedTokens::load(dir.path(), 150).expect("reload");
    assert_eq!(reloaded.len(), 2);
    assert!(reloaded.claim("abc", 200, 160).is_err());
    // Expired: forgotten (the token itself is refused as expired by then).
    let later = UsedTokens::load(dir.path(), 250).expect("reload");
    assert_eq!(later.len(), 1);
    let text = fs::read_to_string(dir.path().join(USED_TOKENS_FILE)).expect("file");
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn a_corrupt_record_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().expect("dir");
    fs::write(dir.path().join(USED_TOKENS_FILE), "100 abc\nhello\n").expect("write");
    let err = UsedTokens::load(dir.path(), 0).expect_err("corrupt");
    assert!(err.to_string().contains("line 2"), "{err}");
}
