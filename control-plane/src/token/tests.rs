use super::*;

fn key() -> TokenKey {
    TokenKey::from_bytes(&[7; KEY_LEN])
}

fn identity(ns: &str, sa: &str) -> TokenIdentity {
    TokenIdentity::new(ns, sa).expect("valid identity")
}

#[test]
fn issued_token_has_the_documented_shape_and_verifies() {
    let token = key().issue(&identity("default", "reviews"));
    let (text, mac) = token.rsplit_once('.').expect("a MAC");
    assert_eq!(text, "v1.default.reviews");
    assert_eq!(mac.len(), 43, "32 bytes, base64url without padding");
    assert!(!mac.contains(['=', '+', '/']));
    let verified = key().verify(&token, SystemTime::now()).expect("valid");
    assert_eq!(verified, identity("default", "reviews"));
    assert_eq!(verified.expires_at(), None);
    let td = TrustDomain::new("cluster.local").expect("td");
    assert_eq!(
        verified.spiffe_id(&td).expect("id").as_str(),
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
}

#[test]
fn surrounding_whitespace_is_ignored() {
    let token = key().issue(&identity("default", "reviews"));
    assert!(
        key()
            .verify(&format!(" {token}\n"), SystemTime::now())
            .is_ok()
    );
}

#[test]
fn a_flipped_mac_byte_is_a_bad_signature() {
    let token = key().issue(&identity("default", "reviews"));
    let (text, mac) = token.rsplit_once('.').expect("a MAC");
    let mut bytes = URL_SAFE_NO_PAD.decode(mac).expect("base64");
    bytes[0] ^= 1;
    let forged = format!("{text}.{}", URL_SAFE_NO_PAD.encode(bytes));
    assert_eq!(
        key().verify(&forged, SystemTime::now()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn a_token_for_another_identity_with_a_copied_mac_is_a_bad_signature() {
    let token = key().issue(&identity("default", "reviews"));
    let forged = token.replace(".reviews.", ".ratings.");
    assert_eq!(
        key().verify(&forged, SystemTime::now()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn a_token_from_another_key_is_a_bad_signature() {
    let token = TokenKey::from_bytes(&[8; KEY_LEN]).issue(&identity("default", "reviews"));
    assert_eq!(
        key().verify(&token, SystemTime::now()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn an_expiring_token_verifies_until_its_expiry_and_not_after() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let id = identity("default", "reviews").expiring_after(now, Duration::from_secs(60));
    let token = key().issue(&id);
    assert!(token.starts_with("v1.default.reviews.1000060."), "{token}");
    let verified = key().verify(&token, now).expect("valid");
    assert_eq!(
        verified.expires_at(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_060))
    );
    let later = now + Duration::from_secs(60);
    let err = key().verify(&token, later).expect_err("expired");
    assert_eq!(
        err,
        TokenError::Expired {
            expired_unix: 1_000_060,
            identity: "namespace \"default\", service account \"reviews\"".to_owned()
        }
    );
    assert!(!err.is_malformed());
}

#[test]
fn removing_the_expiry_breaks_the_signature() {
    let now = SystemTime::now();
    let token =
        key().issue(&identity("default", "reviews").expiring_after(now, Duration::from_secs(60)));
    let mut fields: Vec<&str> = token.split('.').collect();
    fields.remove(3);
    assert_eq!(
        key().verify(&fields.join("."), now),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn malformed_tokens_say_what_is_wrong() {
    let cases = [
        ("", "it is empty"),
        (
            "v2.default.reviews.AAAA",
            "it starts with \"v2\", not \"v1\"",
        ),
        ("hello", "it starts with \"hello\", not \"v1\""),
        ("v1.default.AAAA", "it has 3 '.'-separated fields"),
        ("v1.a.b.c.d.e.f", "it has 7 '.'-separated fields"),
        ("v1.default.reviews.!!!", "the MAC is not base64url"),
        ("v1.default.reviews.AAAA", "the MAC is 3 bytes, not 32"),
    ];
    for (token, expected) in cases {
        let err = key().verify(token, SystemTime::now()).expect_err(token);
        assert!(err.is_malformed(), "{token}: {err}");
        assert!(err.to_string().contains(expected), "{token}: {err}");
    }
    let mac = URL_SAFE_NO_PAD.encode([0u8; 32]);
    let err = key()
        .verify(&format!("v1.default.reviews.soon.{mac}"), SystemTime::now())
        .expect_err("bad expiry");
    assert!(
        err.to_string()
            .contains("the expiry \"soon\" is not a number"),
        "{err}"
    );
    let err = key()
        .verify(&format!("v1.default.re*views.{mac}"), SystemTime::now())
        .expect_err("bad sa");
    assert!(err.is_malformed());
    assert!(
        err.to_string()
            .contains("invalid service account \"re*views\""),
        "{err}"
    );
}

#[test]
fn namespace_and_service_account_must_be_plain_segments() {
    let err = TokenIdentity::new("", "reviews").expect_err("empty");
    assert_eq!(err.to_string(), "invalid namespace \"\": it is empty");
    let err = TokenIdentity::new("default", "my.sa").expect_err("dot");
    assert_eq!(
        err.to_string(),
        "invalid service account \"my.sa\": character '.' at byte 2 is not allowed \
             ('.' separates a token's fields); use A-Z, a-z, 0-9, '-' and '_'"
    );
    let err = TokenIdentity::new("a/b", "reviews").expect_err("slash");
    assert!(err.to_string().contains("character '/' at byte 1"), "{err}");
    let long = "a".repeat(254);
    assert!(TokenIdentity::new(&long, "sa").is_err());
    assert!(TokenIdentity::new("Team_A-1", "Svc_2-b").is_ok());
}

#[test]
fn a_single_use_token_carries_its_id_under_the_mac_and_needs_an_expiry() {
    let now = SystemTime::now();
    assert_eq!(
        identity("default", "reviews").single_use(),
        Err(TokenError::SingleUseNeedsExpiry)
    );
    let id = identity("default", "reviews")
        .expiring_after(now, Duration::from_secs(60))
        .single_use()
        .expect("single use");
    let token = key().issue(&id);
    assert_eq!(token.split('.').count(), 6, "{token}");
    let verified = key().verify(&token, now).expect("valid");
    assert_eq!(verified.single_use_id(), id.single_use_id());
    assert_eq!(verified.single_use_id().map(str::len), Some(22));
    // Without the ID it is another token, whose MAC does not match.
    let mut fields: Vec<&str> = token.split('.').collect();
    fields.remove(4);
    assert_eq!(
        key().verify(&fields.join("."), now),
        Err(TokenError::BadSignature)
    );
    let other = identity("default", "reviews")
        .expiring_after(now, Duration::from_secs(60))
        .single_use()
        .expect("single use");
    assert_ne!(other.single_use_id(), id.single_use_id());
}

#[test]
fn debug_does_not_show_the_key() {
    assert_eq!(format!("{:?}", key()), "TokenKey { .. }");
}
