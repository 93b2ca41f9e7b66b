//! Choosing between weighted destinations: smooth weighted round robin.
//!
//! The whole smooth-WRR sequence (nginx's algorithm) is computed once per
//! config and walked with one atomic counter, so picking takes no lock and
//! 90/10 gives exactly 9:1 in every 10 picks through one proxy. A new
//! config whose route splits the same way walks on with the same counter
//! ([`WeightedSchedule::continue_from`]): a push that changes something else
//! (a registration anywhere in the mesh) does not restart the sequence.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest precomputed sequence. Weights whose reduced sum is longer are
/// scaled to fit, off by less than 0.01% of the traffic per destination.
const MAX_PERIOD: u64 = 10_000;

/// A precomputed smooth weighted round-robin schedule.
#[derive(Debug)]
pub struct WeightedSchedule {
    order: Box<[u16]>,
    /// Shared with the schedules of earlier configs that split the same way.
    next: Arc<AtomicUsize>,
}

impl WeightedSchedule {
    /// Builds the schedule for `weights` (shares of their sum). `None` when
    /// there are no weights, more than `u16::MAX` of them, or all are zero.
    pub fn new(weights: &[u32]) -> Option<Self> {
        if weights.len() > usize::from(u16::MAX) {
            return None;
        }
        let reduced = reduce(weights)?;
        let sum: i64 = reduced.iter().sum();
        let mut current = vec![0i64; reduced.len()];
        let mut order = Vec::with_capacity(sum as usize);
        for _ in 0..sum {
            let mut best = 0;
            for (i, w) in reduced.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= sum;
            order.push(best as u16);
        }
        Some(Self {
            order: order.into_boxed_slice(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Walks on where `previous` (the same route in the config before)
    /// is, if it is the same sequence: the caller checks that it is over
    /// the same destinations. Otherwise this schedule starts afresh.
    pub fn continue_from(&mut self, previous: &WeightedSchedule) {
        if self.order == previous.order {
            self.next = Arc::clone(&previous.next);
        }
    }

    /// The index of the destination for the next request.
    pub fn pick(&self) -> usize {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        usize::from(self.order[n % self.order.len()])
    }
}

/// Divides by the common divisor, then scales to at most `MAX_PERIOD`
/// keeping every non-zero weight at least 1.
fn reduce(weights: &[u32]) -> Option<Vec<i64>> {
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
    if g == 0 {
        return None;
    }
    let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w) / g).collect();
    let sum: u64 = reduced.iter().sum();
    let scaled = if sum <= MAX_PERIOD {
        reduced
    } else {
        reduced
            .iter()
            .map(|&w| {
                if w == 0 {
                    0
                } else {
                    (w * MAX_PERIOD / sum).max(1)
                }
            })
            .collect()
    };
    Some(scaled.into_iter().map(|w| w as i64).collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests;
