//! The outlier state of one host, as pure logic over an injected clock.

use std::time::{Duration, Instant};

use super::OutlierSettings;

/// What one attempt on an endpoint came to, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status (5xx count as errors; 502,
    /// 503 and 504 also as gateway errors).
    Response(http::StatusCode),
    /// No connection could be made: a gateway error.
    ConnectFailure,
    /// The connection broke or timed out mid-request: a gateway error.
    Reset,
    /// A circuit-breaker limit refused the request locally: never counted.
    Overflow,
}

/// What a recorded outcome asks of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do.
    Keep,
    /// A consecutive-error threshold was reached: the cluster decides
    /// (`maxEjectionPercent`) and calls [`OutlierDetector::eject`] or
    /// [`OutlierDetector::spare`].
    Eject,
}

/// One host's consecutive errors and ejection history.
///
/// Every method takes `now`; a host returns from ejection, and earns back
/// its multiplier, when a call sees that the time has come. Nothing needs
/// a background sweep.
#[derive(Debug, Default, Clone)]
pub(crate) struct OutlierDetector {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_connect: u32,
    ejected_until: Option<Instant>,
    /// The ejection multiplier: ejections not yet earned back.
    times_ejected: u32,
    /// Start of the current interval without ejection, while the
    /// multiplier is above zero.
    healthy_since: Option<Instant>,
}

impl OutlierDetector {
    /// Counts what an attempt came to. Outcomes that arrive while the host
    /// is ejected (requests that were already in flight) are ignored, and
    /// overflow never counts.
    pub(crate) fn record(
        &mut self,
        outcome: Outcome,
        now: Instant,
        s: &OutlierSettings,
    ) -> Verdict {
        if self.is_ejected(now, s) {
            return Verdict::Keep;
        }
        self.consecutive_connect = if outcome == Outcome::ConnectFailure {
            self.consecutive_connect + 1
        } else {
            0
        };
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Overflow => return Verdict::Keep,
            Outcome::ConnectFailure | Outcome::Reset => (true, true),
            Outcome::Response(status) => (
                status.is_server_error(),
                matches!(status.as_u16(), 502..=504),
            ),
        };
        self.consecutive_5xx = if is_5xx { self.consecutive_5xx + 1 } else { 0 };
        self.consecutive_gateway = if is_gateway {
            self.consecutive_gateway + 1
        } else {
            0
        };
        // A threshold of 0 disables its check (Istio's meaning of `0`);
        // without the guard every answer, successes included, would eject.
        let hit = |count: u32, threshold: u32| threshold > 0 && count >= threshold;
        let errors_hit = hit(self.consecutive_5xx, s.consecutive_5xx_errors);
        let gateway_hit = s
            .consecutive_gateway_errors
            .is_some_and(|n| hit(self.consecutive_gateway, n));
        let connect_hit = s
            .consecutive_connect_failures
            .is_some_and(|n| hit(self.consecutive_connect, n));
        if errors_hit || gateway_hit || connect_hit {
            Verdict::Eject
        } else {
            Verdict::Keep
        }
    }

    /// Ejects the host: for `baseEjectionTime × multiplier` (capped) plus
    /// `jitter`. Returns when it will be back.
    pub(crate) fn eject(&mut self, now: Instant, s: &OutlierSettings, jitter: Duration) -> Instant {
        self.earn_back(now, s);
        self.times_ejected = self.times_ejected.saturating_add(1);
        let until = now + s.ejection_time(self.times_ejected, jitter);
        self.ejected_until = Some(until);
        self.healthy_since = None;
        self.reset_counters();
        until
    }

    /// The cluster refused the ejection (`maxEjectionPercent` reached): the
    /// host starts counting again, so it is considered once more after
    /// another run of errors.
    pub(crate) fn spare(&mut self) {
        self.reset_counters();
    }

    /// Whether the host is ejected at `now`; returns it (counters reset)
    /// when its time is up.
    pub(crate) fn is_ejected(&mut self, now: Instant, s: &OutlierSettings) -> bool {
        match self.ejected_until {
            Some(until) if now < until => true,
            Some(until) => {
                self.ejected_until = None;
                self.healthy_since = Some(until);
                self.reset_counters();
                self.earn_back(now, s);
                false
            }
            None => {
                self.earn_back(now, s);
                false
            }
        }
    }

    /// The ejection multiplier at `now`: ejections not yet earned back.
    #[cfg(test)]
    pub(crate) fn multiplier(&mut self, now: Instant, s: &OutlierSettings) -> u32 {
        self.is_ejected(now, s);
        self.times_ejected
    }

    /// When the current ejection ends, if the host is ejected.
    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Each full `interval` without ejection takes one step off the
    /// multiplier (Envoy decrements it once per sweep).
    fn earn_back(&mut self, now: Instant, s: &OutlierSettings) {
        let Some(since) = self.healthy_since else {
            return;
        };
        if self.ejected_until.is_some() || s.interval.is_zero() {
            return;
        }
        let elapsed = now.saturating_duration_since(since);
        let steps = (elapsed.as_nanos() / s.interval.as_nanos()).min(u128::from(u32::MAX)) as u32;
        let steps = steps.min(self.times_ejected);
        self.times_ejected -= steps;
        self.healthy_since = if self.times_ejected == 0 {
            None
        } else {
            Some(since + s.interval * steps)
        };
    }

    /// Whether some error count is running: a success must then reset it.
    pub(crate) fn counting(&self) -> bool {
        self.consecutive_5xx > 0 || self.consecutive_gateway > 0 || self.consecutive_connect > 0
    }

    fn reset_counters(&mut self) {
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        self.consecutive_connect = 0;
    }
}
