use super::*;
use crate::limits::ConnectionLimits;
use futures_util::FutureExt;

fn limit() -> Arc<ConnectionLimit> {
    let limits = ConnectionLimits {
        max: 4,
        mtls_reserve_percent: 50,
    };
    ConnectionLimit::with_limits("health", &limits, true)
}

#[test]
fn a_full_listener_evicts_the_oldest_detecting_connection_and_then_refuses() {
    let limit = limit();
    let slots: Vec<Slot> = (0..4).map(|_| limit.admit().expect("room")).collect();
    // Full: the fifth takes the place of the oldest still detecting.
    let fifth = limit.admit().expect("evicts one");
    assert!(
        slots[0]
            .activity()
            .evict
            .notified()
            .now_or_never()
            .is_some(),
        "the oldest was told to close"
    );
    drop(slots);
    drop(fifth);
    assert_eq!(limit.open.load(Ordering::Relaxed), 0);
    // Every slot past detection: a newcomer is refused.
    let held: Vec<Slot> = (0..4)
        .map(|_| {
            let slot = limit.admit().expect("room");
            assert!(slot.activity().established(Phase::Http2, true));
            slot
        })
        .collect();
    assert!(limit.admit().is_none());
    drop(held);
}

#[test]
fn connections_without_identity_hold_only_their_share() {
    let limit = limit();
    let plain: Vec<Slot> = (0..3).map(|_| limit.admit().expect("room")).collect();
    assert!(plain[0].activity().established(Phase::Http1, false));
    assert!(plain[1].activity().established(Phase::Http1, false));
    // Two of four are for mTLS peers.
    assert!(!plain[2].activity().established(Phase::Http1, false));
    let mtls = limit.admit().expect("room");
    assert!(mtls.activity().established(Phase::Http2, true));
    drop(plain);
    assert_eq!(limit.plaintext.load(Ordering::Relaxed), 0);
}
