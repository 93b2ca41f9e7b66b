//! The retry budget (Linkerd's, after Finagle's): retries may add at most
//! `ratio` of the requests seen in the last `ttl`, plus `min_per_sec` per
//! second, so that retries cannot multiply load on a service that is
//! already failing.
//!
//! One budget per proxy per destination service (see [`RetryBudgets`]): a
//! failing service exhausts only its own budget, and the budget survives
//! config changes. Only first tries count as requests.
//!
//! The window is a ring of one-second buckets; the clock is passed in, so
//! the arithmetic is tested without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

/// Budget parameters (flags `--retry-budget-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// Retries allowed per request in the window (Linkerd: 0.2).
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic (Linkerd: 10).
    pub min_per_sec: u32,
    /// The window (Linkerd: 10 s); whole seconds, at least one.
    pub ttl: Duration,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Seconds since the budget's epoch this bucket counts for.
    second: u64,
    requests: u64,
    retries: u64,
}

/// A time-bucketed retry budget.
///
/// # Concurrency
/// One short mutex per destination service, never held across an await.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    settings: BudgetSettings,
    epoch: Instant,
    buckets: Mutex<Vec<Bucket>>,
}

impl RetryBudget {
    /// An empty budget whose clock starts at `epoch`.
    pub(crate) fn new(settings: BudgetSettings, epoch: Instant) -> Self {
        let slots = settings.ttl.as_secs().max(1) as usize;
        Self {
            settings,
            epoch,
            buckets: Mutex::new(vec![Bucket::default(); slots]),
        }
    }

    /// Counts a first try made at `now`.
    pub(crate) fn deposit(&self, now: Instant) {
        self.with_bucket(now, |b| b.requests += 1);
    }

    /// Takes one retry from the budget at `now` if it allows one.
    ///
    /// Allowed retries in the window: `ratio × requests` plus `min_per_sec`
    /// for each second of the window the budget has existed (so a fresh
    /// budget does not hand out `min_per_sec × ttl` retries in its first
    /// second, as Finagle's reserve does).
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let second = self.second(now);
        let mut buckets = self.lock();
        let (requests, retries) = window(&buckets, second, self.slots());
        let seconds = (second + 1).min(self.slots() as u64);
        let allowed = self.settings.ratio * requests as f64
            + f64::from(self.settings.min_per_sec) * seconds as f64;
        if (retries as f64) + 1.0 > allowed {
            return false;
        }
        bucket_for(&mut buckets, second).retries += 1;
        true
    }

    /// Requests and retries counted in the window ending at `now`.
    #[cfg(test)]
    pub(crate) fn counts(&self, now: Instant) -> (u64, u64) {
        let second = self.second(now);
        window(&self.lock(), second, self.slots())
    }

    fn with_bucket(&self, now: Instant, f: impl FnOnce(&mut Bucket)) {
        let second = self.second(now);
        f(bucket_for(&mut self.lock(), second));
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    fn slots(&self) -> usize {
        self.settings.ttl.as_secs().max(1) as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Bucket>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bucket for `second`, reset if it held an older second.
fn bucket_for(buckets: &mut [Bucket], second: u64) -> &mut Bucket {
    let len = buckets.len() as u64;
    let b = &mut buckets[(second % len) as usize];
    if b.second != second {
        *b = Bucket {
            second,
            ..Bucket::default()
        };
    }
    b
}

/// Sums the buckets of the last `slots` seconds up to `second`.
fn window(buckets: &[Bucket], second: u64, slots: usize) -> (u64, u64) {
    let oldest = second.saturating_sub(slots as u64 - 1);
    buckets
        .iter()
        .filter(|b| b.second >= oldest && b.second <= second)
        .fold((0, 0), |(req, ret), b| (req + b.requests, ret + b.retries))
}

/// The budgets of one proxy, one per destination service, kept across
/// config versions.
///
/// # Concurrency
/// Lookups are lock-free (`arc-swap`); a service seen for the first time
/// is added with a compare-and-swap loop.
#[derive(Debug)]
pub struct RetryBudgets {
    settings: BudgetSettings,
    budgets: ArcSwap<HashMap<String, Arc<RetryBudget>>>,
}

impl RetryBudgets {
    /// No budgets yet; each service's is made on its first request.
    pub fn new(settings: BudgetSettings) -> Self {
        Self {
            settings,
            budgets: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The budget of destination `service`.
    pub(crate) fn for_service(&self, service: &str) -> Arc<RetryBudget> {
        if let Some(b) = self.budgets.load().get(service) {
            return Arc::clone(b);
        }
        let fresh = Arc::new(RetryBudget::new(self.settings, Instant::now()));
        let mut found = None;
        self.budgets.rcu(|map| {
            let mut map = HashMap::clone(map);
            let b = map
                .entry(service.to_owned())
                .or_insert_with(|| Arc::clone(&fresh));
            found = Some(Arc::clone(b));
            map
        });
        found.unwrap_or(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_sec: u32, ttl_secs: u64) -> (RetryBudget, Instant) {
        let t0 = Instant::now();
        let settings = BudgetSettings {
            ratio,
            min_per_sec,
            ttl: Duration::from_secs(ttl_secs),
        };
        (RetryBudget::new(settings, t0), t0)
    }

    fn withdraw_all(b: &RetryBudget, now: Instant) -> u64 {
        let mut n = 0;
        while b.try_withdraw(now) {
            n += 1;
            assert!(n < 1_000_000, "budget never runs out");
        }
        n
    }

    #[test]
    fn ratio_allows_a_fifth_of_requests() {
        let (b, t0) = budget(0.2, 0, 10);
        for _ in 0..100 {
            b.deposit(t0);
        }
        assert_eq!(withdraw_all(&b, t0), 20);
        assert_eq!(b.counts(t0), (100, 20));
    }

    #[test]
    fn min_per_sec_grows_with_the_seconds_the_budget_has_lived() {
        let (b, t0) = budget(0.2, 10, 10);
        assert_eq!(withdraw_all(&b, t0), 10, "first second: 10, not 100");
        let t3 = t0 + Duration::from_millis(3_500);
        assert_eq!(withdraw_all(&b, t3), 30, "four seconds in: 40 in all");
        let t9 = t0 + Duration::from_secs(9);
        assert_eq!(withdraw_all(&b, t9), 60, "ten seconds: 100 in all");
    }

    #[test]
    fn ratio_and_min_per_sec_add_up() {
        let (b, t0) = budget(0.2, 10, 10);
        for _ in 0..50 {
            b.deposit(t0);
        }
        assert_eq!(withdraw_all(&b, t0), 20, "10 + 0.2 × 50");
    }

    #[test]
    fn requests_and_retries_expire_after_the_window() {
        let (b, t0) = budget(0.5, 0, 10);
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert_eq!(withdraw_all(&b, t0), 5);
        let t9 = t0 + Duration::from_secs(9);
        assert!(!b.try_withdraw(t9), "still inside the window");
        assert_eq!(b.counts(t9), (10, 5));
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(b.counts(t10), (0, 0), "the first second left the window");
        assert!(!b.try_withdraw(t10), "no requests, no ratio");
        b.deposit(t10);
        b.deposit(t10);
        assert!(b.try_withdraw(t10));
        assert!(!b.try_withdraw(t10));
    }

    #[test]
    fn a_bucket_is_reused_for_a_later_second() {
        let (b, t0) = budget(1.0, 0, 2);
        b.deposit(t0);
        let t2 = t0 + Duration::from_secs(2); // same slot as t0
        b.deposit(t2);
        assert_eq!(b.counts(t2), (1, 0));
    }

    #[test]
    fn budgets_are_per_service_and_shared_per_service() {
        let budgets = RetryBudgets::new(BudgetSettings::default());
        let a = budgets.for_service("a");
        assert!(Arc::ptr_eq(&a, &budgets.for_service("a")));
        assert!(!Arc::ptr_eq(&a, &budgets.for_service("b")));
    }
}
