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
