//! The wire's durations, read with the field they are in: the one
//! conversion ([`std::time::Duration::try_from`] of a
//! [`remora_proto::Duration`]) plus what each field's zero means.

use std::time::Duration;

/// An optional duration where 0 means none, as Envoy reads a route's
/// `timeout` and `perTryTimeout`: absent or 0 is `None`. Errors (a
/// negative or malformed value) name `field`.
pub(crate) fn zero_is_none(
    field: &str,
    d: Option<&remora_proto::Duration>,
) -> Result<Option<Duration>, String> {
    Ok(read(field, d)?.filter(|d| !d.is_zero()))
}

/// An optional duration that must be above zero when present (Envoy
/// refuses a zero connect timeout or outlier interval): absent is `None`,
/// 0 an error naming `field`.
pub(crate) fn above_zero(
    field: &str,
    d: Option<&remora_proto::Duration>,
) -> Result<Option<Duration>, String> {
    match read(field, d)? {
        Some(d) if d.is_zero() => Err(format!("{field}: must be above zero")),
        d => Ok(d),
    }
}

/// A required duration, which may be 0: absent is an error naming `field`.
pub(crate) fn required(
    field: &str,
    d: Option<&remora_proto::Duration>,
) -> Result<Duration, String> {
    read(field, d)?.ok_or_else(|| format!("{field}: missing"))
}

fn read(field: &str, d: Option<&remora_proto::Duration>) -> Result<Option<Duration>, String> {
    d.map(|&d| Duration::try_from(d).map_err(|e| format!("{field}: {e}")))
        .transpose()
}

#[cfg(test)]
mod tests {
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
}
