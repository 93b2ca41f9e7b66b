//! Routing: from a request's host to a virtual host, then the first route
//! whose matches hold, then a weighted destination.
//!
//! The destination type `D` is the user's: the proxy routes to its live
//! clusters (`Arc<Cluster>`), the control plane to nothing more than the
//! fact that the cluster exists.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use remora_proto::pb;

use crate::fault::FaultPolicy;
use crate::retry::RetryPolicy;
use crate::{ConfigError, RequestMatch, WeightedSchedule};

/// The virtual hosts of a snapshot by domain (lower-case, without port).
#[derive(Debug)]
pub struct RouteTable<D> {
    hosts: HashMap<String, Arc<VirtualHost<D>>>,
}

impl<D> Default for RouteTable<D> {
    fn default() -> Self {
        Self {
            hosts: HashMap::new(),
        }
    }
}

impl<D> RouteTable<D> {
    /// Compiles the snapshot's virtual hosts; `resolve` gives the
    /// destination a cluster name stands for (`None`: no such cluster).
    pub fn compile(
        virtual_hosts: &[pb::VirtualHost],
        resolve: impl Fn(&str) -> Option<D>,
    ) -> Result<Self, ConfigError> {
        Self::compile_after(virtual_hosts, None, resolve)
    }

    /// As [`Self::compile`], where `previous` is the table in force: a
    /// route that splits as the route of its name and place there did goes
    /// on with its weighted sequence ([`WeightedSchedule::continue_from`]).
    pub fn compile_after(
        virtual_hosts: &[pb::VirtualHost],
        previous: Option<&RouteTable<D>>,
        resolve: impl Fn(&str) -> Option<D>,
    ) -> Result<Self, ConfigError> {
        let mut hosts: HashMap<String, Arc<VirtualHost<D>>> = HashMap::new();
        for vh in virtual_hosts {
            let before = previous
                .zip(vh.domains.first())
                .and_then(|(p, domain)| p.hosts.get(&domain.to_ascii_lowercase()))
                .filter(|h| h.name == vh.name);
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut route = Route::compile(r, &vh.name, &resolve)?;
                    if let Some(old) = before.and_then(|h| h.routes.get(i)) {
                        route.continue_from(old);
                    }
                    Ok(route)
                })
                .collect::<Result<Vec<_>, ConfigError>>()?;
            let ports = vh
                .ports
                .iter()
                .map(|&port| match u16::try_from(port) {
                    Ok(p) if p > 0 => Ok(p),
                    _ => Err(ConfigError::BadPort {
                        host: vh.name.clone(),
                        port,
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let host = Arc::new(VirtualHost::new(vh.name.clone(), routes).with_ports(ports));
            for domain in &vh.domains {
                if let Some(first) = hosts.insert(domain.to_ascii_lowercase(), Arc::clone(&host)) {
                    return Err(ConfigError::DuplicateDomain {
                        domain: domain.clone(),
                        first: first.name().to_owned(),
                        second: vh.name.clone(),
                    });
                }
            }
        }
        Ok(Self { hosts })
    }

    /// The virtual host for a lower-case host name without port.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost<D>> {
        self.hosts.get(host).map(|h| &**h)
    }
}

/// The routes of one destination service.
#[derive(Debug)]
pub struct VirtualHost<D> {
    name: String,
    routes: Vec<Route<D>>,
    /// The service's declared ports; empty: any.
    ports: Vec<u16>,
}

impl<D> VirtualHost<D> {
    /// A virtual host with its routes in match order, on any port.
    pub fn new(name: String, routes: Vec<Route<D>>) -> Self {
        Self {
            name,
            routes,
            ports: Vec::new(),
        }
    }

    /// The same virtual host, only for a Host without a port or with one
    /// of `ports` (none: any port).
    pub fn with_ports(mut self, ports: Vec<u16>) -> Self {
        self.ports = ports;
        self
    }

    /// Whether a request whose Host carries `port` (if any) is for this
    /// virtual host: Istio answers a port the service does not declare
    /// with 404.
    pub fn serves_port(&self, port: Option<u16>) -> bool {
        match port {
            Some(port) if !self.ports.is_empty() => self.ports.contains(&port),
            _ => true,
        }
    }

    /// The service FQDN this virtual host routes for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first route that matches the request: Istio's `http[]` order.
    pub fn route(&self, req: &Parts) -> Option<&Route<D>> {
        self.routes.iter().find(|r| r.matches(req))
    }
}

/// One `http[]` entry: matches (OR'd), weighted destinations, and the
/// resilience policy (`timeout`, `retries`, `fault`).
#[derive(Debug)]
pub struct Route<D> {
    name: String,
    matches: Vec<RequestMatch>,
    destinations: Vec<D>,
    /// The destinations' cluster names and weights, as sent.
    split: Vec<(String, u32)>,
    schedule: WeightedSchedule,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    fault: FaultPolicy,
}

impl<D> Route<D> {
    /// Compiles a proto route; `host` names the virtual host in errors,
    /// `resolve` gives the destination a cluster name stands for.
    pub fn compile(
        r: &pb::Route,
        host: &str,
        resolve: impl Fn(&str) -> Option<D>,
    ) -> Result<Self, ConfigError> {
        let field = format!("{host}: route `{}`", r.name);
        let matches = r
            .matches
            .iter()
            .enumerate()
            .map(|(i, m)| RequestMatch::compile(m, &format!("{field} match[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let targets = r
            .destinations
            .iter()
            .map(|d| {
                resolve(&d.cluster).ok_or_else(|| ConfigError::UnknownCluster {
                    route: field.clone(),
                    cluster: d.cluster.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let weights: Vec<u32> = r.destinations.iter().map(|d| d.weight).collect();
        let schedule = WeightedSchedule::new(&weights).ok_or_else(|| ConfigError::NoWeight {
            route: field.clone(),
        })?;
        let policy_error = |error| ConfigError::RoutePolicy {
            route: field.clone(),
            error,
        };
        let retry = RetryPolicy::compile(r.retry.as_ref()).map_err(policy_error)?;
        let fault = FaultPolicy::compile(r.fault.as_ref()).map_err(policy_error)?;
        let timeout =
            crate::duration::zero_is_none("timeout", r.timeout.as_ref()).map_err(policy_error)?;
        Ok(Self {
            name: r.name.clone(),
            matches,
            destinations: targets,
            split: r
                .destinations
                .iter()
                .map(|d| (d.cluster.clone(), d.weight))
                .collect(),
            schedule,
            timeout,
            retry,
            fault,
        })
    }

    /// The route's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Goes on with `previous`'s weighted sequence if it has this route's
    /// name and splits between the same clusters with the same weights.
    fn continue_from(&mut self, previous: &Route<D>) {
        if self.name == previous.name && self.split == previous.split {
            self.schedule.continue_from(&previous.schedule);
        }
    }

    /// An empty match list matches everything; otherwise any one entry.
    pub fn matches(&self, req: &Parts) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(req))
    }

    /// `timeout`: bounds the whole request, retries and backoff included,
    /// until the response headers. `None`: no bound.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// `retries`, or the safe default when the route has none.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// `fault`; inactive when the route has none.
    pub fn fault(&self) -> &FaultPolicy {
        &self.fault
    }

    /// The destination for the next request (smooth weighted round robin).
    pub fn pick_destination(&self) -> &D {
        &self.destinations[self.schedule.pick()]
    }
}

#[cfg(test)]
mod tests;
