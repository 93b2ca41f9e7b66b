//! `google.protobuf.Duration` as the wire carries it, and the one conversion
//! of it into a [`std::time::Duration`].
//!
//! prost's own `prost_types::Duration` would do on the wire, but the generated
//! messages derive `serde::Serialize` (the proxy's `/config_dump`), which
//! it does not implement; this type is the same message, serialised as the
//! protobuf JSON mapping writes a Duration (`"1.500s"`).

use std::fmt;

/// Seconds in 10,000 years: the range `google.protobuf.Duration` allows.
const MAX_SECONDS: i64 = 315_576_000_000;

/// A `google.protobuf.Duration`: `seconds` and `nanos` of the same sign,
/// `nanos` in `(-1e9, 1e9)`, at most 10,000 years either way. A message off
/// the wire may be anything: convert it with [`std::time::Duration::try_from`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Duration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// The fraction of a second, in nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Why a wire [`Duration`] is not a duration a proxy can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Below zero.
    #[error("{0} is negative")]
    Negative(Duration),
    /// `nanos` outside `(-1e9, 1e9)`, or of the other sign than `seconds`.
    #[error(
        "seconds {}, nanos {} is not a valid Duration (nanos out of range or of the other sign)",
        .0.seconds,
        .0.nanos
    )]
    Malformed(Duration),
    /// Over the 10,000 years a `google.protobuf.Duration` may hold.
    #[error("{0} is over 10000 years")]
    TooLarge(Duration),
}

impl TryFrom<Duration> for std::time::Duration {
    type Error = DurationError;

    /// The one place a duration off the wire is read: what a proxy cannot
    /// apply (negative, malformed, over the protobuf range) is an error for
    /// the caller to NACK with, naming the field; nothing here panics.
    fn try_from(d: Duration) -> Result<Self, DurationError> {
        let Duration { seconds, nanos } = d;
        if !(-999_999_999..=999_999_999).contains(&nanos)
            || (seconds > 0 && nanos < 0)
            || (seconds < 0 && nanos > 0)
        {
            return Err(DurationError::Malformed(d));
        }
        if seconds < 0 || nanos < 0 {
            return Err(DurationError::Negative(d));
        }
        if seconds > MAX_SECONDS {
            return Err(DurationError::TooLarge(d));
        }
        // Both are non-negative and in range here.
        Ok(Self::new(seconds.unsigned_abs(), nanos.unsigned_abs()))
    }
}

impl Duration {
    /// The longest duration the wire allows, 10,000 years: what a longer
    /// [`std::time::Duration`] is clamped to on its way to the wire.
    pub const MAX: Self = Self {
        seconds: MAX_SECONDS,
        nanos: 999_999_999,
    };
}

impl From<std::time::Duration> for Duration {
    /// A duration for the wire. One over 10,000 years is clamped to
    /// [`Duration::MAX`] (the control plane refuses such a value when it
    /// reads the YAML, so it never sends one).
    fn from(d: std::time::Duration) -> Self {
        match i64::try_from(d.as_secs()) {
            Ok(seconds) if seconds <= MAX_SECONDS => Self {
                seconds,
                // Below 1e9, so it fits.
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            },
            _ => Self::MAX,
        }
    }
}

impl fmt::Display for Duration {
    /// The protobuf JSON mapping: seconds with 0, 3, 6 or 9 fractional
    /// digits and `s` (`30s`, `1.500s`, `-0.250s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.seconds < 0 || self.nanos < 0;
        let (seconds, nanos) = (self.seconds.unsigned_abs(), self.nanos.unsigned_abs());
        let sign = if negative { "-" } else { "" };
        if nanos == 0 {
            write!(f, "{sign}{seconds}s")
        } else if nanos % 1_000_000 == 0 {
            write!(f, "{sign}{seconds}.{:03}s", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            write!(f, "{sign}{seconds}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{sign}{seconds}.{nanos:09}s")
        }
    }
}

impl serde::Serialize for Duration {
    /// As the protobuf JSON mapping writes it (see [`fmt::Display`]).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests;
