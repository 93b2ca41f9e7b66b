//! Outlier detection (DestinationRule `outlierDetection`): hosts that keep
//! failing are taken out of load balancing for a while.
//!
//! # Design
//! - The state of a host ([`OutlierDetector`]) lives on its
//!   [`Endpoint`](crate::upstream::Endpoint), which is shared by every
//!   config version and every cluster that lists the address. So an
//!   ejection survives a config push, and a host ejected through the
//!   service-wide cluster is also out of a subset cluster that lists it:
//!   ejection is per host within the mesh, as a user reading "this pod is
//!   ejected" expects.
//! - The cluster that records the failure decides ([`record`], over any
//!   [`Host`]) whether its `maxEjectionPercent` allows the ejection,
//!   counting over **its own** endpoints; at least one host may always be
//!   ejected (Envoy ejects nothing in a cluster of fewer than 10 hosts at
//!   the default 10%, envoy#26877).
//! - Nothing runs in the background: a host returns when a pick or a
//!   record sees that its ejection time has passed, and the multiplier a
//!   healthy host earns back is computed from the intervals elapsed. The
//!   logic takes `now` as a parameter, so tests need no sleeps.
//! - With no `outlierDetection` block, a host is still ejected after
//!   [`OutlierSettings::FAILURE_ACCRUAL`]'s consecutive connect failures
//!   (5 in a row: the TCP or mTLS connect failed, or the peer sidecar
//!   could not connect to its app), for 5 s × the ejection multiplier, at
//!   most 10% of the cluster's hosts but always one, as Linkerd's failure
//!   accrual does. Istio and Envoy eject nothing without the block; a
//!   host whose connections are refused serves nobody. With a block, its
//!   settings alone apply (its thresholds count connect failures too).

mod detector;
mod ejection;

pub use detector::Outcome;
pub(crate) use detector::{OutlierDetector, Verdict};
pub(crate) use ejection::{Host, record};
pub(crate) use remora_route::outlier::OutlierSettings;

#[cfg(test)]
mod tests;
