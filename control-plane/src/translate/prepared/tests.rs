use super::*;
use crate::translate::version_of;

fn node() -> pb::Node {
    pb::Node {
        id: "reviews-1.default".into(),
        service: "reviews".into(),
        namespace: "default".into(),
        inbound_address: "10.0.0.1:15006".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_prepared_snapshot_is_the_translation_and_its_version() {
    let nodes: Nodes = [(1, node())].into();
    let settings = MeshSettings::default();
    let prepared = prepare(
        &node(),
        Arc::new(Vec::new()),
        Arc::new(nodes.clone()),
        Arc::new(settings.clone()),
    )
    .await
    .expect("translated");
    let direct = snapshot_for(&node(), &[], &nodes, &settings);
    assert_eq!(prepared.snapshot, direct);
    assert_eq!(prepared.version, version_of(&direct));
    assert_eq!(prepared.encoded_len, direct.encoded_len());
}

#[test]
fn a_snapshot_over_the_limit_is_refused_saying_what_it_holds() {
    let nodes: Nodes = [(1, node())].into();
    let prepared = Prepared::new(snapshot_for(&node(), &[], &nodes, &MeshSettings::default()));
    let fits = prepared.encoded_len + STAMP_ROOM;
    assert_eq!(prepared.refusal(&node(), fits), None, "at the limit");
    let refusal = prepared.refusal(&node(), fits - 1).expect("refused");
    assert_eq!(
        (
            refusal.bytes,
            refusal.limit,
            refusal.clusters,
            refusal.endpoints
        ),
        (fits, fits - 1, 1, 1)
    );
    let text = refusal.to_string();
    assert!(
        text.contains("reviews-1.default")
            && text.contains(&prepared.version)
            && text.contains(&format!("{fits} bytes")),
        "{text}"
    );
}
