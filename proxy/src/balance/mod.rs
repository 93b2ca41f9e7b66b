//! Load balancing: which endpoint of a cluster serves the request. Which
//! destination (subset) a route sends to is the route's
//! ([`remora_route::WeightedSchedule`]).

mod endpoint;

pub(crate) use endpoint::pick_healthy;
pub(crate) use remora_route::LoadBalancer;
