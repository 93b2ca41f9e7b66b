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
mod tests;
