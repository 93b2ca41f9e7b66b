//! Outlier detection logic on an injected clock: `Instant` plus offsets,
//! never a sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use remora_proto::pb;
use remora_route::outlier::{MAX_EJECTION_TIME, OutlierError};

use super::*;
use crate::upstream::{Endpoint, Outcome};

const S200: Outcome = Outcome::Response(StatusCode::OK);
const S404: Outcome = Outcome::Response(StatusCode::NOT_FOUND);
const S500: Outcome = Outcome::Response(StatusCode::INTERNAL_SERVER_ERROR);
const S502: Outcome = Outcome::Response(StatusCode::BAD_GATEWAY);
const S503: Outcome = Outcome::Response(StatusCode::SERVICE_UNAVAILABLE);
const S504: Outcome = Outcome::Response(StatusCode::GATEWAY_TIMEOUT);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Records `outcome` `n` times, asserting that none of them ejects.
fn keep(d: &mut OutlierDetector, outcome: Outcome, n: usize, now: Instant, s: &OutlierSettings) {
    for i in 0..n {
        assert_eq!(
            d.record(outcome, now, s),
            Verdict::Keep,
            "{outcome:?} #{}",
            i + 1
        );
    }
}

/// Only the gateway-error threshold (the 5xx one out of the way).
fn gateway_only(n: u32) -> OutlierSettings {
    OutlierSettings {
        consecutive_5xx_errors: 1000,
        consecutive_gateway_errors: Some(n),
        ..OutlierSettings::default()
    }
}

/// A detector ejected `times` times in a row, each ejection starting the
/// instant the previous one ended; returns when the last one ends.
fn eject_in_a_row(
    d: &mut OutlierDetector,
    times: u32,
    t0: Instant,
    s: &OutlierSettings,
) -> Instant {
    let mut t = t0;
    for _ in 0..times {
        t = d.eject(t, s, Duration::ZERO);
        assert!(!d.is_ejected(t, s));
    }
    t
}

// ---- consecutive errors ----

#[test]
fn consecutive_5xx_eject_exactly_at_the_threshold() {
    let s = OutlierSettings::default();
    let now = Instant::now();
    let mut d = OutlierDetector::default();
    keep(&mut d, S500, 4, now, &s);
    assert_eq!(d.record(S500, now, &s), Verdict::Eject);

    let s = OutlierSettings {
        consecutive_5xx_errors: 1,
        ..OutlierSettings::default()
    };
    let mut d = OutlierDetector::default();
    assert_eq!(d.record(S503, now, &s), Verdict::Eject);
}

#[test]
fn a_success_or_a_4xx_in_between_resets_the_5xx_count() {
    let s = OutlierSettings::default();
    let now = Instant::now();
    let mut d = OutlierDetector::default();
    keep(&mut d, S500, 4, now, &s);
    keep(&mut d, S200, 1, now, &s);
    keep(&mut d, S500, 4, now, &s);
    keep(&mut d, S404, 1, now, &s);
    keep(&mut d, S500, 4, now, &s);
    assert_eq!(d.record(S500, now, &s), Verdict::Eject);
}

#[test]
fn connect_failures_and_resets_count_as_5xx() {
    let s = OutlierSettings::default();
    let now = Instant::now();
    let mut d = OutlierDetector::default();
    for o in [S500, Outcome::ConnectFailure, S503, Outcome::Reset] {
        keep(&mut d, o, 1, now, &s);
    }
    assert_eq!(d.record(Outcome::ConnectFailure, now, &s), Verdict::Eject);
}

#[test]
fn gateway_errors_count_502_503_504_connect_failure_and_reset_but_not_500() {
    let s = gateway_only(6);
    let now = Instant::now();
    let mut d = OutlierDetector::default();
    for o in [S502, S503, S504, Outcome::ConnectFailure, Outcome::Reset] {
        keep(&mut d, o, 1, now, &s);
    }
    assert_eq!(d.record(S502, now, &s), Verdict::Eject);

    // A 500 is a 5xx but not a gateway error: it breaks the run.
    let s = gateway_only(3);
    let mut d = OutlierDetector::default();
    keep(&mut d, S502, 2, now, &s);
    keep(&mut d, S500, 1, now, &s);
    keep(&mut d, S504, 2, now, &s);
    keep(&mut d, S200, 1, now, &s);
    keep(&mut d, S503, 2, now, &s);
    assert_eq!(d.record(Outcome::Reset, now, &s), Verdict::Eject);

    // 500s alone never reach the gateway threshold.
    let mut d = OutlierDetector::default();
    keep(&mut d, S500, 100, now, &s);
}

#[test]
fn gateway_errors_are_off_unless_set() {
    let s = OutlierSettings::default();
    assert_eq!(s.consecutive_gateway_errors, None);
    let now = Instant::now();
    let mut d = OutlierDetector::default();
    // Only the 5xx threshold (5) applies.
    keep(&mut d, S502, 4, now, &s);
    assert_eq!(d.record(S502, now, &s), Verdict::Eject);
}

#[test]
fn overflow_never_counts_nor_resets() {
    let now = Instant::now();
    let s = OutlierSettings {
        consecutive_5xx_errors: 1,
        consecutive_gateway_errors: Some(1),
        ..OutlierSettings::default()
    };
    let mut d = OutlierDetector::default();
    keep(&mut d, Outcome::Overflow, 100, now, &s);

    let s = OutlierSettings::default();
    let mut d = OutlierDetector::default();
    keep(&mut d, S500, 4, now, &s);
    keep(&mut d, Outcome::Overflow, 10, now, &s);
    assert_eq!(d.record(S500, now, &s), Verdict::Eject);
}

#[test]
fn a_zero_threshold_disables_its_check() {
    // Not reachable from the proto (0 there means "default"), but a zero
    // set in code must not turn every success into an ejection.
    let now = Instant::now();
    let s = OutlierSettings {
        consecutive_5xx_errors: 0,
        consecutive_gateway_errors: Some(0),
        ..OutlierSettings::default()
    };
    let mut d = OutlierDetector::default();
    keep(&mut d, S200, 10, now, &s);
    keep(&mut d, S503, 10, now, &s);
    keep(&mut d, Outcome::Reset, 10, now, &s);
}

#[test]
fn outcomes_while_ejected_are_ignored_and_counting_restarts_on_return() {
    let s = OutlierSettings::default();
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    keep(&mut d, S500, 4, t0, &s);
    assert_eq!(d.record(S500, t0, &s), Verdict::Eject);
    let until = d.eject(t0, &s, Duration::ZERO);
    // Requests that were in flight finish with errors: ignored.
    keep(&mut d, S500, 50, t0 + secs(1), &s);
    keep(
        &mut d,
        Outcome::Reset,
        50,
        until - Duration::from_nanos(1),
        &s,
    );
    assert_eq!(d.ejected_until(), Some(until));
    // Back: a fresh run of five is needed.
    keep(&mut d, S500, 4, until, &s);
    assert_eq!(d.ejected_until(), None);
    assert_eq!(d.record(S500, until, &s), Verdict::Eject);
}

#[test]
fn counters_reset_on_return() {
    // Four errors, then an ejection decided elsewhere (the gateway
    // threshold, or another cluster): on return the four are forgotten.
    let s = OutlierSettings::default();
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    keep(&mut d, S500, 4, t0, &s);
    let until = d.eject(t0, &s, Duration::ZERO);
    assert!(!d.is_ejected(until, &s));
    keep(&mut d, S500, 4, until, &s);
    assert_eq!(d.record(S500, until, &s), Verdict::Eject);
}

#[test]
fn spare_restarts_the_count() {
    let s = OutlierSettings::default();
    let now = Instant::now();
    let mut d = OutlierDetector::default();
    keep(&mut d, S500, 4, now, &s);
    assert_eq!(d.record(S500, now, &s), Verdict::Eject);
    d.spare();
    assert_eq!(d.ejected_until(), None);
    keep(&mut d, S500, 4, now, &s);
    assert_eq!(d.record(S500, now, &s), Verdict::Eject);
}

// ---- ejection timing ----

#[test]
fn first_ejection_is_base_plus_jitter_and_the_host_returns_exactly_at_until() {
    let s = OutlierSettings::default();
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    let jitter = Duration::from_millis(250);
    let until = d.eject(t0, &s, jitter);
    assert_eq!(until, t0 + secs(30) + jitter);
    assert_eq!(d.ejected_until(), Some(until));
    assert!(d.is_ejected(t0, &s));
    assert!(d.is_ejected(until - Duration::from_nanos(1), &s));
    assert!(!d.is_ejected(until, &s));
    assert_eq!(d.ejected_until(), None);
}

#[test]
fn each_ejection_in_a_row_adds_base_up_to_the_cap() {
    let s = OutlierSettings::default();
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    let mut t = t0;
    let mut lengths = Vec::new();
    for _ in 0..12 {
        let until = d.eject(t, &s, Duration::ZERO);
        lengths.push((until - t).as_secs());
        assert!(!d.is_ejected(until, &s));
        t = until;
    }
    assert_eq!(
        lengths,
        [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
    );
    assert_eq!(d.multiplier(t, &s), 12);
}

#[test]
fn ejection_time_caps_before_the_jitter_and_keeps_a_longer_base() {
    let s = OutlierSettings::default();
    let j = Duration::from_millis(700);
    assert_eq!(s.ejection_time(1, Duration::ZERO), secs(30));
    assert_eq!(s.ejection_time(1, j), secs(30) + j);
    assert_eq!(s.ejection_time(2, Duration::ZERO), secs(60));
    assert_eq!(s.ejection_time(10, Duration::ZERO), MAX_EJECTION_TIME);
    assert_eq!(s.ejection_time(11, j), MAX_EJECTION_TIME + j);
    assert_eq!(s.ejection_time(u32::MAX, Duration::ZERO), MAX_EJECTION_TIME);

    let long = OutlierSettings {
        base_ejection_time: secs(400),
        ..OutlierSettings::default()
    };
    assert_eq!(long.ejection_time(1, Duration::ZERO), secs(400));
    assert_eq!(long.ejection_time(2, Duration::ZERO), secs(400));
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    let back = eject_in_a_row(&mut d, 2, t0, &long);
    assert_eq!(back - t0, secs(800));
}

#[test]
fn the_multiplier_is_earned_back_one_step_per_full_interval_of_health() {
    let s = OutlierSettings::default(); // interval 10 s
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    let back = eject_in_a_row(&mut d, 3, t0, &s);
    assert_eq!(d.multiplier(back, &s), 3);
    assert_eq!(
        d.multiplier(back + secs(10) - Duration::from_nanos(1), &s),
        3
    );
    assert_eq!(d.multiplier(back + secs(10), &s), 2);
    assert_eq!(d.multiplier(back + secs(19), &s), 2);
    assert_eq!(d.multiplier(back + secs(20), &s), 1);
    assert_eq!(d.multiplier(back + secs(30), &s), 0);
    assert_eq!(d.multiplier(back + secs(1000), &s), 0);
    // All earned back: the next ejection is the base again.
    let t = back + secs(1000);
    assert_eq!(d.eject(t, &s, Duration::ZERO) - t, secs(30));
}

#[test]
fn a_partly_earned_back_multiplier_sets_the_next_ejection() {
    let s = OutlierSettings::default();
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    let back = eject_in_a_row(&mut d, 3, t0, &s);
    // One interval of health (read lazily by the record), then a new run.
    let t = back + secs(15);
    keep(&mut d, S500, 4, t, &s);
    assert_eq!(d.record(S500, t, &s), Verdict::Eject);
    assert_eq!(d.eject(t, &s, Duration::ZERO) - t, secs(90)); // (3-1+1) × 30
}

#[test]
fn nothing_is_earned_back_while_ejected() {
    let s = OutlierSettings::default();
    let t0 = Instant::now();
    let mut d = OutlierDetector::default();
    // Three in a row: the third lasts 90 s, nine intervals.
    let t = eject_in_a_row(&mut d, 2, t0, &s);
    let until = d.eject(t, &s, Duration::ZERO);
    assert_eq!(until - t, secs(90));
    assert_eq!(d.multiplier(until - Duration::from_nanos(1), &s), 3);
    assert!(d.is_ejected(until - Duration::from_nanos(1), &s));
    // The clock of health starts at the return, not before.
    assert_eq!(d.multiplier(until, &s), 3);
    assert_eq!(d.multiplier(until + secs(9), &s), 3);
    assert_eq!(d.multiplier(until + secs(10), &s), 2);
}

// ---- settings ----

#[test]
fn from_proto_zero_fields_take_istio_defaults() {
    let s = OutlierSettings::from_proto(&pb::OutlierDetection::default()).unwrap();
    assert_eq!(s, OutlierSettings::default());
    assert_eq!(
        s,
        OutlierSettings {
            consecutive_5xx_errors: 5,
            consecutive_gateway_errors: None,
            interval: secs(10),
            base_ejection_time: secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
            consecutive_connect_failures: None,
        }
    );
}

#[test]
fn from_proto_takes_the_values_sent() {
    let od = pb::OutlierDetection {
        consecutive_5xx_errors: Some(7),
        consecutive_gateway_errors: 3,
        interval: Some(Duration::from_millis(2_500).into()),
        base_ejection_time: Some(secs(45).into()),
        max_ejection_percent: 100,
        min_health_percent: 80,
    };
    assert_eq!(
        OutlierSettings::from_proto(&od).unwrap(),
        OutlierSettings {
            consecutive_5xx_errors: 7,
            consecutive_gateway_errors: Some(3),
            interval: Duration::from_millis(2_500),
            base_ejection_time: secs(45),
            max_ejection_percent: 100,
            min_health_percent: 80,
            consecutive_connect_failures: None,
        }
    );
}

#[test]
fn from_proto_rejects_a_percent_above_100() {
    let od = pb::OutlierDetection {
        max_ejection_percent: 101,
        ..Default::default()
    };
    let err = OutlierSettings::from_proto(&od).unwrap_err();
    assert_eq!(
        err,
        OutlierError::Percent {
            field: "maxEjectionPercent",
            value: 101
        }
    );
    assert_eq!(
        err.to_string(),
        "outlierDetection.maxEjectionPercent: 101 is not a percentage (0-100)"
    );

    let od = pb::OutlierDetection {
        min_health_percent: u32::MAX,
        ..Default::default()
    };
    assert_eq!(
        OutlierSettings::from_proto(&od),
        Err(OutlierError::Percent {
            field: "minHealthPercent",
            value: u32::MAX
        })
    );
}

#[test]
fn max_ejected_always_allows_one_host() {
    let s = OutlierSettings::default(); // 10%
    assert_eq!(s.max_ejected(1), 1);
    assert_eq!(s.max_ejected(3), 1);
    assert_eq!(s.max_ejected(9), 1);
    assert_eq!(s.max_ejected(19), 1);
    assert_eq!(s.max_ejected(20), 2);
    assert_eq!(s.max_ejected(29), 2);
    assert_eq!(s.max_ejected(100), 10);

    let all = OutlierSettings {
        max_ejection_percent: 100,
        ..OutlierSettings::default()
    };
    assert_eq!(all.max_ejected(1), 1);
    assert_eq!(all.max_ejected(3), 3);

    let half = OutlierSettings {
        max_ejection_percent: 50,
        ..OutlierSettings::default()
    };
    assert_eq!(half.max_ejected(3), 1);
    assert_eq!(half.max_ejected(4), 2);
}

#[test]
fn max_ejection_percent_zero_is_unset_from_the_proto_and_one_host_in_code() {
    // The proto cannot tell 0 from unset: 0 takes the default 10%.
    let od = pb::OutlierDetection {
        max_ejection_percent: 0,
        ..Default::default()
    };
    let s = OutlierSettings::from_proto(&od).unwrap();
    assert_eq!(s.max_ejection_percent, 10);
    assert_eq!(s.max_ejected(20), 2);
    // Set to 0 in code, the one-host floor still applies.
    let zero = OutlierSettings {
        max_ejection_percent: 0,
        ..OutlierSettings::default()
    };
    assert_eq!(zero.max_ejected(1), 1);
    assert_eq!(zero.max_ejected(100), 1);
}

#[test]
fn panics_with_no_healthy_host_or_below_min_health_percent() {
    let s = OutlierSettings::default(); // minHealthPercent 0
    assert!(s.panics(0, 1));
    assert!(s.panics(0, 3));
    assert!(!s.panics(1, 3));
    assert!(!s.panics(3, 3));

    let s = OutlierSettings {
        min_health_percent: 80,
        ..OutlierSettings::default()
    };
    assert!(s.panics(2, 3)); // 66% < 80%
    assert!(!s.panics(3, 3));
    assert!(!s.panics(8, 10)); // exactly 80% is not below
    assert!(s.panics(7, 10));

    let s = OutlierSettings {
        min_health_percent: 100,
        ..OutlierSettings::default()
    };
    assert!(s.panics(2, 3));
    assert!(!s.panics(3, 3));
}

#[test]
fn random_jitter_is_a_tenth_of_base_at_most_one_second() {
    let cases = [
        (secs(30), secs(1)),
        (secs(5), Duration::from_millis(500)),
        (Duration::from_millis(5), Duration::ZERO),
    ];
    for (base, max) in cases {
        let s = OutlierSettings {
            base_ejection_time: base,
            ..OutlierSettings::default()
        };
        for _ in 0..200 {
            assert!(s.random_jitter() <= max, "base {base:?}");
        }
    }
}

/// Records `S500` on `host` until the threshold; returns what the last one
/// did.
fn fail_until_verdict(
    cluster: &str,
    hosts: &[Arc<Endpoint>],
    host: &Arc<Endpoint>,
    now: Instant,
    s: &OutlierSettings,
) -> Option<Duration> {
    let mut last = None;
    for _ in 0..s.consecutive_5xx_errors {
        last = record(cluster, hosts, host, S500, now, s, || Duration::ZERO);
    }
    last
}

#[test]
fn the_decision_counts_over_the_hosts_of_the_recording_cluster_only() {
    let s = OutlierSettings::default(); // 10%: one host of two
    let now = Instant::now();
    let a = Arc::new(Endpoint::new("10.0.0.1:9080".into()));
    let b = Arc::new(Endpoint::new("10.0.0.2:9080".into()));
    let both = [Arc::clone(&a), Arc::clone(&b)];
    assert_eq!(
        fail_until_verdict("both", &both, &a, now, &s),
        Some(s.base_ejection_time)
    );
    assert!(a.is_ejected(now, &s));
    // A second host of the same two is kept in, and counts again.
    assert_eq!(fail_until_verdict("both", &both, &b, now, &s), None);
    assert!(!b.is_ejected(now, &s));
    // A cluster listing only `b` has room for it.
    let only_b = [Arc::clone(&b)];
    assert_eq!(
        fail_until_verdict("only-b", &only_b, &b, now, &s),
        Some(s.base_ejection_time)
    );
    assert!(b.is_ejected(now, &s));
}
