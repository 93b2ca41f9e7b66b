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
mod tests;
