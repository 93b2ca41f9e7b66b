//! Backoff between tries: exponential with full jitter (the AWS
//! architecture blog's "full jitter", which Envoy uses too).

use std::time::Duration;

/// The base interval: retry 1 waits up to 25 ms, retry 2 up to 75 ms, ...
pub(crate) const BASE: Duration = Duration::from_millis(25);

/// No wait exceeds this, however many retries came before.
pub(crate) const CAP: Duration = Duration::from_millis(250);

/// The upper bound (exclusive) of the wait before retry `n` (1-based):
/// `(2^n − 1) × 25 ms`, capped at [`CAP`].
pub(crate) fn ceiling(n: u32) -> Duration {
    let factor = 1u64
        .checked_shl(n.min(32))
        .map_or(u64::MAX, |p| p.saturating_sub(1));
    let ms = (BASE.as_millis() as u64).saturating_mul(factor);
    Duration::from_millis(ms).min(CAP)
}

/// The wait before retry `n` (1-based): uniform in `[0, ceiling(n))`.
///
/// `unit` is a random number in `[0, 1)`; callers pass `rand::random()`,
/// tests pass fixed values.
pub(crate) fn backoff(n: u32, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let wait = ceiling(n).mul_f64(unit);
    // `unit` may be exactly 1.0 when a caller rounds; keep the bound exclusive.
    wait.min(ceiling(n).saturating_sub(Duration::from_nanos(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps_at_250ms() {
        let ms: Vec<u128> = (1..=6).map(|n| ceiling(n).as_millis()).collect();
        assert_eq!(ms, [25, 75, 175, 250, 250, 250]);
        assert_eq!(ceiling(100), CAP, "no overflow for large n");
        assert_eq!(ceiling(0), Duration::ZERO);
    }

    #[test]
    fn backoff_stays_within_zero_and_the_ceiling() {
        for n in 1..=8 {
            for unit in [0.0, 0.25, 0.5, 0.999_999, 1.0] {
                let wait = backoff(n, unit);
                assert!(wait < ceiling(n), "retry {n}, unit {unit}: {wait:?}");
            }
            assert_eq!(backoff(n, 0.0), Duration::ZERO);
        }
        assert_eq!(backoff(2, 0.5), Duration::from_micros(37_500));
        assert_eq!(backoff(1, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn backoff_with_a_real_rng_is_spread_over_the_range() {
        let waits: Vec<Duration> = (0..1000).map(|_| backoff(3, rand::random())).collect();
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
}
