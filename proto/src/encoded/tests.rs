use prost::Message;

use super::*;
use crate::pb;

#[test]
fn an_encoded_snapshot_decodes_as_the_snapshot_it_is() {
    let snapshot = pb::Snapshot {
        version: "v1".into(),
        nonce: "7".into(),
        virtual_hosts: vec![pb::VirtualHost {
            name: "reviews".into(),
            domains: vec!["reviews".into()],
            ..Default::default()
        }],
        clusters: vec![pb::Cluster {
            name: "|reviews".into(),
            ..Default::default()
        }],
        inbound: Some(pb::InboundPolicy::default()),
        ..Default::default()
    };
    // Fields encoded apart concatenate into the message.
    let hosts = pb::Snapshot {
        virtual_hosts: snapshot.virtual_hosts.clone(),
        ..Default::default()
    };
    let rest = pb::Snapshot {
        clusters: snapshot.clusters.clone(),
        inbound: snapshot.inbound.clone(),
        ..Default::default()
    };
    let encoded = EncodedSnapshot {
        version: "v1".into(),
        parts: vec![hosts.encode_to_vec().into(), rest.encode_to_vec().into()],
        nonce: "7".into(),
    };
    let bytes = encoded.encode_to_vec();
    assert_eq!(bytes.len(), encoded.encoded_len());
    assert_eq!(
        pb::Snapshot::decode(bytes.as_slice()).expect("decodes"),
        snapshot
    );
    let back = EncodedSnapshot::decode(bytes.as_slice()).expect("decodes");
    assert_eq!((back.version.as_str(), back.nonce.as_str()), ("v1", "7"));

    // As a gRPC message: the prefix, then the same bytes.
    let message: Vec<u8> = encoded.grpc_message().concat();
    assert_eq!(message[0], 0);
    assert_eq!(
        message[1..5],
        u32::try_from(bytes.len()).unwrap().to_be_bytes()
    );
    assert_eq!(message[5..], bytes[..]);
}
