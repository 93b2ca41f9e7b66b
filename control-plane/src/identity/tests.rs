use remora_certs::{TrustDomain, WorkloadKey};

use super::*;
use crate::token::{KEY_LEN, TokenIdentity};

fn service(max: Duration) -> (IdentityService, TokenKey) {
    let ca = Ca::generate(TrustDomain::new("cluster.local").expect("td")).expect("ca");
    let service = IdentityService::new(
        Arc::new(ca),
        TokenKey::from_bytes(&[1; KEY_LEN]),
        max,
        15012,
        Metrics::new(),
    );
    (service, TokenKey::from_bytes(&[1; KEY_LEN]))
}

fn request(csr_pem: String, token: String, secs: u64) -> SignRequest {
    SignRequest {
        csr_pem,
        token,
        requested_lifetime_seconds: secs,
    }
}

#[test]
fn a_single_use_token_signs_once_and_a_renewal_with_its_certificate_still_works() {
    let dir = tempfile::tempdir().expect("dir");
    let (service, tokens) = service(DEFAULT_CERT_LIFETIME);
    let used = UsedTokens::load(dir.path(), 0).expect("used tokens");
    let service = service.with_used_tokens(used);
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").expect("id");
    let token = tokens.issue(
        &TokenIdentity::new("default", "reviews")
            .expect("id")
            .expiring_after(SystemTime::now(), Duration::from_secs(600))
            .single_use()
            .expect("single use"),
    );
    let csr = || WorkloadKey::generate().expect("key").csr(&id).expect("csr");
    // A refused CSR does not use the token up.
    assert!(
        service
            .sign_request(&request("junk".to_owned(), token.clone(), 0), None)
            .is_err()
    );
    service
        .sign_request(&request(csr(), token.clone(), 0), None)
        .expect("first use");
    let err = service
        .sign_request(&request(csr(), token.clone(), 0), None)
        .expect_err("second use");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.to_string().contains("was already used"), "{err}");
    // The renewal of the proxy that used it: token and certificate.
    service
        .sign_request(&request(csr(), token, 0), Some(&id))
        .expect("renewal");
}

#[test]
fn requested_lifetimes_are_capped_at_the_maximum() {
    let (service, _) = service(Duration::from_secs(3600));
    assert_eq!(service.lifetime(0), Duration::from_secs(3600));
    assert_eq!(service.lifetime(60), Duration::from_secs(60));
    assert_eq!(service.lifetime(7200), Duration::from_secs(3600));
}

#[test]
fn a_signed_certificate_is_counted_and_lives_as_long_as_asked() {
    let (service, tokens) = service(DEFAULT_CERT_LIFETIME);
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").expect("id");
    let key = WorkloadKey::generate().expect("key");
    let token = tokens.issue(&TokenIdentity::new("default", "reviews").expect("id"));
    let before = SystemTime::now();
    let response = service
        .sign_request(&request(key.csr(&id).expect("csr"), token, 600), None)
        .expect("signed");
    assert_eq!(response.spiffe_id, id.as_str());
    assert_eq!(response.tls_port, 15012, "where to renew over TLS");
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(response.not_after_unix as u64);
    let lifetime = not_after.duration_since(before).expect("future");
    assert!(lifetime <= Duration::from_secs(600), "{lifetime:?}");
    assert!(lifetime >= Duration::from_secs(598), "{lifetime:?}");
    assert!(
        service
            .inner
            .metrics
            .encode()
            .contains("remora_certificates_signed_total 1"),
        "{}",
        service.inner.metrics.encode()
    );
}

#[test]
fn without_a_token_the_client_certificate_identity_is_used() {
    let (service, _) = service(DEFAULT_CERT_LIFETIME);
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").expect("id");
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr(&id).expect("csr");
    let response = service
        .sign_request(&request(csr.clone(), String::new(), 0), Some(&id))
        .expect("signed");
    assert_eq!(response.spiffe_id, id.as_str());
    let err = service
        .sign_request(&request(csr, String::new(), 0), None)
        .expect_err("no credentials");
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[test]
fn a_bad_token_is_refused_even_with_a_client_certificate() {
    let (service, _) = service(DEFAULT_CERT_LIFETIME);
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").expect("id");
    let key = WorkloadKey::generate().expect("key");
    let other = TokenKey::from_bytes(&[2; KEY_LEN])
        .issue(&TokenIdentity::new("default", "reviews").expect("id"));
    let err = service
        .sign_request(&request(key.csr(&id).expect("csr"), other, 0), Some(&id))
        .expect_err("forged");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = service
        .sign_request(
            &request(key.csr(&id).expect("csr"), "garbage".to_owned(), 0),
            Some(&id),
        )
        .expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[test]
fn a_csr_that_is_not_a_csr_is_an_invalid_argument() {
    let (service, tokens) = service(DEFAULT_CERT_LIFETIME);
    let token = tokens.issue(&TokenIdentity::new("default", "reviews").expect("id"));
    let err = service
        .sign_request(&request("hello".to_owned(), token, 0), None)
        .expect_err("not a CSR");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}
