use super::*;

#[test]
fn durations_parse_with_units_or_as_seconds() {
    for (text, expected) in [
        ("5s", Duration::from_secs(5)),
        ("500ms", Duration::from_millis(500)),
        ("1m30s", Duration::from_secs(90)),
        ("0s", Duration::ZERO),
        ("7", Duration::from_secs(7)),
        ("2h", Duration::from_secs(7200)),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for bad in ["", "s", "5x", "5 s", "-1s", "1.5s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_quit_request_before_anyone_waits_is_kept() {
    let lifecycle = Lifecycle::new(true);
    lifecycle.request_quit();
    tokio::time::timeout(Duration::from_secs(1), lifecycle.quit_requested())
        .await
        .expect("the stored request wakes the waiter");
}
