use super::*;

/// The 32-byte private scalar inside a PKCS#8 ECDSA key: the OCTET STRING that follows
/// ECPrivateKey's `version 1` (`02 01 01 04 20`).
fn private_scalar(pkcs8: &[u8]) -> &[u8] {
    let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("ECPrivateKey in PKCS#8")
        + marker.len();
    &pkcs8[at..at + 32]
}

#[test]
fn csr_carries_the_public_key_but_never_the_private_key() {
    let key = WorkloadKey::generate().unwrap();
    let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/cart").unwrap();
    let csr_pem = key.csr(&id).unwrap();
    assert!(csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(!csr_pem.contains("PRIVATE KEY"));
    let csr_der = encoding::decode_one(&csr_pem, "CSR", encoding::CERTIFICATE_REQUEST).unwrap();

    let pkcs8 = key.key.serialize_der();
    let secret = private_scalar(&pkcs8);
    assert!(
        !csr_der.windows(secret.len()).any(|w| w == secret),
        "the private scalar must not be in the CSR"
    );
    let public = key.key.public_key_raw();
    assert!(
        csr_der.windows(public.len()).any(|w| w == public),
        "the public key is in the CSR"
    );
}

#[test]
fn certify_refuses_a_certificate_issued_for_another_key() {
    let ca = crate::Ca::generate(crate::TrustDomain::new("cluster.local").unwrap()).unwrap();
    let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/cart").unwrap();
    let ours = WorkloadKey::generate().unwrap();
    let theirs = WorkloadKey::generate().unwrap();
    let signed = ca
        .sign_csr(
            theirs.csr(&id).unwrap().as_bytes(),
            &id,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let error = ours.certify(&signed.cert_chain_pem()).unwrap_err();
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");

    let svid = theirs.certify(&signed.cert_chain_pem()).unwrap();
    assert_eq!(svid.id(), &id);
    assert_eq!(svid.not_after(), signed.not_after());
    assert!(svid.renew_at() > svid.not_before() && svid.renew_at() < svid.not_after());
}

#[test]
fn a_short_lived_svid_renews_half_way_through_its_use_not_before_it_was_issued() {
    // The CA backdates not_before by a minute; a 10 s certificate must still renew about 5 s
    // after it arrived, not at once.
    let ca = crate::Ca::generate(crate::TrustDomain::new("cluster.local").unwrap()).unwrap();
    let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/cart").unwrap();
    let key = WorkloadKey::generate().unwrap();
    let signed = ca
        .sign_csr(
            key.csr(&id).unwrap().as_bytes(),
            &id,
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    let before = std::time::SystemTime::now();
    let svid = key.certify(&signed.cert_chain_pem()).unwrap();
    assert!(svid.not_before() + std::time::Duration::from_secs(30) < before);
    let renew = svid.renew_at();
    // not_after is truncated to whole seconds: allow for it.
    assert!(
        renew >= before + std::time::Duration::from_secs(3),
        "renews too early"
    );
    assert!(renew < svid.not_after(), "renews after expiry");
}
