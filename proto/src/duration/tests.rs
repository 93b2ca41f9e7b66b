use super::*;

fn wire(seconds: i64, nanos: i32) -> Duration {
    Duration { seconds, nanos }
}

fn std(d: Duration) -> Result<std::time::Duration, DurationError> {
    std::time::Duration::try_from(d)
}

#[test]
fn valid_durations_convert_exactly() {
    assert_eq!(std(wire(0, 0)), Ok(std::time::Duration::ZERO));
    assert_eq!(
        std(wire(1, 500_000_000)),
        Ok(std::time::Duration::from_millis(1500))
    );
    assert_eq!(std(wire(0, 1)), Ok(std::time::Duration::from_nanos(1)));
    assert_eq!(
        std(Duration::MAX),
        Ok(std::time::Duration::new(315_576_000_000, 999_999_999))
    );
}

#[test]
fn negative_durations_are_refused_not_panicked_on() {
    for d in [
        wire(-1, 0),
        wire(0, -1),
        wire(-1, -500_000_000),
        wire(i64::MIN, 0),
    ] {
        assert_eq!(std(d), Err(DurationError::Negative(d)), "{d:?}");
    }
    assert_eq!(std(wire(-1, 0)).unwrap_err().to_string(), "-1s is negative");
    assert_eq!(
        std(wire(0, -250_000_000)).unwrap_err().to_string(),
        "-0.250s is negative"
    );
}

#[test]
fn nanos_out_of_range_or_of_the_other_sign_are_refused() {
    for d in [
        wire(0, 1_000_000_000),
        wire(0, i32::MAX),
        wire(0, i32::MIN),
        wire(1, -1),
        wire(-1, 1),
    ] {
        assert_eq!(std(d), Err(DurationError::Malformed(d)), "{d:?}");
    }
}

#[test]
fn durations_over_ten_thousand_years_are_refused() {
    for d in [wire(315_576_000_001, 0), wire(i64::MAX, 999_999_999)] {
        assert_eq!(std(d), Err(DurationError::TooLarge(d)), "{d:?}");
    }
}

#[test]
fn std_durations_go_on_the_wire_and_come_back() {
    for d in [
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(250),
        std::time::Duration::from_secs(3600),
        std::time::Duration::new(7, 1),
    ] {
        assert_eq!(std(Duration::from(d)), Ok(d));
    }
    assert_eq!(Duration::from(std::time::Duration::MAX), Duration::MAX);
}

#[test]
fn shown_as_the_protobuf_json_mapping_writes_it() {
    let shown = |s, n| wire(s, n).to_string();
    assert_eq!(shown(30, 0), "30s");
    assert_eq!(shown(1, 500_000_000), "1.500s");
    assert_eq!(shown(0, 250_000), "0.000250s");
    assert_eq!(shown(0, 7), "0.000000007s");
    assert_eq!(shown(-2, -100_000_000), "-2.100s");
    assert_eq!(
        serde_json::to_value(wire(0, 100_000_000)).expect("serialises"),
        serde_json::json!("0.100s")
    );
}
