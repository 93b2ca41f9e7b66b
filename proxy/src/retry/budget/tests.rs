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
