use super::*;

#[test]
fn percentiles_of_a_uniform_spread_are_where_expected() {
    let mut l = Latencies::new();
    for us in 1..=1_000u64 {
        l.record(Duration::from_micros(us));
    }
    let p = l.summary();
    let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
    assert!(close(p.p50, 500.0), "p50 {}", p.p50);
    assert!(close(p.p90, 900.0), "p90 {}", p.p90);
    assert!(close(p.p99, 990.0), "p99 {}", p.p99);
    assert!(close(p.max, 1_000.0), "max {}", p.max);
    assert_eq!(l.count(), 1_000);
}

#[test]
fn merged_workers_count_every_request() {
    let mut a = Latencies::new();
    let mut b = Latencies::new();
    a.record(Duration::from_micros(10));
    b.record(Duration::from_micros(20));
    b.record(Duration::from_secs(3_600)); // clamped, not lost
    a.merge(&b);
    assert_eq!(a.count(), 3);
    assert!(a.summary().max >= 59_000_000.0);
}
