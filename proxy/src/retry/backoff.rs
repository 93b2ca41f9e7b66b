//! Backoff between tries: exponential with full jitter (the AWS
//! architecture blog's "full jitter", which Envoy uses too).

use std::time::Duration;

/// The pacing of retries: retry `n` (1-based) waits uniformly in
/// `[0, (2^n − 1) × base)`, at most `10 × base` (Envoy's default
/// `max_interval`). The base is 25 ms unless `--retry-backoff-base` says
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BASE)
    }
}

impl Backoff {
    /// Retry 1 waits up to 25 ms, retry 2 up to 75 ms, ... by default.
    pub const DEFAULT_BASE: Duration = Duration::from_millis(25);

    /// Backoff from `base`.
    pub fn new(base: Duration) -> Self {
        Self { base }
    }

    /// No wait reaches this, however many retries came before.
    pub(crate) fn cap(&self) -> Duration {
        self.base.saturating_mul(10)
    }

    /// The upper bound (exclusive) of the wait before retry `n` (1-based):
    /// `(2^n − 1) × base`, capped at [`Self::cap`].
    pub(crate) fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32
            .checked_shl(n.min(31))
            .map_or(u32::MAX, |p| p.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap())
    }

    /// The wait before retry `n` (1-based): uniform in `[0, ceiling(n))`.
    ///
    /// `unit` is a random number in `[0, 1)`; callers pass `rand::random()`,
    /// tests pass fixed values.
    pub(crate) fn wait(&self, n: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let ceiling = self.ceiling(n);
        // `unit` may be exactly 1.0 when a caller rounds; keep the bound exclusive.
        ceiling
            .mul_f64(unit)
            .min(ceiling.saturating_sub(Duration::from_nanos(1)))
    }
}

#[cfg(test)]
mod tests;
