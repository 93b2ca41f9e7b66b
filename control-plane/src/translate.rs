//! Translation: from the validated Istio resources and the registry of
//! connected workloads to the snapshot one proxy receives.
//!
//! This is a pure function of its inputs, so the discovery service can
//! recompute a proxy's snapshot on every change and push it only when its
//! version (a hash of its contents) differs from the last one pushed.
//!
//! Naming follows Envoy/Istio: a cluster is `<subset>|<fqdn>`, the default
//! cluster of a service (every endpoint) is `|<fqdn>`.
//!
//! Security (the inbound policy and auto mTLS) lives in [`security`];
//! running translation off the async workers, and the size limit of what
//! is sent, in [`prepared`].

mod prepared;
mod scope;
mod security;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message;
use remora_certs::TrustDomain;
use remora_proto::pb;

use crate::config::model::{
    self, AbortStatus, AppProtocol, ConnectionPool, DestinationRule, Fault, H2UpgradePolicy,
    HttpMatch, OutlierDetection, Resource, Retries, Spec, StringMatch, VirtualService,
};
use crate::config::{DEFAULT_ROOT_NAMESPACE, qualify_host};
pub use prepared::{Interrupted, Prepared, TooLarge, prepare};
use scope::{Scope, Sidecars};
use security::{PeerTls, SecurityIndex};
pub use views::{Form, ViewKey, ViewSnapshot, build_views};

/// Suffix of the fully qualified name of an in-mesh service.
const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// A workload that connected to the control plane.
pub type Nodes = BTreeMap<u64, pb::Node>;

/// What translation needs to know about the mesh besides its resources
/// and registry: the settings of `remora serve` that shape every snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    /// The trust domain of workload identities (`--trust-domain`): SPIFFE
    /// IDs of endpoints and `InboundPolicy.trust_domain`.
    pub trust_domain: TrustDomain,
    /// The mesh root namespace (`--root-namespace`): its PeerAuthentication
    /// without selector applies mesh-wide, and its AuthorizationPolicies
    /// apply to every namespace.
    pub root_namespace: String,
    /// The share of new traces every proxy records (`--trace-sampling`),
    /// sent as `Snapshot.mesh.trace_sampling_percent`. `None`: not sent,
    /// and each proxy keeps its own default (1%).
    pub trace_sampling: Option<TraceSampling>,
    /// How proxies normalise request paths (`--path-normalization`), sent
    /// as `Snapshot.mesh.path_normalization`. BASE, Istio's default, is
    /// what a proxy does when it is not told.
    pub path_normalization: pb::PathNormalization,
    /// What `%2F` and `%5C` become (`--escaped-slashes`); `Default`: what
    /// `path_normalization` implies.
    pub escaped_slashes: pb::EscapedSlashesAction,
    /// `--outbound-traffic-policy`, sent as
    /// `Snapshot.mesh.outbound_traffic_policy` when not the default.
    pub outbound_traffic_policy: OutboundTrafficPolicy,
}

/// Istio's `outboundTrafficPolicy.mode`: what a captured connection to a
/// destination outside the mesh gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficPolicy {
    /// Through to its original destination (Istio's default).
    #[default]
    AllowAny,
    /// Refused: 502 for HTTP, closed for TCP.
    RegistryOnly,
}

impl Default for MeshSettings {
    /// Istio's defaults: trust domain `cluster.local`, root namespace
    /// `istio-system`, BASE path normalisation; no trace sampling sent.
    fn default() -> Self {
        MeshSettings {
            // A literal that is a valid trust domain, not user input: cannot fail.
            trust_domain: TrustDomain::new("cluster.local").expect("valid trust domain"),
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_owned(),
            trace_sampling: None,
            path_normalization: pb::PathNormalization::Base,
            escaped_slashes: pb::EscapedSlashesAction::Default,
            outbound_traffic_policy: OutboundTrafficPolicy::AllowAny,
        }
    }
}

impl MeshSettings {
    /// These settings for a proxy under `scope`: its Sidecar's
    /// `outboundTrafficPolicy` replaces the mesh's.
    fn for_sidecar(&self, scope: Option<&Scope<'_>>) -> std::borrow::Cow<'_, Self> {
        match scope.and_then(|s| s.outbound_traffic_policy()) {
            None => std::borrow::Cow::Borrowed(self),
            Some(mode) => std::borrow::Cow::Owned(MeshSettings {
                outbound_traffic_policy: match mode {
                    model::OutboundMode::AllowAny => OutboundTrafficPolicy::AllowAny,
                    model::OutboundMode::RegistryOnly => OutboundTrafficPolicy::RegistryOnly,
                },
                ..self.clone()
            }),
        }
    }

    /// The `Snapshot.mesh` message: `None` when no mesh-wide setting is
    /// given, so a mesh without them sends what it always sent.
    fn to_proto(&self) -> Option<pb::MeshSettings> {
        let mesh = pb::MeshSettings {
            trace_sampling_percent: self.trace_sampling.map(TraceSampling::percent),
            path_normalization: self.path_normalization as i32,
            escaped_slashes: self.escaped_slashes as i32,
            outbound_traffic_policy: match self.outbound_traffic_policy {
                OutboundTrafficPolicy::AllowAny => pb::OutboundTrafficPolicy::AllowAny,
                OutboundTrafficPolicy::RegistryOnly => pb::OutboundTrafficPolicy::RegistryOnly,
            } as i32,
        };
        (mesh != pb::MeshSettings::default()).then_some(mesh)
    }
}

/// A trace sampling percentage, from 0 to 100 (Istio's `tracing.sampling`:
/// `1` is 1%). Held, it is in range and not NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceSampling(f64);

// The value is never NaN (checked on construction), so `==` is an
// equivalence relation.
impl Eq for TraceSampling {}

impl TraceSampling {
    /// A percentage from 0 to 100.
    pub fn new(percent: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&percent) {
            Ok(Self(percent))
        } else {
            Err(format!(
                "trace sampling must be a percentage from 0 to 100, got {percent}"
            ))
        }
    }

    /// Parses `"1"`, `"0.5"`, `"100"` or `"100%"`: the `clap` value parser
    /// of `remora serve --trace-sampling`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let percent = text
            .trim()
            .trim_end_matches('%')
            .parse::<f64>()
            .map_err(|_| {
                format!("trace sampling must be a percentage from 0 to 100, got {text:?}")
            })?;
        Self::new(percent)
    }

    /// The percentage, from 0 to 100.
    pub fn percent(self) -> f64 {
        self.0
    }
}

/// One service of the catalog: what proxies can route to.
#[derive(Debug, Default)]
struct Service {
    /// Namespace of an in-mesh service (`None` for ServiceEntry hosts
    /// that are not `*.svc.cluster.local`).
    namespace: Option<String>,
    /// Endpoints with their labels, in a deterministic order.
    endpoints: BTreeSet<EndpointKey>,
    /// Ports declared TCP (ServiceEntry `protocol: TCP` or a `tcp-` name).
    tcp_ports: BTreeSet<u16>,
    /// Every declared port (ServiceEntry `ports[].number`) with its
    /// protocol and target port; empty for a service only registered by
    /// sidecars.
    ports: BTreeMap<u16, pb::ServicePort>,
    /// The namespace it belongs to for a Sidecar's `egress` hosts: its
    /// workloads' or its (first) ServiceEntry's.
    config_namespace: Option<String>,
}

/// An endpoint, ordered so snapshots are deterministic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EndpointKey {
    address: String,
    labels: BTreeMap<String, String>,
    service_account: String,
    /// What it can do about mTLS; the DestinationRule decides the rest.
    tls: PeerTls,
}

/// Builds the snapshot for `node` (its `version` and `nonce` are left
/// empty; see [`version_of`]).
///
/// Linear in the size of the config and the registry: the resources are
/// indexed by host and namespace once ([`Index`]), and every lookup after
/// that is a hash map's.
pub fn snapshot_for(
    node: &pb::Node,
    resources: &[Resource],
    nodes: &Nodes,
    settings: &MeshSettings,
) -> pb::Snapshot {
    let index = Index::new(resources, settings);
    let catalog = catalog(&index, nodes, settings);
    let outbound = Outbound::new(&index, &catalog);
    let scope = index.sidecars.of_workload(node, &settings.root_namespace);
    pb::Snapshot {
        version: String::new(),
        nonce: String::new(),
        virtual_hosts: outbound.virtual_hosts(&node.namespace, scope.as_ref()),
        clusters: outbound.clusters_in(scope.as_ref()).cloned().collect(),
        inbound: Some(security::inbound_policy(
            namespace_of(node),
            &node.labels,
            &index.security,
            settings,
        )),
        mesh: settings.for_sidecar(scope.as_ref()).to_proto(),
        ..Default::default()
    }
}

/// A host a proxy can be asked for, with its routes.
#[derive(Debug)]
struct Host {
    /// Fully qualified, lower case.
    name: String,
    routes: Vec<pb::Route>,
    /// The ports its service declares.
    ports: Vec<u32>,
    /// The namespace a Sidecar's `egress` hosts match it by: its
    /// service's, else its VirtualService's.
    namespace: String,
}

/// The outbound half of every snapshot: routes by host and the clusters
/// they use. Only the domains of a virtual host depend on the proxy (its
/// namespace gives the short names), so this is built once for all.
#[derive(Debug)]
struct Outbound {
    /// Every host a proxy can be asked for, in name order.
    hosts: Vec<Host>,
    /// Every cluster, in name order (`<subset>|<fqdn>`, byte-wise).
    clusters: Vec<pb::Cluster>,
    /// The namespace of each cluster's service, for Sidecar scopes.
    cluster_namespaces: HashMap<String, String>,
}

impl Outbound {
    fn new(index: &Index<'_>, catalog: &BTreeMap<String, Service>) -> Self {
        // Every host a proxy can be asked for: catalog services and VS hosts.
        let mut names: BTreeSet<&str> = catalog.keys().map(String::as_str).collect();
        names.extend(index.services.keys().map(String::as_str));

        let mut wanted_clusters: BTreeSet<(String, String)> = BTreeSet::new(); // (fqdn, subset)
        let mut hosts = Vec::with_capacity(names.len());
        for host in names {
            let routes = match index.services.get(host) {
                Some(vs) => vs_routes(*vs, &mut wanted_clusters),
                None => {
                    wanted_clusters.insert((host.to_owned(), String::new()));
                    vec![pb::Route {
                        name: "default".into(),
                        matches: Vec::new(),
                        destinations: vec![pb::WeightedCluster {
                            cluster: cluster_name(host, ""),
                            weight: 100,
                        }],
                        ..Default::default()
                    }]
                }
            };
            let ports = catalog
                .get(host)
                .map(|s| s.ports.keys().copied().map(u32::from).collect())
                .unwrap_or_default();
            hosts.push(Host {
                name: host.to_owned(),
                routes,
                ports,
                namespace: host_namespace(host, index, catalog),
            });
        }

        // Every service gets its default cluster and one per subset of its rule.
        for host in catalog.keys() {
            wanted_clusters.insert((host.clone(), String::new()));
        }
        for (host, dr) in &index.rules {
            for subset in &dr.subsets {
                wanted_clusters.insert((host.clone(), subset.name.clone()));
            }
        }

        let empty = Service::default();
        let mut cluster_namespaces = HashMap::new();
        let mut clusters: Vec<pb::Cluster> = wanted_clusters
            .iter()
            .map(|(host, subset)| {
                let service = catalog.get(host).unwrap_or(&empty);
                let rule = index.rules.get(host).copied();
                let cluster = cluster(host, subset, service, rule);
                cluster_namespaces
                    .insert(cluster.name.clone(), host_namespace(host, index, catalog));
                cluster
            })
            .collect();
        // In name order, as the protocol lists them (a proxy merges
        // per-resource changes in that order).
        clusters.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Outbound {
            hosts,
            clusters,
            cluster_namespaces,
        }
    }

    /// The virtual hosts of a proxy in `namespace` under `scope`.
    fn virtual_hosts(&self, namespace: &str, scope: Option<&Scope<'_>>) -> Vec<pb::VirtualHost> {
        // A domain answers for one host only (proxies refuse a snapshot with a domain twice):
        // the first host, in name order, keeps it, so a registered service whose short names
        // collide with a ServiceEntry host spoils nobody's snapshot.
        let mut taken_domains: BTreeSet<String> = BTreeSet::new();
        self.hosts
            .iter()
            .filter(|h| scope.is_none_or(|s| s.takes(&h.name, &h.namespace)))
            .map(|h| pb::VirtualHost {
                name: h.name.clone(),
                domains: domains(&h.name, namespace)
                    .into_iter()
                    .filter(|d| taken_domains.insert(d.to_ascii_lowercase()))
                    .collect(),
                routes: h.routes.clone(),
                ports: h.ports.clone(),
            })
            .collect()
    }

    /// The clusters of a proxy under `scope`: those of the services it
    /// takes, every one their routes name, and its own service's (whose
    /// declared ports tell its inbound side the app's protocol).
    fn clusters_in<'s>(
        &'s self,
        scope: Option<&'s Scope<'_>>,
    ) -> Box<dyn Iterator<Item = &'s pb::Cluster> + 's> {
        let Some(scope) = scope.filter(|s| s.scopes()) else {
            return Box::new(self.clusters.iter());
        };
        let mut named: BTreeSet<&str> = BTreeSet::new();
        for host in self
            .hosts
            .iter()
            .filter(|h| scope.takes(&h.name, &h.namespace))
        {
            for route in &host.routes {
                named.extend(route.destinations.iter().map(|d| d.cluster.as_str()));
            }
        }
        Box::new(self.clusters.iter().filter(move |c| {
            named.contains(c.name.as_str())
                || scope.is_own_service(&c.service)
                || self
                    .cluster_namespaces
                    .get(&c.name)
                    .is_some_and(|ns| scope.takes(&c.service, ns))
        }))
    }
}

/// The namespace a Sidecar's `egress` matches `host` by: its service's
/// (its workloads' or its ServiceEntry's), else its VirtualService's, else
/// the namespace in its name (`x.<ns>.svc.cluster.local`), else none (`""`:
/// only `*/...` takes it).
fn host_namespace(host: &str, index: &Index<'_>, catalog: &BTreeMap<String, Service>) -> String {
    if let Some(ns) = catalog
        .get(host)
        .and_then(|s| s.config_namespace.as_deref())
    {
        return ns.to_owned();
    }
    if let Some(vs) = index.services.get(host) {
        return vs.namespace.to_owned();
    }
    host.strip_suffix(&format!(".{CLUSTER_DOMAIN}"))
        .and_then(|rest| rest.split_once('.'))
        .map(|(_, ns)| ns.to_owned())
        .unwrap_or_default()
}

/// The resources of a config, indexed once per translation: every lookup
/// by host or namespace is then a hash map's, so that translation is
/// linear in the config's size rather than quadratic (a `find` per host
/// over every resource took seconds at 10k resources).
#[derive(Debug)]
struct Index<'a> {
    /// DestinationRules by qualified host, first definition wins (a second
    /// one is a validation error, reported by `check_references`).
    rules: HashMap<String, &'a DestinationRule>,
    /// VirtualServices by qualified host, first definition wins.
    services: HashMap<String, VsRef<'a>>,
    /// ServiceEntries with their namespaces, in resource order.
    service_entries: Vec<(&'a str, &'a model::ServiceEntry)>,
    /// WorkloadEntries by namespace, in resource order.
    workload_entries: HashMap<&'a str, Vec<&'a model::WorkloadEntry>>,
    /// PeerAuthentications and AuthorizationPolicies by namespace.
    security: SecurityIndex<'a>,
    /// Sidecars by namespace.
    sidecars: Sidecars<'a>,
}

impl<'a> Index<'a> {
    fn new(resources: &'a [Resource], settings: &'a MeshSettings) -> Self {
        let mut index = Index {
            rules: HashMap::new(),
            services: HashMap::new(),
            service_entries: Vec::new(),
            workload_entries: HashMap::new(),
            security: SecurityIndex::new(resources, &settings.root_namespace),
            sidecars: Sidecars::new(resources),
        };
        for r in resources {
            let namespace = r.meta.namespace.as_str();
            match &r.spec {
                Spec::DestinationRule(dr) => {
                    let host = qualify_host(&dr.host, namespace);
                    index.rules.entry(host).or_insert(dr);
                }
                Spec::VirtualService(vs) => {
                    for host in &vs.hosts {
                        let host = qualify_host(host, namespace);
                        index.services.entry(host).or_insert(VsRef {
                            vs,
                            namespace,
                            name: &r.meta.name,
                        });
                    }
                }
                Spec::ServiceEntry(se) => index.service_entries.push((namespace, se)),
                Spec::WorkloadEntry(we) => {
                    index
                        .workload_entries
                        .entry(namespace)
                        .or_default()
                        .push(we);
                }
                Spec::PeerAuthentication(_) | Spec::AuthorizationPolicy(_) | Spec::Sidecar(_) => {}
            }
        }
        index
    }
}

/// The namespace of a node: `default` when it gives none.
fn namespace_of(node: &pb::Node) -> &str {
    if node.namespace.is_empty() {
        "default"
    } else {
        &node.namespace
    }
}

/// The version of a snapshot: FNV-1a (64 bit) over its protobuf encoding,
/// in hex. Equal contents give equal versions, across restarts too, so a
/// proxy that reconnects to a restarted control plane sees no change.
pub fn version_of(snapshot: &pb::Snapshot) -> String {
    format!("{:016x}", fnv1a(&snapshot.encode_to_vec()))
}

/// FNV-1a, 64 bit: a fast, stable (unlike `DefaultHasher`) content hash.
/// The proxies compute it too, to check an incremental snapshot applied.
pub(crate) use remora_proto::incremental::{fnv1a, fnv1a_continue};

/// `<subset>|<fqdn>`.
pub fn cluster_name(host: &str, subset: &str) -> String {
    format!("{subset}|{host}")
}

/// The names a host answers to from a workload in `namespace`, as
/// Kubernetes DNS search paths would resolve them.
fn domains(host: &str, namespace: &str) -> Vec<String> {
    let mut out = vec![host.to_owned()];
    if let Some(rest) = host.strip_suffix(&format!(".{CLUSTER_DOMAIN}")) {
        // rest = name.ns
        out.push(format!("{rest}.svc"));
        out.push(rest.to_owned());
        if let Some((name, ns)) = rest.split_once('.')
            && ns == namespace
        {
            out.push(name.to_owned());
        }
    }
    out
}

/// Services by fully qualified host name.
fn catalog(index: &Index<'_>, nodes: &Nodes, settings: &MeshSettings) -> BTreeMap<String, Service> {
    let mut catalog: BTreeMap<String, Service> = BTreeMap::new();
    for node in nodes.values() {
        if node.inbound_address.is_empty() || node.service.is_empty() {
            continue; // a client-only workload serves nothing
        }
        let namespace = namespace_of(node);
        let tls = PeerTls::of_node(node, namespace, &index.security, settings);
        let host = format!("{}.{namespace}.{CLUSTER_DOMAIN}", node.service);
        let service = catalog.entry(host).or_default();
        service.namespace = Some(namespace.to_owned());
        service.config_namespace = Some(namespace.to_owned());
        if tls.is_strict_without_mtls() {
            continue; // it would receive plaintext under STRICT
        }
        if node.app_health.as_ref().is_some_and(|h| !h.ready) {
            continue; // its proxy reports the app down: the service stays, the endpoint goes
        }
        service.endpoints.insert(EndpointKey {
            address: node.inbound_address.clone(),
            labels: node.labels.clone(),
            service_account: node.service_account.clone(),
            tls,
        });
    }

    let in_mesh_suffix = format!(".{CLUSTER_DOMAIN}");
    for &(ns, se) in &index.service_entries {
        let Some(port) = se.ports.first() else {
            continue; // validation guarantees exactly one
        };
        let mut endpoints = BTreeSet::new();
        let mut add = |we: &model::WorkloadEntry, namespace: &str| {
            let number = we
                .ports
                .get(&port.name)
                .copied()
                .or(port.target_port)
                .unwrap_or(port.number);
            endpoints.insert(EndpointKey {
                address: join_host_port(&we.address, number),
                labels: we.labels.clone(),
                service_account: we.service_account.clone().unwrap_or_default(),
                tls: PeerTls::of_workload_entry(
                    &we.labels,
                    namespace,
                    we.service_account.as_deref(),
                    settings,
                ),
            });
        };
        for we in &se.endpoints {
            add(we, ns);
        }
        if let Some(selector) = &se.workload_selector {
            // WorkloadEntries of the entry's own namespace only.
            for we in index.workload_entries.get(ns).into_iter().flatten() {
                if selector.iter().all(|(k, v)| we.labels.get(k) == Some(v)) {
                    add(we, ns);
                }
            }
        }
        for host in &se.hosts {
            let fqdn = qualify_host(host, ns);
            let mut host_endpoints = endpoints.clone();
            if se.endpoints.is_empty()
                && se.workload_selector.is_none()
                && se.resolution == model::Resolution::Dns
            {
                // DNS resolution with no endpoints: the host itself.
                host_endpoints.insert(EndpointKey {
                    address: join_host_port(&fqdn, port.target_port.unwrap_or(port.number)),
                    labels: BTreeMap::new(),
                    service_account: String::new(),
                    tls: PeerTls::Plaintext,
                });
            }
            let namespace = fqdn
                .strip_suffix(&in_mesh_suffix)
                .and_then(|rest| rest.split_once('.'))
                .map(|(_, ns)| ns.to_owned());
            let service = catalog.entry(fqdn).or_default();
            service
                .ports
                .entry(port.number)
                .or_insert_with(|| service_port(port));
            if port.is_tcp() {
                service.tcp_ports.insert(port.number);
            }
            if service.namespace.is_none() {
                service.namespace = namespace;
            }
            if service.config_namespace.is_none() {
                service.config_namespace = Some(ns.to_owned());
            }
            service.endpoints.extend(host_endpoints);
        }
    }
    catalog
}

/// A declared port as proxies get it: its protocol decides the HTTP
/// version towards the service's endpoints and, at a sidecar of the
/// service, towards its app.
fn service_port(port: &model::ServicePort) -> pb::ServicePort {
    let protocol = match port.app_protocol() {
        AppProtocol::Undeclared => pb::PortProtocol::Undeclared,
        AppProtocol::Http => pb::PortProtocol::Http,
        AppProtocol::Http2 => pb::PortProtocol::Http2,
        AppProtocol::Tcp => pb::PortProtocol::Tcp,
    };
    pb::ServicePort {
        number: u32::from(port.number),
        protocol: protocol.into(),
        target_port: port.target_port.map_or(0, u32::from),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}") // IPv6 literal
    } else {
        format!("{host}:{port}")
    }
}

/// A VirtualService with the namespace its short names are relative to.
#[derive(Debug, Clone, Copy)]
struct VsRef<'a> {
    vs: &'a VirtualService,
    namespace: &'a str,
    name: &'a str,
}

fn vs_routes(vs: VsRef<'_>, wanted: &mut BTreeSet<(String, String)>) -> Vec<pb::Route> {
    vs.vs
        .http
        .iter()
        .enumerate()
        .map(|(i, route)| pb::Route {
            name: route
                .name
                .clone()
                .unwrap_or_else(|| format!("{}.{}/http[{i}]", vs.name, vs.namespace)),
            matches: route.matches.iter().map(route_match).collect(),
            destinations: route
                .route
                .iter()
                .map(|d| {
                    let host = qualify_host(&d.host, vs.namespace);
                    let subset = d.subset.clone().unwrap_or_default();
                    let cluster = cluster_name(&host, &subset);
                    wanted.insert((host, subset));
                    pb::WeightedCluster {
                        cluster,
                        weight: d.weight,
                    }
                })
                .collect(),
            timeout: wire(route.timeout),
            retry: route.retries.as_ref().map(retry_policy),
            fault: route.fault.as_ref().map(fault),
        })
        .collect()
}

/// `retries`: HTTP conditions, gRPC codes and bare status codes travel
/// apart, each typed. As Istio does, codes given without
/// `retriable-status-codes` add it, so a `retryOn` of codes alone still
/// counts as an explicit list.
fn retry_policy(r: &Retries) -> pb::RetryPolicy {
    use remora_route::retry::{IstioCondition, istio_condition};
    let mut retry_on = Vec::new();
    let mut grpc_codes = Vec::new();
    // The names were checked when the file was read.
    for condition in r.retry_on.iter().filter_map(|name| istio_condition(name)) {
        match condition {
            IstioCondition::Http(c) => retry_on.push(c as i32),
            IstioCondition::Grpc(code) => grpc_codes.push(code),
        }
    }
    let codes = pb::RetryCondition::RetriableStatusCodes as i32;
    if !r.retriable_status_codes.is_empty() && !retry_on.contains(&codes) {
        retry_on.push(codes);
    }
    pb::RetryPolicy {
        attempts: r.attempts,
        per_try_timeout: wire(r.per_try_timeout),
        retry_on,
        retriable_status_codes: r
            .retriable_status_codes
            .iter()
            .copied()
            .map(u32::from)
            .collect(),
        retriable_grpc_codes: grpc_codes,
    }
}

fn fault(f: &Fault) -> pb::Fault {
    use pb::fault_abort::Status;
    pb::Fault {
        delay: f.delay.as_ref().map(|d| pb::FaultDelay {
            fixed_delay: wire(Some(d.fixed_delay)),
            percentage: d.percentage,
        }),
        abort: f.abort.as_ref().map(|a| pb::FaultAbort {
            status: Some(match &a.status {
                AbortStatus::Http(code) => Status::HttpStatus(u32::from(*code)),
                AbortStatus::Grpc(code) => Status::GrpcStatus(*code),
            }),
            percentage: a.percentage,
        }),
    }
}

fn route_match(m: &HttpMatch) -> pb::RouteMatch {
    let keys = |list: &[(String, Option<StringMatch>)]| {
        list.iter()
            .map(|(name, value)| pb::KeyMatch {
                name: name.clone(),
                value: value.as_ref().map(string_match),
            })
            .collect()
    };
    pb::RouteMatch {
        uri: m.uri.as_ref().map(string_match),
        headers: keys(&m.headers),
        authority: m.authority.as_ref().map(string_match),
        method: m.method.as_ref().map(string_match),
        query_params: keys(&m.query_params),
        ignore_uri_case: m.ignore_uri_case,
    }
}

fn string_match(m: &StringMatch) -> pb::StringMatch {
    use pb::string_match::Kind;
    pb::StringMatch {
        kind: Some(match m {
            StringMatch::Exact(s) => Kind::Exact(s.clone()),
            StringMatch::Prefix(s) => Kind::Prefix(s.clone()),
            StringMatch::Regex(s) => Kind::Regex(s.clone()),
        }),
    }
}

fn cluster(
    host: &str,
    subset: &str,
    service: &Service,
    rule: Option<&DestinationRule>,
) -> pb::Cluster {
    let subset_rule = rule.and_then(|r| r.subsets.iter().find(|s| s.name == subset));
    // Subset policy overrides the rule's policy field by field.
    let base = rule.and_then(|r| r.traffic_policy.as_ref());
    let over = subset_rule.and_then(|s| s.traffic_policy.as_ref());
    let tls = over.and_then(|p| p.tls).or(base.and_then(|p| p.tls));
    let endpoints = service
        .endpoints
        .iter()
        .filter(|e| match (subset.is_empty(), subset_rule) {
            (true, _) => true,
            // A subset that no rule defines selects nothing: 503 names it.
            (false, None) => false,
            (false, Some(s)) => s.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)),
        })
        .map(|e| {
            let (mtls, spiffe_id) = e.tls.endpoint_tls(tls);
            pb::Endpoint {
                address: e.address.clone(),
                labels: e.labels.clone(),
                service_account: e.service_account.clone(),
                mtls,
                spiffe_id,
            }
        })
        .collect();

    let load_balancer = over
        .and_then(|p| p.load_balancer)
        .or(base.and_then(|p| p.load_balancer))
        .map_or(pb::LoadBalancer::LeastRequest, |lb| match lb {
            model::LoadBalancer::LeastRequest => pb::LoadBalancer::LeastRequest,
            model::LoadBalancer::RoundRobin => pb::LoadBalancer::RoundRobin,
            model::LoadBalancer::Random => pb::LoadBalancer::Random,
        });
    let connection_pool = merge_pool(
        base.and_then(|p| p.connection_pool.as_ref()),
        over.and_then(|p| p.connection_pool.as_ref()),
    );
    let outlier_detection = merge_outlier(
        base.and_then(|p| p.outlier_detection.as_ref()),
        over.and_then(|p| p.outlier_detection.as_ref()),
    );

    pb::Cluster {
        name: cluster_name(host, subset),
        service: host.to_owned(),
        subset: subset.to_owned(),
        load_balancer: load_balancer.into(),
        endpoints,
        connection_pool,
        outlier_detection,
        tcp_ports: service.tcp_ports.iter().map(|&p| u32::from(p)).collect(),
        ports: service.ports.values().cloned().collect(),
    }
}

/// A duration read from the YAML, for the wire; `None` is sent absent.
fn wire(d: Option<std::time::Duration>) -> Option<remora_proto::Duration> {
    d.map(remora_proto::Duration::from)
}

fn merge_pool(
    base: Option<&ConnectionPool>,
    over: Option<&ConnectionPool>,
) -> Option<pb::ConnectionPool> {
    if base.is_none() && over.is_none() {
        return None;
    }
    let get = |f: fn(&ConnectionPool) -> Option<u32>| over.and_then(f).or(base.and_then(f));
    let dur = |f: fn(&ConnectionPool) -> Option<std::time::Duration>| {
        wire(over.and_then(f).or(base.and_then(f)))
    };
    let upstream = over
        .and_then(|p| p.upstream_protocol)
        .or(base.and_then(|p| p.upstream_protocol))
        .unwrap_or_default();
    Some(pb::ConnectionPool {
        max_connections: get(|p| p.max_connections).unwrap_or(0),
        connect_timeout: dur(|p| p.connect_timeout),
        tcp_idle_timeout: dur(|p| p.tcp_idle_timeout),
        http1_max_pending_requests: get(|p| p.http1_max_pending_requests).unwrap_or(0),
        http2_max_requests: get(|p| p.http2_max_requests).unwrap_or(0),
        max_requests_per_connection: get(|p| p.max_requests_per_connection).unwrap_or(0),
        http_idle_timeout: dur(|p| p.http_idle_timeout),
        max_retries: get(|p| p.max_retries).unwrap_or(0),
        // One choice, not two fields: a subset's `useClientProtocol` must
        // not meet its rule's UPGRADE (validation refuses that pair).
        h2_upgrade_policy: match upstream.h2_upgrade {
            H2UpgradePolicy::Default => pb::H2UpgradePolicy::Default,
            H2UpgradePolicy::DoNotUpgrade => pb::H2UpgradePolicy::DoNotUpgrade,
            H2UpgradePolicy::Upgrade => pb::H2UpgradePolicy::Upgrade,
        }
        .into(),
        use_client_protocol: upstream.use_client_protocol,
    })
}

fn merge_outlier(
    base: Option<&OutlierDetection>,
    over: Option<&OutlierDetection>,
) -> Option<pb::OutlierDetection> {
    if base.is_none() && over.is_none() {
        return None;
    }
    let get = |f: fn(&OutlierDetection) -> Option<u32>| over.and_then(f).or(base.and_then(f));
    let dur = |f: fn(&OutlierDetection) -> Option<std::time::Duration>| {
        wire(over.and_then(f).or(base.and_then(f)))
    };
    Some(pb::OutlierDetection {
        consecutive_5xx_errors: get(|o| o.consecutive_5xx_errors),
        consecutive_gateway_errors: get(|o| o.consecutive_gateway_errors).unwrap_or(0),
        interval: dur(|o| o.interval),
        base_ejection_time: dur(|o| o.base_ejection_time),
        max_ejection_percent: get(|o| o.max_ejection_percent).unwrap_or(0),
        min_health_percent: get(|o| o.min_health_percent).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod golden_tests;

#[cfg(test)]
mod scope_tests;
