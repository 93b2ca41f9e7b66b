//! The retry budget (Linkerd's, after Finagle's): retries may add at most
//! `ratio` of the requests seen in the last `ttl`, plus `min_per_sec` per
//! second, so that retries cannot multiply load on a service that is
//! already failing.
//!
//! One budget per proxy per destination service (see [`RetryBudgets`]): a
//! failing service exhausts only its own budget, and the budget survives
//! config changes. Only first tries count as requests.
//!
//! The window is a ring of one-second slots, each an atomic word that holds
//! the second it counts and its count (tower's `TpsBudget` keeps a ring of
//! atomic slots too, but takes a mutex to rotate them; here a slot moves to
//! a new second in the same compare-and-swap that counts in it). The clock
//! is passed in, so the arithmetic is tested without sleeping.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The count of one second, in one atomic word: the second (since the
/// budget's epoch) plus one in the high 32 bits, 0 for a slot never used;
/// the count in the low 32 bits.
///
/// 32 bits of seconds last 136 years; 2^32 requests in one second to one
/// service through one proxy do not happen, so a count never carries into
/// the second.
#[derive(Debug, Default)]
struct Slot(AtomicU64);

const COUNT_BITS: u32 = 32;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// The word for `count` events in `second`.
fn pack(second: u64, count: u64) -> u64 {
    ((second + 1) << COUNT_BITS) | count
}

/// The second a word counts (`None` for a slot never used) and its count.
fn unpack(word: u64) -> (Option<u64>, u64) {
    ((word >> COUNT_BITS).checked_sub(1), word & COUNT_MASK)
}

/// The word after one more event in `second`: a word of an older second
/// starts over at one. A word already at a later second (a thread whose
/// clock read later got there first: it would take a stall of the whole
/// window) counts the event there rather than lose it.
fn plus_one(word: u64, second: u64) -> u64 {
    match unpack(word) {
        (Some(held), _) if held >= second => word + 1,
        _ => pack(second, 1),
    }
}

impl Slot {
    /// This slot's count if it counts a second in `oldest..=newest`; `word`
    /// is its value as read.
    fn count_in(word: u64, oldest: u64, newest: u64) -> u64 {
        match unpack(word) {
            (Some(second), count) if (oldest..=newest).contains(&second) => count,
            _ => 0,
        }
    }

    fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Counts one event in `second`.
    fn add(&self, second: u64) {
        let mut word = self.load();
        loop {
            if unpack(word).0 == Some(second) {
                // The usual case: the slot is at this second already.
                self.0.fetch_add(1, Ordering::AcqRel);
                return;
            }
            match self.0.compare_exchange_weak(
                word,
                plus_one(word, second),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => word = now,
            }
        }
    }
}

/// A time-bucketed retry budget.
///
/// # Concurrency
/// Lock-free: a first try is one atomic add (a compare-and-swap on the
/// first one of each second); a retry reads the window and takes its
/// retry with a compare-and-swap on the current second's slot, trying
/// again if another retry took one meanwhile, so that concurrent retries
/// never overdraw the budget.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    settings: BudgetSettings,
    epoch: Instant,
    /// First tries, one slot per second of the window.
    requests: Box<[Slot]>,
    /// Retries, likewise.
    retries: Box<[Slot]>,
}

impl RetryBudget {
    /// An empty budget whose clock starts at `epoch`.
    pub(crate) fn new(settings: BudgetSettings, epoch: Instant) -> Self {
        let slots = settings.ttl.as_secs().max(1) as usize;
        let ring = || (0..slots).map(|_| Slot::default()).collect();
        Self {
            settings,
            epoch,
            requests: ring(),
            retries: ring(),
        }
    }

    /// Counts a first try made at `now`.
    pub(crate) fn deposit(&self, now: Instant) {
        let second = self.second(now);
        self.requests[self.index(second)].add(second);
    }

    /// Takes one retry from the budget at `now` if it allows one.
    ///
    /// Allowed retries in the window: `ratio × requests` plus `min_per_sec`
    /// for each second of the window the budget has existed (so a fresh
    /// budget does not hand out `min_per_sec × ttl` retries in its first
    /// second, as Finagle's reserve does).
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let second = self.second(now);
        let oldest = self.oldest(second);
        let requests: u64 = self
            .requests
            .iter()
            .map(|s| Slot::count_in(s.load(), oldest, second))
            .sum();
        let seconds = (second + 1).min(self.retries.len() as u64);
        let allowed = self.settings.ratio * requests as f64
            + f64::from(self.settings.min_per_sec) * seconds as f64;
        let current = &self.retries[self.index(second)];
        loop {
            // Read the current slot first: the compare-and-swap below then
            // fails if any retry was taken after the window was summed.
            let seen = current.load();
            let others: u64 = self
                .retries
                .iter()
                .filter(|s| !std::ptr::eq(*s, current))
                .map(|s| Slot::count_in(s.load(), oldest, second))
                .sum();
            let retries = others + Slot::count_in(seen, oldest, second);
            if (retries as f64) + 1.0 > allowed {
                return false;
            }
            if current
                .0
                .compare_exchange_weak(
                    seen,
                    plus_one(seen, second),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Requests and retries counted in the window ending at `now`.
    #[cfg(test)]
    pub(crate) fn counts(&self, now: Instant) -> (u64, u64) {
        let second = self.second(now);
        let oldest = self.oldest(second);
        let sum = |ring: &[Slot]| -> u64 {
            ring.iter()
                .map(|s| Slot::count_in(s.load(), oldest, second))
                .sum()
        };
        (sum(&self.requests), sum(&self.retries))
    }

    /// Seconds since the epoch (at most 2^32 − 2: see [`Slot`]).
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch)
            .as_secs()
            .min(u64::from(u32::MAX) - 1)
    }

    /// The first second of the window that ends at `second`.
    fn oldest(&self, second: u64) -> u64 {
        second.saturating_sub(self.retries.len() as u64 - 1)
    }

    fn index(&self, second: u64) -> usize {
        (second % self.retries.len() as u64) as usize
    }
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
        // Tokio's clock, as the attempt loop's: tests pause it.
        let epoch = tokio::time::Instant::now().into_std();
        let fresh = Arc::new(RetryBudget::new(self.settings, epoch));
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
    fn a_slot_left_for_a_whole_window_starts_over() {
        let (b, t0) = budget(1.0, 0, 3);
        for _ in 0..5 {
            b.deposit(t0);
        }
        assert_eq!(withdraw_all(&b, t0), 5);
        // Seconds 1 and 2 see nothing; at second 3 slot 0 is reused.
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(b.counts(t3), (0, 0));
        b.deposit(t3);
        assert_eq!(b.counts(t3), (1, 0), "not 6: the old second's count went");
        assert!(b.try_withdraw(t3));
        assert_eq!(b.counts(t3), (1, 1), "not 6 retries either");
    }

    #[test]
    fn concurrent_retries_never_overdraw_the_budget() {
        // 8 threads deposit 1,000 first tries each, then race to withdraw:
        // 20% of 8,000 plus 10 for the first second is exactly 1,610.
        let (b, t0) = budget(0.2, 10, 10);
        let b = &b;
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(move || {
                    for _ in 0..1_000 {
                        b.deposit(t0);
                    }
                });
            }
        });
        assert_eq!(b.counts(t0), (8_000, 0), "no deposit lost");
        let taken: u64 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| s.spawn(move || withdraw_all(b, t0)))
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        });
        assert_eq!(taken, 1_610);
        assert_eq!(b.counts(t0), (8_000, 1_610));
    }

    #[test]
    fn deposits_and_retries_race_across_a_second_boundary() {
        // Threads at seconds 0 and 1 at once: each second's slot counts its
        // own, and the window sees both.
        let (b, t0) = budget(0.5, 0, 10);
        let t1 = t0 + Duration::from_secs(1);
        let b = &b;
        std::thread::scope(|s| {
            for i in 0..8 {
                let now = if i % 2 == 0 { t0 } else { t1 };
                s.spawn(move || {
                    for _ in 0..1_000 {
                        b.deposit(now);
                    }
                });
            }
        });
        assert_eq!(b.counts(t0), (4_000, 0), "second 0 alone");
        assert_eq!(b.counts(t1), (8_000, 0), "both seconds");
        assert_eq!(withdraw_all(b, t1), 4_000);
    }

    #[test]
    fn budgets_are_per_service_and_shared_per_service() {
        let budgets = RetryBudgets::new(BudgetSettings::default());
        let a = budgets.for_service("a");
        assert!(Arc::ptr_eq(&a, &budgets.for_service("a")));
        assert!(!Arc::ptr_eq(&a, &budgets.for_service("b")));
    }
}
