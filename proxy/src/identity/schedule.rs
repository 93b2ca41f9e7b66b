//! When to renew a certificate and how long to wait between failed attempts: pure
//! arithmetic, so that it is tested without clocks.
//!
//! Times are durations from the moment the certificate arrived, not the certificate's
//! `not_before`: the CA backdates `not_before` by a minute for clock skew, so half of
//! `not_after - not_before` lies in the past for a lifetime under two minutes, and is 30 s
//! early for any lifetime. What matters is the validity the proxy actually holds.

use std::time::Duration;

/// Renewal starts this fraction of the remaining half-life early or late (uniformly), so that
/// proxies started together do not all renew at the same moment.
pub(crate) const RENEW_JITTER: f64 = 0.10;
/// The first retry waits up to this long; each failure doubles it…
pub(crate) const RETRY_BASE: Duration = Duration::from_millis(200);
/// …up to this cap.
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(30);
/// The shortest wait between attempts, so that a CA that refuses instantly is not hammered.
pub(crate) const RETRY_FLOOR: Duration = Duration::from_millis(10);

/// How long after the certificate arrived to start renewing it: half of `remaining` (the
/// validity left on arrival), moved by `jitter` × [`RENEW_JITTER`] of that half.
///
/// `jitter` is clamped to `[-1, 1]`; the result is always shorter than `remaining` (when
/// `remaining` is not zero), so renewal is never scheduled after expiry.
pub(crate) fn renew_delay(remaining: Duration, jitter: f64) -> Duration {
    let half = remaining / 2;
    let jitter = if jitter.is_finite() {
        jitter.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let spread = half.mul_f64(RENEW_JITTER * jitter.abs());
    if jitter >= 0.0 {
        half + spread
    } else {
        half - spread
    }
}

/// How long to wait after the `attempt`-th consecutive failure (1 for the first) before trying
/// again: exponential backoff with full jitter, `fraction` × min([`RETRY_BASE`] ×
/// 2^(attempt-1), [`RETRY_CAP`]), at least [`RETRY_FLOOR`].
///
/// `until_expiry` is the validity left on the current certificate: while it is not zero the
/// wait ends no later than expiry, so an attempt is made at the last moment and the failure
/// that lets the certificate lapse is reported, never silent.
pub(crate) fn retry_delay(attempt: u32, fraction: f64, until_expiry: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    let cap = RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_CAP);
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let wait = cap.mul_f64(fraction).max(RETRY_FLOOR);
    if until_expiry.is_zero() {
        wait
    } else {
        wait.min(until_expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [f64; 7] = [-1.0, -0.5, -0.01, 0.0, 0.3, 0.99, 1.0];

    #[test]
    fn renewal_starts_half_way_through_the_remaining_validity() {
        assert_eq!(
            renew_delay(Duration::from_secs(24 * 3600), 0.0),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            renew_delay(Duration::from_secs(4), 0.0),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn renewal_jitter_stays_within_ten_percent_of_the_half() {
        let remaining = Duration::from_secs(3600);
        let half = remaining / 2;
        for jitter in STEPS {
            let delay = renew_delay(remaining, jitter);
            assert!(
                delay >= half.mul_f64(0.9) && delay <= half.mul_f64(1.1),
                "jitter {jitter}: {delay:?}"
            );
        }
        assert_eq!(renew_delay(remaining, -1.0), Duration::from_secs(1620));
        assert_eq!(renew_delay(remaining, 1.0), Duration::from_secs(1980));
        // Out-of-range input is clamped, not trusted.
        assert_eq!(renew_delay(remaining, 7.0), Duration::from_secs(1980));
        assert_eq!(renew_delay(remaining, f64::NAN), half);
    }

    #[test]
    fn renewal_is_never_scheduled_at_or_after_expiry() {
        for secs in [1, 2, 3, 4, 10, 86_400] {
            let remaining = Duration::from_secs(secs);
            for jitter in STEPS {
                assert!(
                    renew_delay(remaining, jitter) < remaining,
                    "{secs}s {jitter}"
                );
            }
        }
        assert_eq!(renew_delay(Duration::ZERO, 1.0), Duration::ZERO);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let far = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, 1.0, far), Duration::from_millis(200));
        assert_eq!(retry_delay(2, 1.0, far), Duration::from_millis(400));
        assert_eq!(retry_delay(5, 1.0, far), Duration::from_millis(3200));
        assert_eq!(retry_delay(8, 1.0, far), Duration::from_millis(25_600));
        assert_eq!(retry_delay(9, 1.0, far), RETRY_CAP);
        assert_eq!(retry_delay(u32::MAX, 1.0, far), RETRY_CAP);
        assert_eq!(retry_delay(0, 1.0, far), RETRY_BASE);
    }

    #[test]
    fn retry_jitter_is_full_but_never_below_the_floor() {
        let far = Duration::from_secs(3600);
        for attempt in 1..40 {
            for fraction in [0.0, 0.25, 0.5, 1.0, -3.0, 9.0] {
                let wait = retry_delay(attempt, fraction, far);
                assert!(
                    wait >= RETRY_FLOOR && wait <= RETRY_CAP,
                    "{attempt} {fraction}"
                );
            }
        }
        assert_eq!(retry_delay(6, 0.5, far), Duration::from_millis(3200));
        assert_eq!(retry_delay(6, 0.0, far), RETRY_FLOOR);
    }

    #[test]
    fn a_retry_never_waits_past_expiry_while_the_certificate_is_valid() {
        let left = Duration::from_millis(1500);
        assert_eq!(retry_delay(10, 1.0, left), left);
        assert_eq!(retry_delay(1, 1.0, left), Duration::from_millis(200));
        // Even below the floor: the last attempt happens at expiry.
        assert_eq!(
            retry_delay(10, 1.0, Duration::from_millis(1)),
            Duration::from_millis(1)
        );
        // Expired: plain backoff, so the proxy keeps trying.
        assert_eq!(retry_delay(10, 1.0, Duration::ZERO), RETRY_CAP);
    }
}
