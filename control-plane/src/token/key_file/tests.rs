use std::time::SystemTime;

use super::*;
use crate::token::TokenIdentity;

#[test]
fn the_key_is_made_once_with_mode_0600_and_reused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let first = TokenKey::load_or_create(&data).expect("create");
    assert!(first.was_created());
    let path = data.join(TOKEN_KEY_FILE);
    assert_eq!(fs::read(&path).expect("read").len(), KEY_LEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&data).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let token = first.issue(&TokenIdentity::new("default", "reviews").expect("id"));
    let again = TokenKey::load_or_create(&data).expect("load");
    assert!(!again.was_created());
    assert!(again.verify(&token, SystemTime::now()).is_ok());
    let leftovers: Vec<_> = fs::read_dir(&data).expect("ls").collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

#[test]
fn concurrent_first_uses_agree_on_one_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys: Vec<TokenKey> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| TokenKey::load_or_create(dir.path()).expect("key")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let token = keys[0].issue(&TokenIdentity::new("ns", "sa").expect("id"));
    for key in &keys {
        assert!(key.verify(&token, SystemTime::now()).is_ok());
    }
}

#[test]
fn a_key_file_of_the_wrong_length_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join(TOKEN_KEY_FILE), b"short").expect("write");
    let err = TokenKey::load_or_create(dir.path()).expect_err("short key");
    let text = err.to_string();
    assert!(text.contains(TOKEN_KEY_FILE), "{text}");
    assert!(text.contains("holds 5 bytes, not 32"), "{text}");
}
