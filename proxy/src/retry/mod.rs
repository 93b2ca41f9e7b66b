//! Retries: the per-route policy, the backoff between tries, and the budget
//! that bounds the extra load retries add. The buffering that makes a
//! request body replayable is [`crate::upstream::replay`].
//!
//! The attempt loop itself is on the request path, in
//! [`crate::listener::outbound`].

pub(crate) mod backoff;
pub mod budget;

/// The replayable request body lives with the bodies sent upstream, below
/// both the pool and the retries; `retry::body` is its old path.
pub use crate::upstream::replay as body;
pub(crate) use crate::upstream::{ReplayableBody, buffer_body};
pub(crate) use backoff::backoff;
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

/// What the outbound path needs to retry: the budgets and the body bound.
#[derive(Debug)]
pub struct Retries {
    /// One budget per destination service.
    pub budgets: RetryBudgets,
    /// Request bodies up to this many bytes are buffered for replay.
    pub buffer_bytes: usize,
}

impl Retries {
    /// Retry state with these budget settings and body bound.
    pub fn new(budget: BudgetSettings, buffer_bytes: usize) -> Self {
        Self {
            budgets: RetryBudgets::new(budget),
            buffer_bytes,
        }
    }
}

impl Default for Retries {
    fn default() -> Self {
        Self::new(BudgetSettings::default(), DEFAULT_BUFFER_BYTES)
    }
}

#[cfg(test)]
mod policy_tests;
