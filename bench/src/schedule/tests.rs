use super::*;

#[test]
fn requests_are_due_at_multiples_of_the_interval() {
    let s = OpenLoopSchedule::new(1_000, 4, Duration::from_secs(1)).expect("valid");
    assert_eq!(s.due(0), Duration::ZERO);
    assert_eq!(s.due(1), Duration::from_millis(1));
    assert_eq!(s.due(999), Duration::from_millis(999));
    assert_eq!(s.total(), 1_000);
}

#[test]
fn workers_share_the_run_round_robin_without_gaps_or_overlap() {
    let s = OpenLoopSchedule::new(10_000, 3, Duration::from_millis(10)).expect("valid");
    let mut seen = Vec::new();
    for w in 0..3 {
        let mut n = 0;
        while let Some(at) = s.due_for(w, n) {
            seen.push(at);
            n += 1;
            assert!(n <= s.total(), "a worker's loop ends");
        }
    }
    seen.sort();
    let want: Vec<Duration> = (0..s.total()).map(|k| s.due(k)).collect();
    assert_eq!(seen, want);
    assert_eq!(seen.len(), 100);
}

#[test]
fn a_late_request_counts_its_wait_from_the_intended_time() {
    // Due at 5 ms, sent late at 9 ms, answered at 9.2 ms: 4.2 ms.
    let due = Duration::from_millis(5);
    let done = Duration::from_micros(9_200);
    assert_eq!(
        OpenLoopSchedule::latency(due, done),
        Duration::from_micros(4_200)
    );
    assert_eq!(OpenLoopSchedule::latency(done, due), Duration::ZERO);
}

#[test]
fn zero_rate_or_no_workers_is_refused() {
    assert!(OpenLoopSchedule::new(0, 1, Duration::from_secs(1)).is_none());
    assert!(OpenLoopSchedule::new(1, 0, Duration::from_secs(1)).is_none());
}
