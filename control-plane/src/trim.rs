//! Gives memory back to the system once proxies leave.
//!
//! Every discovery stream holds buffers while it lives; when thousands of
//! proxies leave, glibc keeps the freed pages in its arenas, so the process
//! stays at its peak (670 MiB after 5,000 proxies and a churn phase had
//! left, with a few MB live; see docs/performance.md). `malloc_trim(0)`
//! returns the free pages of every arena. It walks the heap, so it runs
//! only after the number of open streams has fallen, at most once per
//! [`PERIOD`], on the blocking pool.

use std::time::Duration;

use crate::metrics::Metrics;

/// How often the stream count is looked at.
pub const PERIOD: Duration = Duration::from_secs(2);

/// Trims after each period in which open streams fell below the most seen
/// since the last trim. Runs until the runtime ends.
pub async fn when_proxies_leave(metrics: Metrics) {
    let mut interval = tokio::time::interval(PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak = 0;
    loop {
        interval.tick().await;
        let open = metrics.connected_proxies();
        if should_trim(&mut peak, open) {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

/// Whether streams fell since the last trim; `peak` follows the most open.
fn should_trim(peak: &mut i64, open: i64) -> bool {
    if open < *peak {
        *peak = open;
        return true;
    }
    *peak = open;
    false
}

/// Returns the allocator's free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: malloc_trim takes no pointer and only releases free memory;
    // glibc makes it safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give pages back on their own, or not at all.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

#[cfg(test)]
mod tests;
