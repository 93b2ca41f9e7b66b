//! A cluster: one (service, subset) with its endpoints and policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Version;
use remora_certs::{AllowedPeers, MeshTls, SpiffeId};
use remora_route::{ClusterSpec, ConnectionPoolSpec};

use super::ConfigError;
use super::{ServicePorts, UpstreamPolicy, upstream_version};
use crate::balance::{LoadBalancer, pick_healthy};
use crate::outlier::{self, OutlierSettings};
use crate::telemetry::Interner;
use crate::upstream::{Endpoint, EndpointRegistry, MtlsClient, Outcome, PoolSettings, Transport};

/// One (service, subset): the unit of load balancing.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    service: String,
    subset: String,
    /// `service` and `subset` (`unknown` if none) as metric label values,
    /// interned once here rather than on every request.
    service_label: Arc<str>,
    subset_label: Arc<str>,
    load_balancer: LoadBalancer,
    endpoints: Vec<Arc<Endpoint>>,
    cursor: AtomicUsize,
    pool: PoolSettings,
    /// `None` without an `outlierDetection` block.
    outlier: Option<OutlierSettings>,
    /// What ejects hosts: the block, else [`OutlierSettings::FAILURE_ACCRUAL`].
    ejection: OutlierSettings,
    /// `http.maxRetries` (0 = unlimited) and the retries in flight.
    max_retries: u32,
    retries: Arc<AtomicUsize>,
    /// `None` when no endpoint wants mTLS (the usual plaintext fast path).
    mtls: Option<ClusterMtls>,
    /// The ports the service declares TCP.
    tcp_ports: Arc<[u16]>,
    /// The service's declared ports and protocols.
    ports: ServicePorts,
    /// `h2UpgradePolicy` and `useClientProtocol`.
    upstream_policy: UpstreamPolicy,
}

/// The mTLS side of a cluster with at least one mTLS endpoint.
#[derive(Debug)]
struct ClusterMtls {
    /// Parallel to `endpoints`: which ones are dialled with mTLS.
    endpoints: Vec<bool>,
    client: MtlsClient,
}

/// A retry in flight under `http.maxRetries`; dropping it ends the retry.
#[derive(Debug)]
pub(crate) struct RetryGuard(Arc<AtomicUsize>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Cluster {
    /// The live cluster of a validated one: its endpoints from
    /// `registry` (shared with other clusters and config versions), its
    /// metric labels from `labels`, and, with `mesh_tls`, its mTLS client
    /// config.
    pub(super) fn build(
        spec: ClusterSpec,
        registry: &EndpointRegistry,
        mesh_tls: Option<&MeshTls>,
        labels: Interner,
    ) -> Result<Self, ConfigError> {
        let endpoints = spec
            .endpoints
            .iter()
            .map(|e| registry.get(&e.address))
            .collect();
        let pool = spec
            .connection_pool
            .as_ref()
            .map_or_else(PoolSettings::default, pool_settings);
        Ok(Self {
            service_label: labels.intern(&spec.service),
            subset_label: if spec.subset.is_empty() {
                labels.unknown()
            } else {
                labels.intern(&spec.subset)
            },
            mtls: cluster_mtls(&spec, mesh_tls)?,
            name: spec.name,
            service: spec.service,
            subset: spec.subset,
            load_balancer: spec.load_balancer,
            endpoints,
            cursor: AtomicUsize::new(0),
            pool,
            ejection: spec.outlier.unwrap_or(OutlierSettings::FAILURE_ACCRUAL),
            outlier: spec.outlier,
            max_retries: spec.max_retries,
            retries: Arc::new(AtomicUsize::new(0)),
            tcp_ports: spec.tcp_ports.into(),
            ports: spec.ports,
            upstream_policy: spec.upstream_policy,
        })
    }

    /// [`Self::build`] from a proto cluster, labelled in the process's
    /// metrics, for tests.
    #[cfg(test)]
    pub(crate) fn from_proto(
        c: &remora_proto::pb::Cluster,
        registry: &EndpointRegistry,
        mesh_tls: Option<&MeshTls>,
    ) -> Result<Self, ConfigError> {
        Self::build(
            ClusterSpec::compile(c)?,
            registry,
            mesh_tls,
            Interner::global(),
        )
    }

    /// The ports the service declares TCP.
    pub(crate) fn tcp_ports(&self) -> &Arc<[u16]> {
        &self.tcp_ports
    }

    /// The HTTP version a request sent in `client` goes to this cluster's
    /// endpoints in, for the service port `port` it calls (its captured
    /// original port, else its Host's): see [`upstream_version`].
    pub(crate) fn upstream_version(&self, port: Option<u16>, client: Version) -> Version {
        upstream_version(self.ports.for_request(port), self.upstream_policy, client)
    }

    /// The ports the service declares.
    pub(crate) fn service_ports(&self) -> &ServicePorts {
        &self.ports
    }

    /// The service as the request metrics' `destination_service`.
    pub(crate) fn service_label(&self) -> &Arc<str> {
        &self.service_label
    }

    /// The subset as the request metrics' `destination_subset`
    /// (`unknown` when the cluster has none).
    pub(crate) fn subset_label(&self) -> &Arc<str> {
        &self.subset_label
    }

    /// How to reach `endpoint` (one of this cluster's): mTLS with the
    /// cluster's client config if the snapshot says so, else plaintext.
    pub fn transport(&self, endpoint: &Arc<Endpoint>) -> Transport<'_> {
        let Some(mtls) = &self.mtls else {
            return Transport::Plaintext;
        };
        let index = self.endpoints.iter().position(|e| Arc::ptr_eq(e, endpoint));
        match index.and_then(|i| mtls.endpoints.get(i)) {
            Some(true) => Transport::Mtls(&mtls.client),
            _ => Transport::Plaintext,
        }
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
    pub(crate) fn subset(&self) -> &str {
        &self.subset
    }

    /// Connection pool settings for requests to this cluster.
    pub(crate) fn pool(&self) -> &PoolSettings {
        &self.pool
    }

    /// Outlier detection settings; `None` when the cluster has none.
    pub fn outlier(&self) -> Option<&OutlierSettings> {
        self.outlier.as_ref()
    }

    /// What ejects this cluster's hosts: its `outlierDetection`, else the
    /// default failure accrual on connect failures.
    #[cfg(test)]
    pub(crate) fn ejection(&self) -> &OutlierSettings {
        &self.ejection
    }

    /// The cluster's endpoints, ejected or not.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Picks an endpoint per the cluster's load balancer among the hosts
    /// outlier detection has not ejected (among all of them when too few
    /// are left: see [`OutlierSettings::panics`]).
    #[cfg(test)]
    pub(crate) fn pick_endpoint(&self) -> Option<&Arc<Endpoint>> {
        self.pick_endpoint_at(&[], Instant::now())
    }

    /// Picks an endpoint like [`Self::pick_endpoint`], preferring one not
    /// in `avoid` (the endpoints that already failed this request) when
    /// another healthy one exists.
    pub(crate) fn pick_endpoint_avoiding(&self, avoid: &[Arc<Endpoint>]) -> Option<&Arc<Endpoint>> {
        self.pick_endpoint_at(avoid, Instant::now())
    }

    /// [`Self::pick_endpoint_avoiding`] at `now`, for tests.
    pub fn pick_endpoint_at(
        &self,
        avoid: &[Arc<Endpoint>],
        now: Instant,
    ) -> Option<&Arc<Endpoint>> {
        pick_healthy(
            self.load_balancer,
            &self.endpoints,
            &self.cursor,
            &self.ejection,
            avoid,
            now,
        )
    }

    /// Records what an attempt on `endpoint` came to, for outlier
    /// detection (or, without an `outlierDetection` block, the default
    /// failure accrual). Call it after every attempt, retries included.
    pub fn record(&self, endpoint: &Arc<Endpoint>, outcome: Outcome) {
        self.record_with(endpoint, outcome, Instant::now(), || {
            self.ejection.random_jitter()
        });
    }

    /// [`Self::record`] at `now` with this ejection `jitter`, for tests.
    /// Returns how long the host was ejected for, if this ejected it.
    pub fn record_at(
        &self,
        endpoint: &Arc<Endpoint>,
        outcome: Outcome,
        now: Instant,
        jitter: Duration,
    ) -> Option<Duration> {
        self.record_with(endpoint, outcome, now, || jitter)
    }

    /// [`Self::record_at`], the jitter drawn only for an ejection: the
    /// decision is outlier detection's ([`outlier::record`]), over this
    /// cluster's hosts.
    fn record_with(
        &self,
        endpoint: &Arc<Endpoint>,
        outcome: Outcome,
        now: Instant,
        jitter: impl FnOnce() -> Duration,
    ) -> Option<Duration> {
        outlier::record(
            &self.name,
            &self.endpoints,
            endpoint,
            outcome,
            now,
            &self.ejection,
            jitter,
        )
    }

    /// Starts a retry if `http.maxRetries` (retries in flight to this
    /// cluster, as Istio documents it) allows one; `None` means the retry
    /// must not be made. The guard ends the retry when dropped.
    ///
    /// The count belongs to this config version: a config push starts a
    /// fresh count (retries of the old version still finish).
    pub(crate) fn try_start_retry(&self) -> Option<RetryGuard> {
        let max = self.max_retries;
        self.retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max as usize).then_some(n + 1)
            })
            .ok()
            .map(|_| RetryGuard(Arc::clone(&self.retries)))
    }
}

/// The cluster's mTLS endpoints and one client config that accepts any of
/// their SPIFFE IDs (Istio's `subjectAltNames`); `None` without any.
fn cluster_mtls(
    spec: &ClusterSpec,
    mesh_tls: Option<&MeshTls>,
) -> Result<Option<ClusterMtls>, ConfigError> {
    let ids: Vec<SpiffeId> = spec
        .endpoints
        .iter()
        .filter_map(|e| e.spiffe_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let client =
        MtlsClient::new(mesh_tls, AllowedPeers::ids(ids)).map_err(|e| ConfigError::Tls {
            cluster: spec.name.clone(),
            error: e.to_string(),
        })?;
    Ok(Some(ClusterMtls {
        endpoints: spec
            .endpoints
            .iter()
            .map(|e| e.spiffe_id.is_some())
            .collect(),
        client,
    }))
}

/// `connectionPool` into pool settings; unset fields keep the defaults, and
/// the shorter of the two idle timeouts applies.
fn pool_settings(cp: &ConnectionPoolSpec) -> PoolSettings {
    let mut pool = PoolSettings::default();
    if let Some(timeout) = cp.connect_timeout {
        pool.connect_timeout = timeout;
    }
    pool.max_requests_per_connection = cp.max_requests_per_connection;
    pool.max_connections = cp.max_connections;
    pool.max_pending_requests = cp.http1_max_pending_requests;
    pool.max_requests = cp.http2_max_requests;
    for idle in [cp.tcp_idle_timeout, cp.http_idle_timeout]
        .into_iter()
        .flatten()
    {
        pool.idle_timeout = pool.idle_timeout.min(idle);
    }
    pool
}

#[cfg(test)]
mod tests;
