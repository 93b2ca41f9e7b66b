use super::*;

#[test]
fn ceiling_doubles_then_caps_at_ten_times_the_base() {
    let b = Backoff::default();
    let ms: Vec<u128> = (1..=6).map(|n| b.ceiling(n).as_millis()).collect();
    assert_eq!(ms, [25, 75, 175, 250, 250, 250]);
    assert_eq!(b.ceiling(100), b.cap(), "no overflow for large n");
    assert_eq!(b.ceiling(0), Duration::ZERO);
    let short = Backoff::new(Duration::from_millis(1));
    let ms: Vec<u128> = (1..=5).map(|n| short.ceiling(n).as_millis()).collect();
    assert_eq!(ms, [1, 3, 7, 10, 10], "--retry-backoff-base 1ms");
}

#[test]
fn wait_stays_within_zero_and_the_ceiling() {
    let b = Backoff::default();
    for n in 1..=8 {
        for unit in [0.0, 0.25, 0.5, 0.999_999, 1.0] {
            let wait = b.wait(n, unit);
            assert!(wait < b.ceiling(n), "retry {n}, unit {unit}: {wait:?}");
        }
        assert_eq!(b.wait(n, 0.0), Duration::ZERO);
    }
    assert_eq!(b.wait(2, 0.5), Duration::from_micros(37_500));
    assert_eq!(b.wait(1, f64::NAN), Duration::ZERO);
}

#[test]
fn wait_with_a_real_rng_is_spread_over_the_range() {
    let b = Backoff::default();
    let waits: Vec<Duration> = (0..1000).map(|_| b.wait(3, rand::random())).collect();
    assert!(waits.iter().all(|w| *w < Duration::from_millis(175)));
    let low = waits
        .iter()
        .filter(|w| **w < Duration::from_millis(87))
        .count();
    assert!(
        (350..650).contains(&low),
        "about half below the midpoint: {low}"
    );
}
