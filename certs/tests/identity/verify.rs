//! The SPIFFE verifiers called directly, as rustls would, on chains minted in the test.

use std::time::SystemTime;

use remora_certs::{
    AllowedPeers, ClientAuth, PeerIdentityError, SharedTrustBundle, SpiffeClientVerifier, SpiffeId,
    SpiffeServerVerifier, TrustBundle, TrustDomain,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, Error};

use crate::mint::{HOUR, Leaf, TestCa, now, unix};

const CART: &str = "spiffe://cluster.local/ns/shop/sa/cart";
const ADMIN: &str = "spiffe://cluster.local/ns/shop/sa/admin";

fn bundle(ca: &TestCa) -> SharedTrustBundle {
    SharedTrustBundle::new(TrustBundle::from_der(vec![ca.cert.clone()]).unwrap())
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// What a workload's server accepts: any workload of its trust domain.
fn mesh_peers() -> AllowedPeers {
    AllowedPeers::trust_domain(TrustDomain::new("cluster.local").unwrap())
}

/// Runs both verifiers on the same chain: the client-side one (allowing `allowed`) and the
/// server-side one (mandatory client auth).
fn verify_both(
    ca: &TestCa,
    leaf: &Leaf,
    intermediates: &[CertificateDer<'_>],
    allowed: &str,
    at: SystemTime,
) -> [Result<(), Error>; 2] {
    let server_verifier = SpiffeServerVerifier::new(bundle(ca), AllowedPeers::ids([id(allowed)]));
    let client_verifier = SpiffeClientVerifier::new(bundle(ca), ClientAuth::Required, mesh_peers());
    let name = ServerName::try_from("cart.shop.svc.cluster.local").unwrap();
    [
        server_verifier
            .verify_server_cert(&leaf.cert, intermediates, &name, &[], unix(at))
            .map(drop),
        client_verifier
            .verify_client_cert(&leaf.cert, intermediates, unix(at))
            .map(drop),
    ]
}

fn identity_error(result: &Result<(), Error>) -> &PeerIdentityError {
    let error = result.as_ref().unwrap_err();
    PeerIdentityError::from_rustls(error)
        .unwrap_or_else(|| panic!("not an identity error: {error}"))
}

#[test]
fn right_identity_from_the_bundle_is_accepted_on_both_sides() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf(&[CART]);
    for result in verify_both(&ca, &leaf, &[], CART, now()) {
        result.unwrap();
    }
}

#[test]
fn hostname_is_not_checked() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf(&[CART]);
    let verifier = SpiffeServerVerifier::new(bundle(&ca), AllowedPeers::ids([id(CART)]));
    for name in ["unrelated.example.com", "10.1.2.3"] {
        let name = ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&leaf.cert, &[], &name, &[], unix(now()))
            .unwrap();
    }
}

#[test]
fn wrong_identity_is_refused_naming_presented_and_allowed() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf(&[ADMIN]);
    let [client_side, server_side] = verify_both(&ca, &leaf, &[], CART, now());
    let error = identity_error(&client_side);
    assert_eq!(
        error,
        &PeerIdentityError::NotAllowed {
            presented: id(ADMIN),
            allowed: AllowedPeers::ids([id(CART)]),
        }
    );
    let message = client_side.unwrap_err().to_string();
    assert!(
        message.contains(ADMIN) && message.contains(CART),
        "{message}"
    );
    // The server side authenticates any workload of the bundle; authorization comes later.
    server_side.unwrap();
}

#[test]
fn allowed_set_and_trust_domain_policies() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf(&[ADMIN]);
    let name = ServerName::try_from("10.0.0.1").unwrap();
    let check = |allowed: AllowedPeers| {
        SpiffeServerVerifier::new(bundle(&ca), allowed)
            .verify_server_cert(&leaf.cert, &[], &name, &[], unix(now()))
            .map(drop)
    };
    check(AllowedPeers::ids([id(CART), id(ADMIN)])).unwrap();
    check(AllowedPeers::trust_domain(
        TrustDomain::new("cluster.local").unwrap(),
    ))
    .unwrap();
    let refused = check(AllowedPeers::trust_domain(
        TrustDomain::new("other.local").unwrap(),
    ));
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("trust domain other.local"), "{message}");
    let refused = check(AllowedPeers::ids([
        id(CART),
        id("spiffe://cluster.local/x"),
    ]));
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("one of spiffe://cluster.local/ns/shop/sa/cart, spiffe://cluster.local/x"),
        "{message}"
    );
}

#[test]
fn a_client_of_another_trust_domain_is_refused_by_the_server_side() {
    let ca = TestCa::root("root");
    let evil = ca.leaf(&["spiffe://evil.example/ns/shop/sa/cart"]);
    let verifier = SpiffeClientVerifier::new(bundle(&ca), ClientAuth::Required, mesh_peers());
    let refused = verifier
        .verify_client_cert(&evil.cert, &[], unix(now()))
        .map(drop);
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("evil.example") && message.contains("trust domain cluster.local"),
        "{message}"
    );
    verifier
        .verify_client_cert(&ca.leaf(&[CART]).cert, &[], unix(now()))
        .unwrap();
}

#[test]
fn chain_from_another_ca_is_refused_on_both_sides() {
    let ca = TestCa::root("root");
    let stranger = TestCa::root("stranger");
    let leaf = stranger.leaf(&[CART]);
    for result in verify_both(&ca, &leaf, &[], CART, now()) {
        assert_eq!(
            result.unwrap_err(),
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }
}

#[test]
fn expired_leaf_is_refused_on_both_sides() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf_valid(&[CART], now() - 2 * HOUR, now() - HOUR);
    for result in verify_both(&ca, &leaf, &[], CART, now()) {
        assert!(
            matches!(
                result,
                Err(Error::InvalidCertificate(
                    CertificateError::ExpiredContext { .. }
                ))
            ),
            "{result:?}"
        );
    }
}

#[test]
fn not_yet_valid_leaf_is_refused_on_both_sides() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf_valid(&[CART], now() + HOUR, now() + 2 * HOUR);
    for result in verify_both(&ca, &leaf, &[], CART, now()) {
        assert!(
            matches!(
                result,
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidYetContext { .. }
                ))
            ),
            "{result:?}"
        );
    }
}

#[test]
fn leaf_without_uri_san_is_refused_on_both_sides() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf(&[]);
    for result in verify_both(&ca, &leaf, &[], CART, now()) {
        assert_eq!(identity_error(&result), &PeerIdentityError::NoUriSan);
    }
}

#[test]
fn leaf_with_two_uri_sans_is_refused_on_both_sides() {
    let ca = TestCa::root("root");
    let leaf = ca.leaf(&[CART, ADMIN]);
    for result in verify_both(&ca, &leaf, &[], CART, now()) {
        assert_eq!(
            identity_error(&result),
            &PeerIdentityError::MultipleUriSans {
                uris: vec![CART.to_owned(), ADMIN.to_owned()]
            }
        );
    }
}

#[test]
fn uri_san_that_is_not_a_spiffe_id_is_refused_on_both_sides() {
    let ca = TestCa::root("root");
    for uri in ["https://cart.example.com/", "spiffe://cluster.local"] {
        let leaf = ca.leaf(&[uri]);
        for result in verify_both(&ca, &leaf, &[], CART, now()) {
            assert!(
                matches!(
                    identity_error(&result),
                    PeerIdentityError::InvalidSpiffeId(_) | PeerIdentityError::NotAWorkload(_)
                ),
                "{uri}: {result:?}"
            );
        }
    }
}

#[test]
fn intermediates_sent_by_the_peer_complete_the_chain() {
    let root = TestCa::root("root");
    let intermediate = root.intermediate("intermediate");
    let leaf = intermediate.leaf(&[CART]);
    for result in verify_both(
        &root,
        &leaf,
        std::slice::from_ref(&intermediate.cert),
        CART,
        now(),
    ) {
        result.unwrap();
    }
    for result in verify_both(&root, &leaf, &[], CART, now()) {
        assert_eq!(
            result.unwrap_err(),
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }
}

#[test]
fn swapped_trust_bundle_applies_to_the_next_verification() {
    let old = TestCa::root("old");
    let new = TestCa::root("new");
    let leaf = new.leaf(&[CART]);
    let shared = bundle(&old);
    let server_verifier = SpiffeServerVerifier::new(shared.clone(), AllowedPeers::ids([id(CART)]));
    let client_verifier =
        SpiffeClientVerifier::new(shared.clone(), ClientAuth::Optional, mesh_peers());
    let name = ServerName::try_from("10.0.0.1").unwrap();
    assert!(
        server_verifier
            .verify_server_cert(&leaf.cert, &[], &name, &[], unix(now()))
            .is_err()
    );
    assert!(
        client_verifier
            .verify_client_cert(&leaf.cert, &[], unix(now()))
            .is_err()
    );

    shared.store(TrustBundle::from_der(vec![old.cert.clone(), new.cert.clone()]).unwrap());
    server_verifier
        .verify_server_cert(&leaf.cert, &[], &name, &[], unix(now()))
        .unwrap();
    client_verifier
        .verify_client_cert(&leaf.cert, &[], unix(now()))
        .unwrap();
}

#[test]
fn client_auth_flag_sets_mandatory() {
    let ca = TestCa::root("root");
    let required = SpiffeClientVerifier::new(bundle(&ca), ClientAuth::Required, mesh_peers());
    let optional = SpiffeClientVerifier::new(bundle(&ca), ClientAuth::Optional, mesh_peers());
    assert!(required.offer_client_auth() && required.client_auth_mandatory());
    assert!(optional.offer_client_auth() && !optional.client_auth_mandatory());
}

#[test]
fn empty_or_broken_trust_bundles_are_refused() {
    assert!(TrustBundle::from_pem("").is_err());
    assert!(TrustBundle::from_der(Vec::new()).is_err());
    let error =
        TrustBundle::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
    assert!(
        error.to_string().contains("expected \"CERTIFICATE\""),
        "{error}"
    );
}
