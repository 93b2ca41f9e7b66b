use super::*;

fn wire(seconds: i64, nanos: i32) -> remora_proto::Duration {
    remora_proto::Duration { seconds, nanos }
}

#[test]
fn each_rule_reads_absent_zero_and_a_value_its_way() {
    let ms = Duration::from_millis;
    assert_eq!(zero_is_none("timeout", None), Ok(None));
    assert_eq!(zero_is_none("timeout", Some(&wire(0, 0))), Ok(None));
    assert_eq!(
        zero_is_none("timeout", Some(&wire(1, 0))),
        Ok(Some(ms(1000)))
    );
    assert_eq!(above_zero("interval", None), Ok(None));
    assert_eq!(
        above_zero("interval", Some(&wire(0, 0))),
        Err("interval: must be above zero".to_owned())
    );
    assert_eq!(
        above_zero("interval", Some(&wire(0, 5_000_000))),
        Ok(Some(ms(5)))
    );
    assert_eq!(
        required("fixedDelay", None),
        Err("fixedDelay: missing".to_owned())
    );
    assert_eq!(
        required("fixedDelay", Some(&wire(0, 0))),
        Ok(Duration::ZERO)
    );
}

#[test]
fn bad_values_name_the_field_whatever_the_rule() {
    let negative = wire(-1, 0);
    let malformed = wire(0, 1_000_000_000);
    assert_eq!(
        zero_is_none("timeout", Some(&negative)),
        Err("timeout: -1s is negative".to_owned())
    );
    assert_eq!(
        above_zero("interval", Some(&negative)),
        Err("interval: -1s is negative".to_owned())
    );
    let err = required("fixedDelay", Some(&malformed)).unwrap_err();
    assert!(err.starts_with("fixedDelay: "), "{err}");
    assert!(err.contains("nanos out of range"), "{err}");
}
