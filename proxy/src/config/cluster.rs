//! A cluster: one (service, subset) with its endpoints and policy.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use remora_proto::pb;

use super::ConfigError;
use crate::balance::{LoadBalancer, pick_endpoint};
use crate::upstream::{Endpoint, EndpointRegistry, Outcome, PoolSettings};

/// One (service, subset): the unit of load balancing.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    service: String,
    subset: String,
    load_balancer: LoadBalancer,
    endpoints: Vec<Arc<Endpoint>>,
    cursor: AtomicUsize,
    pool: PoolSettings,
}

impl Cluster {
    pub(super) fn build(c: &pb::Cluster, registry: &EndpointRegistry) -> Result<Self, ConfigError> {
        let load_balancer = pb::LoadBalancer::try_from(c.load_balancer)
            .map_err(|_| ConfigError::UnknownLoadBalancer {
                cluster: c.name.clone(),
                value: c.load_balancer,
            })?
            .into();
        let endpoints = c
            .endpoints
            .iter()
            .map(|e| {
                if is_host_port(&e.address) {
                    Ok(registry.get(&e.address))
                } else {
                    Err(ConfigError::BadAddress {
                        cluster: c.name.clone(),
                        address: e.address.clone(),
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut pool = PoolSettings::default();
        if let Some(cp) = &c.connection_pool {
            if cp.connect_timeout_ms > 0 {
                pool.connect_timeout = Duration::from_millis(cp.connect_timeout_ms);
            }
            pool.max_requests_per_connection = cp.max_requests_per_connection;
        }
        Ok(Self {
            name: c.name.clone(),
            service: c.service.clone(),
            subset: c.subset.clone(),
            load_balancer,
            endpoints,
            cursor: AtomicUsize::new(0),
            pool,
        })
    }

    /// `<subset>|<service>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's FQDN.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The subset, empty for the whole service.
    pub fn subset(&self) -> &str {
        &self.subset
    }

    /// Connection pool settings for requests to this cluster.
    pub fn pool(&self) -> &PoolSettings {
        &self.pool
    }

    /// Picks an endpoint per the cluster's load balancer.
    pub fn pick_endpoint(&self) -> Option<&Arc<Endpoint>> {
        pick_endpoint(self.load_balancer, &self.endpoints, &self.cursor)
    }

    /// Picks an endpoint, preferring one not in `avoid` (the endpoints that
    /// already failed this request) when another exists.
    pub fn pick_endpoint_avoiding(&self, avoid: &[Arc<Endpoint>]) -> Option<&Arc<Endpoint>> {
        let first = self.pick_endpoint()?;
        if !avoid.iter().any(|a| Arc::ptr_eq(a, first)) {
            return Some(first);
        }
        self.endpoints
            .iter()
            .find(|e| !avoid.iter().any(|a| Arc::ptr_eq(a, e)))
            .or(Some(first))
    }

    /// Records what an attempt on `endpoint` came to, for outlier detection.
    pub fn record(&self, endpoint: &Arc<Endpoint>, outcome: Outcome) {
        // Outlier detection arrives with the resilience work.
        let _ = (endpoint, outcome);
    }
}

fn is_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
