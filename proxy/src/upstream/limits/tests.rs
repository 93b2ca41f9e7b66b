use super::*;

#[test]
fn slots_hold_the_limit_and_give_back_on_drop() {
    let limits = Limits::default();
    let a = limits.try_open(2).expect("first");
    let _b = limits.try_open(2).expect("second");
    assert!(limits.try_open(2).is_none(), "third is over maxConnections");
    assert_eq!(limits.connections(), 2);
    drop(a);
    assert!(
        limits.try_open(2).is_some(),
        "a closed connection frees a slot"
    );
    let _many: Vec<_> = (0..100).map(|_| limits.try_admit(0).unwrap()).collect();
}

#[tokio::test]
async fn waiting_is_bounded_by_pending_and_woken_by_a_release() {
    let limits = Arc::new(Limits::default());
    let held = limits.try_open(1).expect("slot");
    let waiter = {
        let limits = Arc::clone(&limits);
        tokio::spawn(async move { limits.wait(1, || limits.try_open(1)).await.is_some() })
    };
    // Let the waiter queue, then a second waiter finds the queue full.
    while limits.0.pending.load(Ordering::Acquire) == 0 {
        tokio::task::yield_now().await;
    }
    let second = limits.wait(1, || limits.try_open(1)).await;
    assert!(second.is_none(), "queue of one is full");
    drop(held);
    assert!(waiter.await.unwrap(), "the waiter got the freed slot");
    assert_eq!(limits.0.pending.load(Ordering::Acquire), 0);
}
