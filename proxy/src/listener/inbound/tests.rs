use remora_certs::TrustDomain;

use super::*;

fn id(sa: &str) -> SpiffeId {
    SpiffeId::workload(&TrustDomain::new("cluster.local").unwrap(), "shop", sa).unwrap()
}

#[test]
fn xfcc_names_both_ends_for_an_mtls_peer() {
    let mut headers = HeaderMap::new();
    headers.insert(XFCC, HeaderValue::from_static("URI=spiffe://forged"));
    let peer = Peer {
        identity: Some(id("frontend")),
        tls: true,
    };
    set_client_cert(&mut headers, &peer, Some(&id("reviews")));
    assert_eq!(
        headers.get_all(&XFCC).iter().collect::<Vec<_>>(),
        ["By=spiffe://cluster.local/ns/shop/sa/reviews;\
                 URI=spiffe://cluster.local/ns/shop/sa/frontend"]
    );
}

#[test]
fn a_forged_xfcc_from_a_peer_without_identity_is_removed() {
    for peer in [
        Peer::plaintext(),
        Peer {
            identity: None,
            tls: true,
        },
    ] {
        let mut headers = HeaderMap::new();
        headers.append(XFCC, HeaderValue::from_static("URI=spiffe://forged"));
        headers.append(XFCC, HeaderValue::from_static("URI=spiffe://again"));
        set_client_cert(&mut headers, &peer, Some(&id("reviews")));
        assert!(headers.get(&XFCC).is_none());
    }
}
