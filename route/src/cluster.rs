//! A cluster, validated: one (service, subset) with its endpoints and the
//! DestinationRule policy that applies to it. The proxy adds the live
//! parts (connections, ejection state, the mTLS client config).

use std::time::Duration;

use remora_certs::SpiffeId;
use remora_proto::pb;

use crate::ConfigError;
use crate::outlier::OutlierSettings;
use crate::protocol::{ServicePorts, UpstreamPolicy};

/// `loadBalancer.simple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancer {
    /// Power of two choices over active requests (Istio's default).
    LeastRequest,
    /// In turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
}

impl From<pb::LoadBalancer> for LoadBalancer {
    fn from(lb: pb::LoadBalancer) -> Self {
        match lb {
            pb::LoadBalancer::LeastRequest => Self::LeastRequest,
            pb::LoadBalancer::RoundRobin => Self::RoundRobin,
            pb::LoadBalancer::Random => Self::Random,
        }
    }
}

/// One endpoint of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// `host:port`, the port in 1–65535.
    pub address: String,
    /// `Some`: dialled with mTLS, the peer checked against this SPIFFE ID.
    pub spiffe_id: Option<SpiffeId>,
}

/// `connectionPool`, validated: what the proxy's connection pool applies.
/// A zero count or an absent duration keeps the proxy's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionPoolSpec {
    /// `tcp.maxConnections`.
    pub max_connections: u32,
    /// `tcp.connectTimeout`, above zero.
    pub connect_timeout: Option<Duration>,
    /// `tcp.idleTimeout`, above zero.
    pub tcp_idle_timeout: Option<Duration>,
    /// `http.http1MaxPendingRequests`.
    pub http1_max_pending_requests: u32,
    /// `http.http2MaxRequests`.
    pub http2_max_requests: u32,
    /// `http.maxRequestsPerConnection`.
    pub max_requests_per_connection: u32,
    /// `http.idleTimeout`, above zero.
    pub http_idle_timeout: Option<Duration>,
}

impl ConnectionPoolSpec {
    /// Validates the proto block; errors name the field.
    fn compile(cp: &pb::ConnectionPool) -> Result<Self, String> {
        use crate::duration::above_zero;
        Ok(Self {
            max_connections: cp.max_connections,
            connect_timeout: above_zero(
                "connectionPool.tcp.connectTimeout",
                cp.connect_timeout.as_ref(),
            )?,
            tcp_idle_timeout: above_zero(
                "connectionPool.tcp.idleTimeout",
                cp.tcp_idle_timeout.as_ref(),
            )?,
            http1_max_pending_requests: cp.http1_max_pending_requests,
            http2_max_requests: cp.http2_max_requests,
            max_requests_per_connection: cp.max_requests_per_connection,
            http_idle_timeout: above_zero(
                "connectionPool.http.idleTimeout",
                cp.http_idle_timeout.as_ref(),
            )?,
        })
    }
}

/// A validated `Cluster`.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// `<subset>|<service>`.
    pub name: String,
    /// The service's FQDN.
    pub service: String,
    /// The subset, empty for the whole service.
    pub subset: String,
    /// How an endpoint is picked.
    pub load_balancer: LoadBalancer,
    /// The endpoints, in snapshot order.
    pub endpoints: Vec<EndpointSpec>,
    /// `connectionPool`; `None` without the block.
    pub connection_pool: Option<ConnectionPoolSpec>,
    /// `outlierDetection`; `None` without the block.
    pub outlier: Option<OutlierSettings>,
    /// `http.maxRetries`: retries in flight to the cluster (0: unlimited).
    pub max_retries: u32,
    /// The ports the service declares TCP.
    pub tcp_ports: Vec<u16>,
    /// The service's declared ports and protocols.
    pub ports: ServicePorts,
    /// `h2UpgradePolicy` and `useClientProtocol`.
    pub upstream_policy: UpstreamPolicy,
}

impl ClusterSpec {
    /// Validates a proto cluster; errors name the cluster and the field.
    pub fn compile(c: &pb::Cluster) -> Result<Self, ConfigError> {
        let load_balancer = pb::LoadBalancer::try_from(c.load_balancer)
            .map_err(|_| ConfigError::UnknownLoadBalancer {
                cluster: c.name.clone(),
                value: c.load_balancer,
            })?
            .into();
        if let Some(e) = c.endpoints.iter().find(|e| !is_host_port(&e.address)) {
            return Err(ConfigError::BadAddress {
                cluster: c.name.clone(),
                address: e.address.clone(),
            });
        }
        let outlier = c
            .outlier_detection
            .as_ref()
            .map(OutlierSettings::from_proto)
            .transpose()
            .map_err(|e| ConfigError::Policy {
                cluster: c.name.clone(),
                error: e.to_string(),
            })?;
        let endpoints = c
            .endpoints
            .iter()
            .map(|e| {
                Ok(EndpointSpec {
                    address: e.address.clone(),
                    spiffe_id: if e.mtls { Some(peer_id(c, e)?) } else { None },
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let tcp_ports = c
            .tcp_ports
            .iter()
            .map(|&p| match u16::try_from(p) {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(ConfigError::Policy {
                    cluster: c.name.clone(),
                    error: format!("tcp_ports: {p} is not a port (1-65535)"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ports = ServicePorts::build(&c.ports, &c.name)?;
        let upstream_policy = UpstreamPolicy::build(c.connection_pool.as_ref(), &c.name)?;
        let connection_pool = c
            .connection_pool
            .as_ref()
            .map(ConnectionPoolSpec::compile)
            .transpose()
            .map_err(|error| ConfigError::Policy {
                cluster: c.name.clone(),
                error,
            })?;
        Ok(Self {
            name: c.name.clone(),
            service: c.service.clone(),
            subset: c.subset.clone(),
            load_balancer,
            endpoints,
            connection_pool,
            outlier,
            max_retries: c.connection_pool.as_ref().map_or(0, |cp| cp.max_retries),
            tcp_ports,
            ports,
            upstream_policy,
        })
    }
}

/// The SPIFFE ID an mTLS endpoint is checked against.
fn peer_id(c: &pb::Cluster, e: &pb::Endpoint) -> Result<SpiffeId, ConfigError> {
    let error = |error: String| ConfigError::EndpointIdentity {
        cluster: c.name.clone(),
        address: e.address.clone(),
        error,
    };
    if e.spiffe_id.is_empty() {
        return Err(error("mtls is set but spiffe_id is empty".to_owned()));
    }
    SpiffeId::parse(&e.spiffe_id).map_err(|err| error(format!("spiffe_id: {err}")))
}

fn is_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests;
