//! Real rustls handshakes in memory: bytes pumped between a ClientConnection and a
//! ServerConnection through Vec buffers, no sockets.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use remora_certs::{
    AllowedPeers, Ca, ClientAuth, MeshTls, PeerIdentityError, SpiffeId, TrustBundle, TrustDomain,
    WorkloadKey, peer_identity,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn id(sa: &str) -> SpiffeId {
    SpiffeId::workload(&TrustDomain::new("cluster.local").unwrap(), "shop", sa).unwrap()
}

/// What a workload's server accepts: any workload of the mesh's trust domain.
fn mesh_peers() -> AllowedPeers {
    AllowedPeers::trust_domain(TrustDomain::new("cluster.local").unwrap())
}

/// A workload's TLS state with a fresh SVID for `sa` from `ca`.
fn workload(ca: &Ca, sa: &str) -> MeshTls {
    let tls = MeshTls::new(TrustBundle::from_pem(&ca.trust_bundle_pem()).unwrap());
    issue(ca, &tls, sa);
    tls
}

/// The proxy's rotation step: new key, CSR, signed certificate, stored SVID.
fn issue(ca: &Ca, tls: &MeshTls, sa: &str) {
    let key = WorkloadKey::generate().unwrap();
    let signed = ca
        .sign_csr(key.csr(&id(sa)).unwrap().as_bytes(), &id(sa), DAY)
        .unwrap();
    tls.svid()
        .store(key.certify(&signed.cert_chain_pem()).unwrap());
}

#[derive(Debug)]
enum Failed {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// Moves every pending TLS record from one side to the other.
fn transfer(
    from: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    to: &mut dyn FnMut(&[u8]) -> Result<(), rustls::Error>,
) -> Result<bool, rustls::Error> {
    let mut buf = Vec::new();
    while from(&mut buf) {}
    if buf.is_empty() {
        return Ok(false);
    }
    to(&buf)?;
    Ok(true)
}

fn connect(
    client_config: Arc<ClientConfig>,
    server_config: Arc<ServerConfig>,
) -> (ClientConnection, ServerConnection, Result<(), Failed>) {
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)).into());
    let mut client = ClientConnection::new(client_config, name).unwrap();
    let mut server = ServerConnection::new(server_config).unwrap();
    let result = pump(&mut client, &mut server);
    (client, server, result)
}

/// Pumps bytes both ways until neither side has anything to send.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), Failed> {
    for _ in 0..20 {
        let to_server = transfer(
            &mut |buf| client.wants_write() && client.write_tls(buf).unwrap() > 0,
            &mut |mut bytes| {
                while !bytes.is_empty() {
                    server.read_tls(&mut bytes).unwrap();
                    server.process_new_packets()?;
                }
                Ok(())
            },
        )
        .map_err(Failed::Server)?;
        let to_client = transfer(
            &mut |buf| server.wants_write() && server.write_tls(buf).unwrap() > 0,
            &mut |mut bytes| {
                while !bytes.is_empty() {
                    client.read_tls(&mut bytes).unwrap();
                    client.process_new_packets()?;
                }
                Ok(())
            },
        )
        .map_err(Failed::Client)?;
        if !to_server && !to_client {
            return Ok(());
        }
    }
    panic!("handshake did not settle");
}

#[test]
fn mtls_handshake_exposes_both_identities_and_carries_data() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let frontend = workload(&ca, "frontend");
    let cart = workload(&ca, "cart");

    let (mut client, mut server, result) = connect(
        frontend
            .client_config(AllowedPeers::ids([id("cart")]))
            .unwrap(),
        cart.server_config(ClientAuth::Required, mesh_peers())
            .unwrap(),
    );
    result.unwrap();
    assert!(!client.is_handshaking() && !server.is_handshaking());
    assert_eq!(peer_identity(&client), Some(id("cart")));
    assert_eq!(peer_identity(&server), Some(id("frontend")));
    assert_eq!(client.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    client
        .writer()
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    pump(&mut client, &mut server).unwrap();
    let mut received = [0u8; 18];
    server.reader().read_exact(&mut received).unwrap();
    assert_eq!(&received, b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn client_refuses_a_server_outside_the_allowed_set() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let frontend = workload(&ca, "frontend");
    let admin = workload(&ca, "admin");

    let (_, _, result) = connect(
        frontend
            .client_config(AllowedPeers::ids([id("cart")]))
            .unwrap(),
        admin
            .server_config(ClientAuth::Required, mesh_peers())
            .unwrap(),
    );
    let Err(Failed::Client(error)) = result else {
        panic!("expected the client to refuse: {result:?}");
    };
    assert_eq!(
        PeerIdentityError::from_rustls(&error),
        Some(&PeerIdentityError::NotAllowed {
            presented: id("admin"),
            allowed: AllowedPeers::ids([id("cart")]),
        })
    );
}

#[test]
fn peers_of_another_trust_root_are_refused_both_ways() {
    let ours = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let theirs = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let frontend = workload(&ours, "frontend");
    let cart = workload(&theirs, "cart");
    let (_, _, result) = connect(
        frontend
            .client_config(AllowedPeers::ids([id("cart")]))
            .unwrap(),
        cart.server_config(ClientAuth::Required, mesh_peers())
            .unwrap(),
    );
    assert!(
        matches!(
            &result,
            Err(Failed::Client(rustls::Error::InvalidCertificate(_)))
        ),
        "{result:?}"
    );

    // The client trusts the server's root, but the server does not trust the client's.
    frontend
        .trust_bundle()
        .store(TrustBundle::from_pem(&theirs.trust_bundle_pem()).unwrap());
    let (_, _, result) = connect(
        frontend
            .client_config(AllowedPeers::ids([id("cart")]))
            .unwrap(),
        cart.server_config(ClientAuth::Required, mesh_peers())
            .unwrap(),
    );
    assert!(
        matches!(
            &result,
            Err(Failed::Server(rustls::Error::InvalidCertificate(_)))
        ),
        "{result:?}"
    );
}

#[test]
fn client_without_svid_is_refused_when_required_and_anonymous_when_optional() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let anonymous = MeshTls::new(TrustBundle::from_pem(&ca.trust_bundle_pem()).unwrap());
    let cart = workload(&ca, "cart");
    let client_config = anonymous
        .client_config(AllowedPeers::ids([id("cart")]))
        .unwrap();

    let (_, _, result) = connect(
        client_config.clone(),
        cart.server_config(ClientAuth::Required, mesh_peers())
            .unwrap(),
    );
    assert!(
        matches!(
            &result,
            Err(Failed::Server(rustls::Error::NoCertificatesPresented))
        ),
        "{result:?}"
    );

    let (client, server, result) = connect(
        client_config,
        cart.server_config(ClientAuth::Optional, mesh_peers())
            .unwrap(),
    );
    result.unwrap();
    assert_eq!(peer_identity(&server), None);
    assert_eq!(peer_identity(&client), Some(id("cart")));
}

#[test]
fn rotated_svid_is_presented_without_rebuilding_configs() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let frontend = workload(&ca, "frontend");
    let cart = workload(&ca, "cart");
    let client_config = frontend
        .client_config(AllowedPeers::ids([id("cart")]))
        .unwrap();
    let server_config = cart
        .server_config(ClientAuth::Required, mesh_peers())
        .unwrap();

    let (client, _, result) = connect(client_config.clone(), server_config.clone());
    result.unwrap();
    let first = client.peer_certificates().unwrap()[0].clone();

    issue(&ca, &cart, "cart");
    let current = cart.svid().load().unwrap().cert_chain()[0].clone();
    assert_ne!(current, first);
    let (client, server, result) = connect(client_config, server_config);
    result.unwrap();
    assert_eq!(client.peer_certificates().unwrap()[0], current);
    assert_eq!(peer_identity(&server), Some(id("frontend")));
}

#[test]
fn server_without_svid_fails_the_handshake() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let frontend = workload(&ca, "frontend");
    let empty = MeshTls::new(TrustBundle::from_pem(&ca.trust_bundle_pem()).unwrap());
    assert!(empty.svid().load().is_none());
    let (_, _, result) = connect(
        frontend
            .client_config(AllowedPeers::ids([id("cart")]))
            .unwrap(),
        empty
            .server_config(ClientAuth::Required, mesh_peers())
            .unwrap(),
    );
    assert!(matches!(result, Err(Failed::Server(_))), "{result:?}");
}

#[test]
fn client_config_with_no_allowed_peer_is_refused() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let tls = workload(&ca, "frontend");
    assert!(tls.client_config(AllowedPeers::ids([])).is_err());
}

#[test]
fn a_client_of_another_trust_domain_signed_by_the_same_ca_is_refused() {
    // The attack: a certificate for spiffe://evil.example/ns/shop/sa/frontend, signed with the
    // mesh CA's key (an operator CA shared between trust domains, or a CA loaded with the
    // wrong --trust-domain). The chain is fine; only the trust domain gives it away.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), TrustDomain::new("cluster.local").unwrap()).unwrap();
    let evil_td = TrustDomain::new("evil.example").unwrap();
    let evil_ca = Ca::load_or_create(dir.path(), evil_td.clone()).unwrap();
    assert_eq!(
        evil_ca.trust_bundle_pem(),
        ca.trust_bundle_pem(),
        "one CA, one key"
    );
    let evil_id = SpiffeId::workload(&evil_td, "shop", "frontend").unwrap();
    let evil = MeshTls::new(TrustBundle::from_pem(&ca.trust_bundle_pem()).unwrap());
    let key = WorkloadKey::generate().unwrap();
    let signed = evil_ca
        .sign_csr(key.csr(&evil_id).unwrap().as_bytes(), &evil_id, DAY)
        .unwrap();
    evil.svid()
        .store(key.certify(&signed.cert_chain_pem()).unwrap());
    let cart = workload(&ca, "cart");

    for client_auth in [ClientAuth::Required, ClientAuth::Optional] {
        let (_, _, result) = connect(
            evil.client_config(AllowedPeers::ids([id("cart")])).unwrap(),
            cart.server_config(client_auth, mesh_peers()).unwrap(),
        );
        match &result {
            Err(Failed::Server(error)) => {
                let why = PeerIdentityError::from_rustls(error).expect("an identity error");
                assert!(
                    matches!(why, PeerIdentityError::NotAllowed { presented, .. } if *presented == evil_id),
                    "{why}"
                );
                assert!(
                    why.to_string().contains("trust domain cluster.local"),
                    "{why}"
                );
            }
            other => panic!("{client_auth:?}: the evil client got in: {other:?}"),
        }
    }

    // And the other way round: a client of cluster.local that accepts its trust domain refuses
    // the evil server.
    let frontend = workload(&ca, "frontend");
    let (_, _, result) = connect(
        frontend.client_config(mesh_peers()).unwrap(),
        evil.server_config(ClientAuth::Required, AllowedPeers::trust_domain(evil_td))
            .unwrap(),
    );
    assert!(matches!(result, Err(Failed::Client(_))), "{result:?}");
}

#[test]
fn server_config_with_no_allowed_client_is_refused() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").unwrap()).unwrap();
    let tls = workload(&ca, "frontend");
    assert!(
        tls.server_config(ClientAuth::Required, AllowedPeers::ids([]))
            .is_err()
    );
}
