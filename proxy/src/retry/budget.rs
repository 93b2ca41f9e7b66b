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
mod tests;
