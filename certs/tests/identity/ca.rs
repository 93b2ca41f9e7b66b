//! The CA: generation, files in the data directory, operator-supplied CAs and CSR signing.

use std::time::{Duration, SystemTime};

use remora_certs::{
    AllowedPeers, CA_CERT_FILE, CA_CHAIN_FILE, CA_KEY_FILE, Ca, CaError, SharedTrustBundle,
    SpiffeId, SpiffeServerVerifier, TrustBundle, TrustDomain, WorkloadKey,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::mint::{TestCa, now, unix};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn td() -> TrustDomain {
    TrustDomain::new("cluster.local").unwrap()
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::workload(&td(), "default", sa).unwrap()
}

/// Verifies a leaf and its chain the way a client proxy would.
fn verify(
    bundle_pem: &str,
    leaf: &CertificateDer<'_>,
    chain: &[CertificateDer<'_>],
    allowed: &SpiffeId,
) {
    let bundle = SharedTrustBundle::new(TrustBundle::from_pem(bundle_pem).unwrap());
    let verifier = SpiffeServerVerifier::new(bundle, AllowedPeers::ids([allowed.clone()]));
    let name = ServerName::try_from("10.0.0.1").unwrap();
    verifier
        .verify_server_cert(leaf, chain, &name, &[], unix(now()))
        .unwrap();
}

#[test]
fn generated_root_is_a_p256_ca_that_may_sign_certificates() {
    let ca = Ca::generate(td()).unwrap();
    let (_, root) = X509Certificate::from_der(ca.root_der()).unwrap();
    assert!(root.is_ca());
    let usage = root.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign());
    assert_eq!(root.subject(), root.issuer());
    let lifetime = root.validity().not_after.timestamp() - root.validity().not_before.timestamp();
    assert!(
        lifetime > 9 * 365 * 24 * 3600,
        "about ten years: {lifetime}s"
    );
    assert_eq!(
        root.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "an EC key"
    );
    assert_eq!(ca.trust_bundle_pem(), ca.cert_pem());
}

#[test]
fn signed_leaf_carries_only_the_spiffe_id_and_mesh_usages() {
    let ca = Ca::generate(td()).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let before = SystemTime::now();
    let signed = ca
        .sign_csr(key.csr(&id("cart")).unwrap().as_bytes(), &id("cart"), DAY)
        .unwrap();
    assert_eq!(signed.id(), &id("cart"));
    assert!(
        signed.chain_der().is_empty(),
        "a root CA sends no intermediates"
    );
    assert_eq!(signed.cert_chain_pem(), signed.leaf_pem());

    let (_, leaf) = X509Certificate::from_der(signed.leaf_der()).unwrap();
    let sans: Vec<_> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .clone();
    assert_eq!(
        sans,
        vec![GeneralName::URI(
            "spiffe://cluster.local/ns/default/sa/cart"
        )]
    );
    assert!(!leaf.is_ca());
    let bc = leaf.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca);
    let usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && !usage.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let before_secs = before
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (before_secs - 61..=before_secs - 59).contains(&not_before),
        "one minute of skew"
    );
    assert!((before_secs + 86_399..=before_secs + 86_401).contains(&not_after));
    assert_eq!(
        signed
            .not_after()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        not_after
    );

    verify(&ca.trust_bundle_pem(), signed.leaf_der(), &[], &id("cart"));
}

#[test]
fn csr_in_der_form_is_accepted() {
    let ca = Ca::generate(td()).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let csr_pem = key.csr(&id("cart")).unwrap();
    let der = pem::parse(&csr_pem).unwrap().into_contents();
    let signed = ca.sign_csr(&der, &id("cart"), DAY).unwrap();
    assert_eq!(signed.id(), &id("cart"));
}

#[test]
fn csr_for_another_identity_is_refused_naming_requested_and_allowed() {
    let ca = Ca::generate(td()).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&id("admin")).unwrap();
    let error = ca.sign_csr(csr.as_bytes(), &id("cart"), DAY).unwrap_err();
    match &error {
        CaError::IdentityMismatch {
            requested,
            requested_total,
            allowed,
            ..
        } => {
            assert_eq!(requested, &vec![id("admin").to_string()]);
            assert_eq!(*requested_total, 1);
            assert_eq!(allowed, &id("cart"));
        }
        other => panic!("unexpected error: {other}"),
    }
    assert_eq!(
        error.to_string(),
        "the CSR requests URI SANs [spiffe://cluster.local/ns/default/sa/admin] but only \
         spiffe://cluster.local/ns/default/sa/cart may be issued to this caller"
    );
}

#[test]
fn csr_with_extra_or_missing_sans_is_refused() {
    let ca = Ca::generate(td()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();

    let mut params = rcgen::CertificateParams::new(vec!["cart.default.svc".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(id("cart").as_str().try_into().unwrap()));
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let error = ca.sign_csr(csr.as_bytes(), &id("cart"), DAY).unwrap_err();
    assert!(
        matches!(&error, CaError::UnsupportedSan { kind: "DNS", value } if value == "cart.default.svc"),
        "{error}"
    );

    let params = rcgen::CertificateParams::default();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let error = ca.sign_csr(csr.as_bytes(), &id("cart"), DAY).unwrap_err();
    assert!(matches!(&error, CaError::IdentityMismatch { requested, .. } if requested.is_empty()));

    let mut params = rcgen::CertificateParams::default();
    for sa in ["cart", "admin"] {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(id(sa).as_str().try_into().unwrap()));
    }
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let error = ca.sign_csr(csr.as_bytes(), &id("cart"), DAY).unwrap_err();
    assert!(matches!(&error, CaError::IdentityMismatch { requested, .. } if requested.len() == 2));
}

#[test]
fn the_refusal_of_a_csr_with_thousands_of_sans_quotes_a_few_and_counts_the_rest() {
    let ca = Ca::generate(td()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let long = format!("spiffe://cluster.local/ns/default/sa/{}", "a".repeat(1000));
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(long.as_str().try_into().unwrap()));
    for i in 0..5000 {
        let uri = format!("spiffe://cluster.local/ns/default/sa/s{i}");
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.as_str().try_into().unwrap()));
    }
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let error = ca.sign_csr(csr.as_bytes(), &id("cart"), DAY).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, CaError::IdentityMismatch { requested, requested_total: 5001, .. }
            if requested.len() == remora_certs::MAX_QUOTED_SANS),
        "{message}"
    );
    assert!(message.contains("and 4997 more"), "{message}");
    assert!(message.len() < 2048, "{} bytes: {message}", message.len());

    let mut params = rcgen::CertificateParams::new(vec!["x".repeat(5000)]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(id("cart").as_str().try_into().unwrap()));
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let message = ca
        .sign_csr(csr.as_bytes(), &id("cart"), DAY)
        .unwrap_err()
        .to_string();
    assert!(message.len() < 512, "{} bytes: {message}", message.len());
}

#[test]
fn csr_with_a_broken_signature_is_refused() {
    let ca = Ca::generate(td()).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let mut der = pem::parse(key.csr(&id("cart")).unwrap())
        .unwrap()
        .into_contents();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let error = ca.sign_csr(&der, &id("cart"), DAY).unwrap_err();
    assert!(matches!(error, CaError::CsrSignature), "{error}");

    let error = ca.sign_csr(b"not a csr", &id("cart"), DAY).unwrap_err();
    assert!(matches!(error, CaError::BadCsr { .. }), "{error}");
}

#[test]
fn identities_outside_the_trust_domain_are_never_issued() {
    let ca = Ca::generate(td()).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let other = SpiffeId::parse("spiffe://evil.example/ns/default/sa/cart").unwrap();
    let csr = key.csr(&other).unwrap();
    let error = ca.sign_csr(csr.as_bytes(), &other, DAY).unwrap_err();
    assert!(
        matches!(error, CaError::ForeignTrustDomain { .. }),
        "{error}"
    );

    let td_id = td().id();
    let csr = key.csr(&td_id).unwrap();
    let error = ca.sign_csr(csr.as_bytes(), &td_id, DAY).unwrap_err();
    assert!(matches!(error, CaError::NotAWorkload { .. }), "{error}");

    let csr = key.csr(&id("cart")).unwrap();
    let error = ca
        .sign_csr(csr.as_bytes(), &id("cart"), Duration::ZERO)
        .unwrap_err();
    assert!(matches!(error, CaError::ZeroLifetime));
}

#[test]
fn load_or_create_writes_a_0600_key_and_reuses_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Ca::load_or_create(&data, td()).unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "directory mode {mode:o}");
    }
    let cert_file = std::fs::read_to_string(data.join(CA_CERT_FILE)).unwrap();
    assert_eq!(cert_file, first.cert_pem());

    let second = Ca::load_or_create(&data, td()).unwrap();
    assert_eq!(second.root_der(), first.root_der(), "same CA certificate");
    assert_eq!(second.trust_bundle_pem(), first.trust_bundle_pem());
    assert_eq!(
        std::fs::read_to_string(data.join(CA_CERT_FILE)).unwrap(),
        cert_file
    );

    // The reloaded CA signs leaves that verify against the first one's bundle.
    let key = WorkloadKey::generate().unwrap();
    let signed = second
        .sign_csr(key.csr(&id("cart")).unwrap().as_bytes(), &id("cart"), DAY)
        .unwrap();
    verify(
        &first.trust_bundle_pem(),
        signed.leaf_der(),
        &[],
        &id("cart"),
    );
}

#[test]
fn load_or_create_names_the_file_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    Ca::load_or_create(data, td()).unwrap();

    // Only the key left: nothing is overwritten.
    let cert = std::fs::read_to_string(data.join(CA_CERT_FILE)).unwrap();
    std::fs::remove_file(data.join(CA_CERT_FILE)).unwrap();
    let error = Ca::load_or_create(data, td()).unwrap_err();
    assert!(matches!(error, CaError::IncompleteFiles { .. }), "{error}");
    assert!(error.to_string().contains(CA_CERT_FILE), "{error}");

    // A certificate that does not parse.
    std::fs::write(
        data.join(CA_CERT_FILE),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let error = Ca::load_or_create(data, td()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&data.join(CA_CERT_FILE).display().to_string()),
        "{error}"
    );

    // A key that belongs to another certificate.
    let other = TestCa::root("other");
    std::fs::write(data.join(CA_CERT_FILE), other.cert_pem()).unwrap();
    let error = Ca::load_or_create(data, td()).unwrap_err();
    assert!(matches!(error, CaError::KeyMismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(CA_KEY_FILE) && message.contains(CA_CERT_FILE),
        "{message}"
    );

    // A key file that is not a key.
    std::fs::write(data.join(CA_CERT_FILE), cert).unwrap();
    std::fs::write(data.join(CA_KEY_FILE), "garbage").unwrap();
    let error = Ca::load_or_create(data, td()).unwrap_err();
    assert!(matches!(error, CaError::BadKey { .. }), "{error}");
    assert!(error.to_string().contains(CA_KEY_FILE), "{error}");
}

#[test]
fn operator_intermediate_issues_leaves_that_verify_against_the_operator_root() {
    let root = TestCa::root("Operator Root");
    let intermediate = root.intermediate("Operator Intermediate");
    let ca = Ca::from_pem(
        td(),
        &intermediate.cert_pem(),
        &intermediate.key.serialize_pem(),
        &root.cert_pem(),
    )
    .unwrap();
    assert_eq!(ca.root_der(), &root.cert);
    assert_eq!(
        TrustBundle::from_pem(&ca.trust_bundle_pem())
            .unwrap()
            .certs(),
        std::slice::from_ref(&root.cert)
    );

    let key = WorkloadKey::generate().unwrap();
    let signed = ca
        .sign_csr(key.csr(&id("cart")).unwrap().as_bytes(), &id("cart"), DAY)
        .unwrap();
    assert_eq!(signed.chain_der(), std::slice::from_ref(&intermediate.cert));
    verify(
        &root.cert_pem(),
        signed.leaf_der(),
        signed.chain_der(),
        &id("cart"),
    );

    // The same files dropped into the data directory, Istio cert-chain.pem style (the chain
    // starts with the CA certificate itself).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CA_CERT_FILE), intermediate.cert_pem()).unwrap();
    std::fs::write(
        dir.path().join(CA_KEY_FILE),
        intermediate.key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join(CA_CHAIN_FILE),
        intermediate.cert_pem() + &root.cert_pem(),
    )
    .unwrap();
    let loaded = Ca::load_or_create(dir.path(), td()).unwrap();
    let signed = loaded
        .sign_csr(key.csr(&id("cart")).unwrap().as_bytes(), &id("cart"), DAY)
        .unwrap();
    assert_eq!(signed.chain_der(), std::slice::from_ref(&intermediate.cert));
    verify(
        &root.cert_pem(),
        signed.leaf_der(),
        signed.chain_der(),
        &id("cart"),
    );
}

#[test]
fn operator_ca_is_checked_before_it_is_trusted() {
    let root = TestCa::root("Operator Root");
    let intermediate = root.intermediate("Operator Intermediate");
    let stranger = TestCa::root("Stranger");

    // An intermediate without its chain has no root.
    let error = Ca::from_pem(
        td(),
        &intermediate.cert_pem(),
        &intermediate.key.serialize_pem(),
        "",
    )
    .unwrap_err();
    assert!(matches!(error, CaError::NoRoot { .. }), "{error}");

    // A chain that leads to another root.
    let error = Ca::from_pem(
        td(),
        &intermediate.cert_pem(),
        &intermediate.key.serialize_pem(),
        &stranger.cert_pem(),
    )
    .unwrap_err();
    assert!(matches!(error, CaError::BrokenChain { .. }), "{error}");

    // A leaf is not a CA.
    let leaf = root.leaf(&["spiffe://cluster.local/ns/a/sa/b"]);
    let error = Ca::from_pem(
        td(),
        &crate::mint::pem(&leaf.cert),
        &leaf.key.serialize_pem(),
        &root.cert_pem(),
    )
    .unwrap_err();
    assert!(matches!(error, CaError::NotCa { index: 0, .. }), "{error}");

    // The wrong key.
    let error =
        Ca::from_pem(td(), &root.cert_pem(), &stranger.key.serialize_pem(), "").unwrap_err();
    assert!(matches!(error, CaError::KeyMismatch { .. }), "{error}");
}

#[test]
fn shared_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ca>();
    assert_send_sync::<remora_certs::SignedCert>();
    assert_send_sync::<remora_certs::MeshTls>();
    assert_send_sync::<remora_certs::Svid>();
    assert_send_sync::<WorkloadKey>();
}
