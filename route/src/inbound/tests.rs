use super::*;

#[test]
fn absent_inbound_is_permissive_without_policies() {
    let p = InboundPolicy::build(None).unwrap();
    assert_eq!(p.mode_for(8080), MtlsMode::Permissive);
    assert!(p.authz().is_empty());
}

#[test]
fn port_level_mode_overrides_the_workload_mode() {
    let p = InboundPolicy::build(Some(&pb::InboundPolicy {
        mtls: pb::MtlsMode::Strict as i32,
        port_mtls: [(9080, pb::MtlsMode::Disable as i32)].into(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(p.mode_for(9080), MtlsMode::Disable);
    assert_eq!(p.mode_for(8080), MtlsMode::Strict);
}

#[test]
fn an_unknown_mode_is_refused_naming_the_field() {
    let err = InboundPolicy::build(Some(&pb::InboundPolicy {
        port_mtls: [(9080, 7)].into(),
        ..Default::default()
    }))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "inbound.port_mtls[9080]: unknown mTLS mode 7"
    );
}
