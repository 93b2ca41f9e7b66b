//! Load balancing: which destination (subset) a route sends to, and which
//! endpoint of that subset serves the request.

mod endpoint;
mod weighted;

pub use endpoint::{LoadBalancer, pick_endpoint, pick_index};
pub use weighted::WeightedSchedule;
