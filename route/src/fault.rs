//! Fault injection (VirtualService `fault`): delay some requests, answer
//! some locally with an error, each by its own percentage. An absent
//! percentage means "never", as in Istio.

use std::time::Duration;

use http::StatusCode;
use remora_proto::pb;

/// A share of requests, held in parts per million; in range once built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentage(u32);

/// Parts per million in 100%.
const MILLION: u32 = 1_000_000;

impl Percentage {
    /// From a percent in `[0, 100]`; `None` outside it or for NaN.
    pub fn from_percent(p: f64) -> Option<Self> {
        (0.0..=100.0)
            .contains(&p)
            .then(|| Self((p * 10_000.0).round() as u32))
    }

    /// Whether a request with the uniform `roll` in `[0, 1_000_000)` is in
    /// the share.
    pub fn applies(self, roll: u32) -> bool {
        roll < self.0
    }

    /// A uniform roll for [`Percentage::applies`].
    pub fn roll() -> u32 {
        rand::random_range(0..MILLION)
    }
}

/// How an aborted request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// With this HTTP status.
    Http(StatusCode),
    /// With 200 and this `grpc-status` (trailers-only response).
    Grpc(u32),
}

/// A route's compiled `fault`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPolicy {
    delay: Option<(Duration, Percentage)>,
    abort: Option<(Abort, Percentage)>,
}

impl FaultPolicy {
    /// Compiles `fault`. Errors name the field; the caller adds the route.
    pub fn compile(f: Option<&pb::Fault>) -> Result<Self, String> {
        let Some(f) = f else {
            return Ok(Self::default());
        };
        let percentage = |p: Option<f64>, what: &str| -> Result<Option<Percentage>, String> {
            p.map(|p| {
                Percentage::from_percent(p)
                    .ok_or_else(|| format!("fault.{what}.percentage: {p} is not in [0, 100]"))
            })
            .transpose()
        };
        let mut policy = Self::default();
        if let Some(d) = &f.delay
            && let Some(p) = percentage(d.percentage, "delay")?
        {
            let delay =
                crate::duration::required("fault.delay.fixedDelay", d.fixed_delay.as_ref())?;
            policy.delay = Some((delay, p));
        }
        if let Some(a) = &f.abort {
            let abort = match &a.status {
                Some(pb::fault_abort::Status::HttpStatus(code)) => {
                    match u16::try_from(*code)
                        .ok()
                        .filter(|c| (200..=599).contains(c))
                    {
                        Some(c) => Abort::Http(StatusCode::from_u16(c).map_err(|e| e.to_string())?),
                        None => {
                            return Err(format!(
                                "fault.abort.httpStatus: {code} is not in 200..=599"
                            ));
                        }
                    }
                }
                Some(pb::fault_abort::Status::GrpcStatus(code)) => {
                    if *code as usize >= crate::grpc::STATUS_NAMES.len() {
                        return Err(format!(
                            "fault.abort.grpcStatus: {code} is not a gRPC status (0..=16)"
                        ));
                    }
                    Abort::Grpc(*code)
                }
                None => {
                    return Err("fault.abort: needs httpStatus or grpcStatus".to_owned());
                }
            };
            if let Some(p) = percentage(a.percentage, "abort")? {
                policy.abort = Some((abort, p));
            }
        }
        Ok(policy)
    }

    /// The delay for a request with this `roll`, if it is delayed.
    pub fn delay(&self, roll: u32) -> Option<Duration> {
        self.delay.filter(|(_, p)| p.applies(roll)).map(|(d, _)| d)
    }

    /// The abort for a request with this `roll`, if it is aborted.
    pub fn abort(&self, roll: u32) -> Option<Abort> {
        self.abort.filter(|(_, p)| p.applies(roll)).map(|(a, _)| a)
    }

    /// Whether any fault may apply (to skip rolling dice otherwise).
    pub fn is_active(&self) -> bool {
        self.delay.is_some() || self.abort.is_some()
    }
}

#[cfg(test)]
mod tests;
