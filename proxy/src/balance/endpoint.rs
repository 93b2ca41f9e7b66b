//! Picking an endpoint within a cluster, per DestinationRule `loadBalancer`,
//! leaving out the hosts outlier detection holds ejected.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rand::Rng;

use super::LoadBalancer;
use crate::outlier::OutlierSettings;
use crate::upstream::Endpoint;

/// Picks an endpoint, or `None` when there is none. `cursor` is the
/// cluster's round-robin position. (Clusters pick with [`pick_index`],
/// leaving out ejected hosts; this is the plain pick the tests measure.)
#[cfg(test)]
pub(crate) fn pick_endpoint<'e>(
    lb: LoadBalancer,
    endpoints: &'e [Arc<Endpoint>],
    cursor: &AtomicUsize,
) -> Option<&'e Arc<Endpoint>> {
    let i = pick_index(lb, endpoints.len(), cursor, |i| {
        endpoints[i].active_requests()
    })?;
    endpoints.get(i)
}

/// Picks an endpoint per `lb` among the hosts outlier detection has not
/// ejected at `now` (among all of them when too few are left: see
/// [`OutlierSettings::panics`]), preferring one not in `avoid` (the
/// endpoints that already failed this request) when another healthy one
/// exists. `cursor` is the cluster's round-robin position.
pub(crate) fn pick_healthy<'e>(
    lb: LoadBalancer,
    endpoints: &'e [Arc<Endpoint>],
    cursor: &AtomicUsize,
    ejection: &OutlierSettings,
    avoid: &[Arc<Endpoint>],
    now: Instant,
) -> Option<&'e Arc<Endpoint>> {
    let avoided = |e: &Arc<Endpoint>| avoid.iter().any(|a| Arc::ptr_eq(a, e));
    let ejected = |e: &Arc<Endpoint>| e.is_ejected(now, ejection);
    if !endpoints.iter().any(|e| avoided(e) || ejected(e)) {
        // The usual case: nothing to leave out, nothing to allocate.
        let i = pick_index(lb, endpoints.len(), cursor, |i| {
            endpoints[i].active_requests()
        })?;
        return endpoints.get(i);
    }
    let healthy: Vec<&Arc<Endpoint>> = endpoints.iter().filter(|e| !ejected(e)).collect();
    let panics = ejection.panics(healthy.len(), endpoints.len());
    let pool: Vec<&Arc<Endpoint>> = if panics {
        endpoints.iter().collect()
    } else {
        healthy
    };
    if pool.iter().any(|e| !avoided(e)) {
        pick_among(lb, cursor, &pool, |e| !avoided(e))
    } else {
        pick_among(lb, cursor, &pool, |_| true)
    }
}

/// Picks per `lb` among the `pool` entries that `keep`.
fn pick_among<'a>(
    lb: LoadBalancer,
    cursor: &AtomicUsize,
    pool: &[&'a Arc<Endpoint>],
    keep: impl Fn(&Arc<Endpoint>) -> bool,
) -> Option<&'a Arc<Endpoint>> {
    let candidates: Vec<&'a Arc<Endpoint>> = pool.iter().copied().filter(|e| keep(e)).collect();
    let i = pick_index(lb, candidates.len(), cursor, |i| {
        candidates[i].active_requests()
    })?;
    Some(candidates[i])
}

/// Picks one of `n` candidates, or `None` when `n` is 0; `active(i)` is
/// candidate `i`'s requests in flight (for least request). Callers that
/// leave out ejected hosts pass only the remaining ones.
pub(crate) fn pick_index(
    lb: LoadBalancer,
    n: usize,
    cursor: &AtomicUsize,
    active: impl Fn(usize) -> usize,
) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        n => Some(match lb {
            LoadBalancer::RoundRobin => cursor.fetch_add(1, Ordering::Relaxed) % n,
            LoadBalancer::Random => rand::rng().random_range(0..n),
            LoadBalancer::LeastRequest => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..n)) % n;
                if active(b) < active(a) { b } else { a }
            }
        }),
    }
}

#[cfg(test)]
mod tests;
