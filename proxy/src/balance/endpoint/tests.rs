use super::*;

fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
    (0..n)
        .map(|i| Arc::new(Endpoint::new(format!("127.0.0.1:{}", 1000 + i))))
        .collect()
}

#[test]
fn round_robin_visits_each_in_turn() {
    let eps = endpoints(3);
    let cursor = AtomicUsize::new(0);
    let picked: Vec<_> = (0..6)
        .map(|_| {
            pick_endpoint(LoadBalancer::RoundRobin, &eps, &cursor)
                .unwrap()
                .address()
                .to_owned()
        })
        .collect();
    assert_eq!(picked[0..3], picked[3..6]);
    assert_ne!(picked[0], picked[1]);
    assert_ne!(picked[1], picked[2]);
}

#[test]
fn least_request_avoids_the_busy_endpoint() {
    let eps = endpoints(2);
    let _busy: Vec<_> = (0..5).map(|_| eps[0].start_request()).collect();
    let cursor = AtomicUsize::new(0);
    for _ in 0..100 {
        let e = pick_endpoint(LoadBalancer::LeastRequest, &eps, &cursor).unwrap();
        assert_eq!(e.address(), eps[1].address());
    }
}

#[test]
fn random_and_empty() {
    let cursor = AtomicUsize::new(0);
    assert!(pick_endpoint(LoadBalancer::Random, &[], &cursor).is_none());
    let eps = endpoints(4);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(
            pick_endpoint(LoadBalancer::Random, &eps, &cursor)
                .unwrap()
                .address()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 4);
}
