//! Retries: the per-route policy, the backoff between tries, the budget
//! that bounds the extra load retries add, and the buffering that makes a
//! request body replayable.
//!
//! The attempt loop itself is on the request path, in
//! [`crate::listener::outbound`].

pub mod backoff;
pub mod body;
pub mod budget;
pub mod policy;

pub use backoff::backoff;
pub use body::{ReplayableBody, buffer_body};
pub use budget::{BudgetSettings, RetryBudget, RetryBudgets};
pub use policy::{RetryOn, RetryPolicy, TryFailure};

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
