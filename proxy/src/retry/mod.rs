//! Retries: the per-route policy, the backoff between tries, and the budget
//! that bounds the extra load retries add. The buffering that makes a
//! request body replayable is [`crate::upstream::replay`].
//!
//! The attempt loop ([`attempts`]) takes a send function, so that its
//! timeouts, budget, `maxRetries`, backoff and host avoidance are tested
//! with scripted tries on paused time; the outbound listener gives it the
//! real one.

pub(crate) mod attempts;
mod backoff;
pub mod budget;

/// The replayable request body lives with the bodies sent upstream, below
/// both the pool and the retries; `retry::body` is its old path.
pub use crate::upstream::replay as body;
pub(crate) use attempts::{Attempts, RouteTimeout, Upstream};
pub use backoff::Backoff;
pub use budget::BudgetSettings;
pub(crate) use budget::{RetryBudget, RetryBudgets};
pub(crate) use remora_route::retry::{AttemptError, RetryPolicy};

use crate::upstream::UpstreamError;

/// Why a try failed, as the retry decision ([`RetryPolicy::should_retry`])
/// sees it.
pub(crate) type TryFailure<'a> = remora_route::retry::TryFailure<'a, UpstreamError>;

/// The retry decision reads the upstream error's typed predicates.
impl AttemptError for UpstreamError {
    fn is_overflow(&self) -> bool {
        UpstreamError::is_overflow(self)
    }

    fn never_reached_app(&self) -> bool {
        UpstreamError::never_reached_app(self)
    }

    fn is_stale(&self) -> bool {
        UpstreamError::is_stale(self)
    }

    fn is_connect_failure(&self) -> bool {
        UpstreamError::is_connect_failure(self)
    }

    fn is_refused_stream(&self) -> bool {
        UpstreamError::is_refused_stream(self)
    }

    fn is_reset(&self) -> bool {
        UpstreamError::is_reset(self)
    }
}

/// Request bodies up to this size are kept for replay by default.
pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024;

/// What the outbound path needs to retry: the budgets, the body bound and
/// the backoff.
#[derive(Debug)]
pub struct Retries {
    /// One budget per destination service.
    pub budgets: RetryBudgets,
    /// Request bodies up to this many bytes are buffered for replay.
    pub buffer_bytes: usize,
    /// The pacing of retries.
    pub backoff: Backoff,
    /// Where the backoff's jitter comes from: a number in `[0, 1)`,
    /// `rand::random` but in tests.
    pub(crate) jitter: fn() -> f64,
}

impl Retries {
    /// Retry state with these budget settings and body bound, and the
    /// default backoff.
    pub fn new(budget: BudgetSettings, buffer_bytes: usize) -> Self {
        Self {
            budgets: RetryBudgets::new(budget),
            buffer_bytes,
            backoff: Backoff::default(),
            jitter: rand::random,
        }
    }

    /// The same, with retries paced by `backoff` (`--retry-backoff-base`).
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        Self { backoff, ..self }
    }
}

impl Default for Retries {
    fn default() -> Self {
        Self::new(BudgetSettings::default(), DEFAULT_BUFFER_BYTES)
    }
}

#[cfg(test)]
mod policy_tests;
