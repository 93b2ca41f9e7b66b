//! DestinationRule `outlierDetection`, validated: the thresholds and times
//! by which a proxy takes failing hosts out of load balancing. The
//! detector that applies them is the proxy's (it keeps per-host state).

use std::time::Duration;

use remora_proto::pb;

/// Longest ejection (Envoy's `max_ejection_time` default), unless
/// `baseEjectionTime` alone is longer.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// Validated `outlierDetection`: zero fields of the proto took Istio's
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSettings {
    /// `consecutive5xxErrors` (default 5): 5xx answers, connect failures
    /// and resets in a row that eject a host; 0 disables the check, as in
    /// Istio (for ejection on gateway errors only).
    pub consecutive_5xx_errors: u32,
    /// `consecutiveGatewayErrors`: 502/503/504, connect failures and resets
    /// in a row that eject a host; `None` when unset (disabled, as Istio).
    pub consecutive_gateway_errors: Option<u32>,
    /// `interval` (default 10 s): each interval a host spends un-ejected
    /// earns back one step of its ejection multiplier.
    pub interval: Duration,
    /// `baseEjectionTime` (default 30 s): the first ejection's length.
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent` (default 10): share of a cluster's hosts that
    /// may be ejected at once, rounded down; one host is always allowed.
    /// A `0` in the proto means unset and takes the default 10 (as Istio,
    /// which only passes the field to Envoy when above zero); a 0 set here
    /// still allows one host.
    pub max_ejection_percent: u8,
    /// `minHealthPercent` (default 0): below this share of un-ejected
    /// hosts the cluster ignores ejections and balances over all hosts.
    pub min_health_percent: u8,
    /// Connect failures in a row that eject a host (a connect failure only:
    /// any answer or reset resets the count); `None` in an
    /// `outlierDetection` block, where the thresholds above count connect
    /// failures. Set only in [`Self::FAILURE_ACCRUAL`].
    pub consecutive_connect_failures: Option<u32>,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            consecutive_5xx_errors: 5,
            consecutive_gateway_errors: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
            consecutive_connect_failures: None,
        }
    }
}

impl OutlierSettings {
    /// What a cluster without an `outlierDetection` block ejects on: 5
    /// consecutive connect failures, for 5 s × the ejection multiplier
    /// (one step earned back per 10 s without ejection), at most 10% of
    /// the hosts but always one, never on 5xx answers.
    pub const FAILURE_ACCRUAL: Self = Self {
        consecutive_5xx_errors: 0,
        consecutive_gateway_errors: None,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(5),
        max_ejection_percent: 10,
        min_health_percent: 0,
        consecutive_connect_failures: Some(5),
    };
}

/// Why an `outlierDetection` block cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutlierError {
    /// A percentage above 100.
    #[error("outlierDetection.{field}: {value} is not a percentage (0-100)")]
    Percent {
        /// `maxEjectionPercent` or `minHealthPercent`.
        field: &'static str,
        /// The value sent.
        value: u32,
    },
    /// `interval` or `baseEjectionTime` is zero, negative or malformed.
    #[error("{error}")]
    Duration {
        /// What is wrong, naming the field.
        error: String,
    },
}

impl OutlierSettings {
    /// Validates the proto block; zero numbers and absent durations take
    /// Istio's defaults.
    pub fn from_proto(od: &pb::OutlierDetection) -> Result<Self, OutlierError> {
        let d = Self::default();
        let percent = |field, value: u32, default: u8| match value {
            0 => Ok(default),
            1..=100 => Ok(value as u8),
            _ => Err(OutlierError::Percent { field, value }),
        };
        let duration = |field: &'static str, value: Option<&remora_proto::Duration>, default| {
            crate::duration::above_zero(field, value)
                .map(|d| d.unwrap_or(default))
                .map_err(|error| OutlierError::Duration { error })
        };
        Ok(Self {
            consecutive_5xx_errors: od
                .consecutive_5xx_errors
                .unwrap_or(d.consecutive_5xx_errors),
            consecutive_gateway_errors: (od.consecutive_gateway_errors > 0)
                .then_some(od.consecutive_gateway_errors),
            interval: duration(
                "outlierDetection.interval",
                od.interval.as_ref(),
                d.interval,
            )?,
            base_ejection_time: duration(
                "outlierDetection.baseEjectionTime",
                od.base_ejection_time.as_ref(),
                d.base_ejection_time,
            )?,
            max_ejection_percent: percent(
                "maxEjectionPercent",
                od.max_ejection_percent,
                d.max_ejection_percent,
            )?,
            min_health_percent: percent(
                "minHealthPercent",
                od.min_health_percent,
                d.min_health_percent,
            )?,
            consecutive_connect_failures: None,
        })
    }

    /// How many of `hosts` may be ejected at once: `maxEjectionPercent` of
    /// them rounded down, but never less than one.
    pub fn max_ejected(&self, hosts: usize) -> usize {
        (hosts * usize::from(self.max_ejection_percent) / 100).max(1)
    }

    /// Whether `healthy` of `hosts` is below `minHealthPercent`, or zero:
    /// then the cluster balances over all hosts (Envoy's panic mode).
    pub fn panics(&self, healthy: usize, hosts: usize) -> bool {
        healthy == 0 || healthy * 100 < hosts * usize::from(self.min_health_percent)
    }

    /// The length of an ejection that is the host's `times`-th in a row:
    /// `baseEjectionTime × times`, capped at [`MAX_EJECTION_TIME`] (or at
    /// `baseEjectionTime` when that is longer), plus `jitter`.
    pub fn ejection_time(&self, times: u32, jitter: Duration) -> Duration {
        let cap = MAX_EJECTION_TIME.max(self.base_ejection_time);
        self.base_ejection_time.saturating_mul(times).min(cap) + jitter
    }

    /// A random jitter for one ejection: up to a tenth of
    /// `baseEjectionTime`, at most one second, so that hosts ejected
    /// together do not all return in the same instant.
    pub fn random_jitter(&self) -> Duration {
        use rand::Rng;
        let max = (self.base_ejection_time / 10).min(Duration::from_secs(1));
        let max_ms = max.as_millis() as u64;
        if max_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::rng().random_range(0..=max_ms))
    }
}
