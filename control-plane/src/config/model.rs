//! The typed, validated form of the Istio resources Remora reads.
//!
//! Everything here has passed validation: hosts are non-empty, weights are
//! consistent, regexes compile, durations are positive. Translation reads
//! these types and never re-checks them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The Istio kinds Remora understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `networking.istio.io` VirtualService.
    VirtualService,
    /// `networking.istio.io` DestinationRule.
    DestinationRule,
    /// `networking.istio.io` ServiceEntry.
    ServiceEntry,
    /// `networking.istio.io` WorkloadEntry.
    WorkloadEntry,
    /// `security.istio.io` PeerAuthentication.
    PeerAuthentication,
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy,
    /// `networking.istio.io` Sidecar.
    Sidecar,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::Sidecar => "Sidecar",
        })
    }
}

/// Where a resource came from and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The resource's kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    pub namespace: String,
    /// The file the resource was read from.
    pub file: PathBuf,
    /// The 1-based line of the document's first line in that file.
    pub line: usize,
}

impl Meta {
    /// `Kind namespace/name`, the way errors and logs name a resource.
    pub fn display_name(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One resource: its metadata and its validated spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Name, namespace and origin.
    pub meta: Meta,
    /// The validated spec.
    pub spec: Spec,
}

/// The spec of a resource, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A VirtualService spec.
    VirtualService(VirtualService),
    /// A DestinationRule spec.
    DestinationRule(DestinationRule),
    /// A ServiceEntry spec.
    ServiceEntry(ServiceEntry),
    /// A WorkloadEntry spec.
    WorkloadEntry(WorkloadEntry),
    /// A PeerAuthentication spec.
    PeerAuthentication(PeerAuthentication),
    /// An AuthorizationPolicy spec.
    AuthorizationPolicy(AuthorizationPolicy),
    /// A Sidecar spec.
    Sidecar(Sidecar),
}

// ---------------------------------------------------------------- VirtualService

/// `VirtualService.spec`. Only `hosts` and `http` are supported.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    /// `hosts`: short names (`reviews`) or FQDNs; at least one.
    pub hosts: Vec<String>,
    /// `http`: tried in order, first match wins.
    pub http: Vec<HttpRoute>,
}

/// One entry of `VirtualService.spec.http`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// `name`, if given.
    pub name: Option<String>,
    /// `match`: OR'd; empty means match everything.
    pub matches: Vec<HttpMatch>,
    /// `route`: at least one destination. Weights are already resolved:
    /// a single destination without weight has weight 100; with several
    /// destinations every one has an explicit weight and the sum is > 0.
    pub route: Vec<RouteDestination>,
    /// `timeout`: bounds the whole request, retries included; `0s` (no
    /// timeout, as in Istio) reads as `None`.
    pub timeout: Option<Duration>,
    /// `retries`, if given.
    pub retries: Option<Retries>,
    /// `fault`, if given.
    pub fault: Option<Fault>,
}

/// One entry of `http[].match`; every field present must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpMatch {
    /// `name`, if given.
    pub name: Option<String>,
    /// `uri`.
    pub uri: Option<StringMatch>,
    /// `headers`: header name (lower-cased) to match; `None` means "present".
    pub headers: Vec<(String, Option<StringMatch>)>,
    /// `authority`.
    pub authority: Option<StringMatch>,
    /// `method`.
    pub method: Option<StringMatch>,
    /// `queryParams`: parameter name to match; `None` means "present".
    pub query_params: Vec<(String, Option<StringMatch>)>,
    /// `ignoreUriCase`.
    pub ignore_uri_case: bool,
}

/// Istio's `StringMatch`: exactly one of exact, prefix, regex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `regex` (RE2 syntax, whole-string match); known to compile.
    Regex(String),
}

/// One entry of `http[].route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDestination {
    /// `destination.host` as written.
    pub host: String,
    /// `destination.subset`.
    pub subset: Option<String>,
    /// `destination.port.number`.
    pub port: Option<u16>,
    /// Resolved weight (see [`HttpRoute::route`]).
    pub weight: u32,
}

/// `http[].retries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    /// `attempts`: retries after the first try; 0 disables retries.
    pub attempts: u32,
    /// `perTryTimeout`; `0s` (none, as in Istio) reads as `None`.
    pub per_try_timeout: Option<Duration>,
    /// The named conditions of `retryOn` (`5xx`, `connect-failure`, ...),
    /// in the order written, each one a condition the proxy implements.
    /// Empty when `retryOn` is absent or lists status codes only.
    pub retry_on: Vec<String>,
    /// The bare status codes of `retryOn` (`503`), each in 100..=599.
    pub retriable_status_codes: Vec<u16>,
}

/// `http[].fault`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// `delay`.
    pub delay: Option<FaultDelay>,
    /// `abort`.
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultDelay {
    /// `fixedDelay`.
    pub fixed_delay: Duration,
    /// `percentage.value` in [0, 100]; absent means never applied.
    pub percentage: Option<f64>,
}

/// `fault.abort`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultAbort {
    /// `httpStatus` or `grpcStatus`.
    pub status: AbortStatus,
    /// `percentage.value` in [0, 100]; absent means never applied.
    pub percentage: Option<f64>,
}

/// What an injected abort answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortStatus {
    /// `httpStatus`, 200..=599.
    Http(u16),
    /// `grpcStatus`: the code of a known gRPC status name (`UNAVAILABLE`
    /// is 14), written upper case.
    Grpc(u32),
}

// ---------------------------------------------------------------- DestinationRule

/// `DestinationRule.spec`.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRule {
    /// `host`.
    pub host: String,
    /// `trafficPolicy`.
    pub traffic_policy: Option<TrafficPolicy>,
    /// `subsets`: names are unique.
    pub subsets: Vec<Subset>,
}

/// `subsets[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    /// `name`.
    pub name: String,
    /// `labels`: all must match an endpoint's labels.
    pub labels: BTreeMap<String, String>,
    /// `trafficPolicy`: overrides the rule's policy field by field.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `trafficPolicy`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficPolicy {
    /// `loadBalancer.simple`.
    pub load_balancer: Option<LoadBalancer>,
    /// `connectionPool`.
    pub connection_pool: Option<ConnectionPool>,
    /// `outlierDetection`.
    pub outlier_detection: Option<OutlierDetection>,
    /// `tls.mode`: only the in-mesh modes; Remora does not originate TLS
    /// to services outside the mesh.
    pub tls: Option<TlsMode>,
}

/// `trafficPolicy.tls.mode`, the modes Remora supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `DISABLE`: plaintext to every endpoint.
    Disable,
    /// `ISTIO_MUTUAL`: mTLS with the mesh's certificates, to every endpoint
    /// that can speak it (a proxy with an identity, or a WorkloadEntry
    /// labelled `security.istio.io/tlsMode: istio`).
    IstioMutual,
}

/// `loadBalancer.simple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancer {
    /// `LEAST_REQUEST` (also `LEAST_CONN`, its deprecated name).
    LeastRequest,
    /// `ROUND_ROBIN`.
    RoundRobin,
    /// `RANDOM`.
    Random,
}

/// `connectionPool`; `None` fields are unset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionPool {
    /// `tcp.maxConnections`.
    pub max_connections: Option<u32>,
    /// `tcp.connectTimeout`.
    pub connect_timeout: Option<Duration>,
    /// `tcp.idleTimeout`.
    pub tcp_idle_timeout: Option<Duration>,
    /// `http.http1MaxPendingRequests`.
    pub http1_max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests`.
    pub http2_max_requests: Option<u32>,
    /// `http.maxRequestsPerConnection`.
    pub max_requests_per_connection: Option<u32>,
    /// `http.idleTimeout`.
    pub http_idle_timeout: Option<Duration>,
    /// `http.maxRetries`.
    pub max_retries: Option<u32>,
    /// `http.h2UpgradePolicy` and `http.useClientProtocol`, which choose
    /// the upstream's HTTP version together (a subset that sets either
    /// replaces both); `None` when neither is given.
    pub upstream_protocol: Option<UpstreamProtocolPolicy>,
}

/// `http.h2UpgradePolicy` and `http.useClientProtocol`, validated: never
/// UPGRADE together with `useClientProtocol: true` (Istio refuses that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamProtocolPolicy {
    /// `h2UpgradePolicy`.
    pub h2_upgrade: H2UpgradePolicy,
    /// `useClientProtocol`.
    pub use_client_protocol: bool,
}

/// `http.h2UpgradePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum H2UpgradePolicy {
    /// `DEFAULT` (or absent): the mesh's default, DO_NOT_UPGRADE.
    #[default]
    Default,
    /// `DO_NOT_UPGRADE`.
    DoNotUpgrade,
    /// `UPGRADE`.
    Upgrade,
}

/// `outlierDetection`; `None` fields take Istio's defaults in translation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors`.
    pub consecutive_5xx_errors: Option<u32>,
    /// `consecutiveGatewayErrors`, or the deprecated `consecutiveErrors`
    /// (which Istio defined as 502/503/504 only).
    pub consecutive_gateway_errors: Option<u32>,
    /// `interval`.
    pub interval: Option<Duration>,
    /// `baseEjectionTime`.
    pub base_ejection_time: Option<Duration>,
    /// `maxEjectionPercent`, 0..=100.
    pub max_ejection_percent: Option<u32>,
    /// `minHealthPercent`, 0..=100.
    pub min_health_percent: Option<u32>,
}

// ---------------------------------------------------------------- ServiceEntry / WorkloadEntry

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    /// `hosts`: at least one, no wildcards.
    pub hosts: Vec<String>,
    /// `ports`: exactly one for now.
    pub ports: Vec<ServicePort>,
    /// `location`.
    pub location: Location,
    /// `resolution`.
    pub resolution: Resolution,
    /// `endpoints`.
    pub endpoints: Vec<WorkloadEntry>,
    /// `workloadSelector.labels`: selects WorkloadEntries in the same namespace.
    pub workload_selector: Option<BTreeMap<String, String>>,
}

/// `ports[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `number`.
    pub number: u16,
    /// `name`.
    pub name: String,
    /// `protocol` (upper-cased), e.g. `HTTP`, `HTTP2`, `GRPC`, `TCP`.
    pub protocol: Option<String>,
    /// `targetPort`.
    pub target_port: Option<u16>,
}

impl ServicePort {
    /// Declared opaque TCP: `protocol: TCP`, or (without a protocol) a
    /// name `tcp` or `tcp-*`, as Istio's protocol selection reads it.
    pub fn is_tcp(&self) -> bool {
        self.app_protocol() == AppProtocol::Tcp
    }

    /// The port's protocol as Istio selects it: `protocol` when given,
    /// else the name's prefix before the first `-` (`http-web` is HTTP,
    /// `grpc-web` gRPC); anything else is [`AppProtocol::Undeclared`]
    /// (sniffed). A name `h2c` or `h2c-*` is HTTP/2: Istio's reading of
    /// `appProtocol: kubernetes.io/h2c`, which a ServiceEntry port cannot
    /// carry.
    pub fn app_protocol(&self) -> AppProtocol {
        let named = |p: &str| match p.to_ascii_lowercase().as_str() {
            "http" => AppProtocol::Http,
            "http2" | "grpc" | "grpc-web" | "h2c" => AppProtocol::Http2,
            "tcp" => AppProtocol::Tcp,
            _ => AppProtocol::Undeclared,
        };
        match &self.protocol {
            Some(p) => named(p),
            None => named(self.name.split('-').next().unwrap_or_default()),
        }
    }
}

/// What a port's declared protocol means for the upstream's HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    /// Nothing (or something else) declared: sniffed.
    Undeclared,
    /// `HTTP`: HTTP/1.1.
    Http,
    /// `HTTP2`, `GRPC`, `GRPC-WEB`, `h2c`: HTTP/2.
    Http2,
    /// `TCP`.
    Tcp,
}

/// `location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Location {
    /// `MESH_EXTERNAL` (Istio's default).
    #[default]
    MeshExternal,
    /// `MESH_INTERNAL`.
    MeshInternal,
}

/// `resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `STATIC`: endpoints are IP addresses.
    Static,
    /// `DNS`: endpoints (or hosts, when there are none) are resolved by the proxy.
    Dns,
}

/// `WorkloadEntry.spec`, also the shape of `ServiceEntry.spec.endpoints[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkloadEntry {
    /// `address`: an IP, or a DNS name with `resolution: DNS`.
    pub address: String,
    /// `ports`: port name to port number.
    pub ports: BTreeMap<String, u16>,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `serviceAccount`.
    pub service_account: Option<String>,
}

// ---------------------------------------------------------------- PeerAuthentication

/// A PeerAuthentication mode as written: `UNSET` inherits from the parent
/// scope (workload → namespace → mesh root → PERMISSIVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerMode {
    /// `UNSET`, or no `mode` at all.
    #[default]
    Unset,
    /// `PERMISSIVE`: mTLS and plaintext.
    Permissive,
    /// `STRICT`: mTLS only.
    Strict,
    /// `DISABLE`: plaintext only.
    Disable,
}

/// `PeerAuthentication.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerAuthentication {
    /// `selector.matchLabels`; `None` (also for empty `matchLabels`) makes
    /// the policy namespace-wide, or mesh-wide in the root namespace.
    pub selector: Option<BTreeMap<String, String>>,
    /// `mtls.mode`.
    pub mode: PeerMode,
    /// `portLevelMtls`: app port (1..=65535) to mode; only with a selector.
    pub port_level_mtls: BTreeMap<u16, PeerMode>,
}

impl PeerAuthentication {
    /// Whether the policy's selector picks a workload with `labels` (a
    /// policy without selector picks every workload of its scope).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        selects(self.selector.as_ref(), labels)
    }
}

// ---------------------------------------------------------------- AuthorizationPolicy

/// `AuthorizationPolicy.spec.action`, the actions Remora enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizationAction {
    /// `ALLOW` (the default).
    #[default]
    Allow,
    /// `DENY`.
    Deny,
}

/// `AuthorizationPolicy.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizationPolicy {
    /// `selector.matchLabels`; `None` (also for empty `matchLabels`)
    /// selects every workload of the namespace, or of the mesh in the root
    /// namespace.
    pub selector: Option<BTreeMap<String, String>>,
    /// `action`.
    pub action: AuthorizationAction,
    /// `rules`: OR'd. None at all matches nothing (an ALLOW policy without
    /// rules thus denies every request).
    pub rules: Vec<AuthorizationRule>,
}

impl AuthorizationPolicy {
    /// Whether the policy's selector picks a workload with `labels` (a
    /// policy without selector picks every workload of its scope).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        selects(self.selector.as_ref(), labels)
    }
}

fn selects(selector: Option<&BTreeMap<String, String>>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// `rules[]`: matches when a `from` and a `to` entry match (empty = any).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizationRule {
    /// `from[].source`.
    pub from: Vec<AuthorizationSource>,
    /// `to[].operation`.
    pub to: Vec<AuthorizationOperation>,
}

/// `from[].source`. Values are exact, `prefix*`, `*suffix` or `*`; at
/// least one field is non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizationSource {
    /// `principals`: `<trust-domain>/ns/<ns>/sa/<sa>`.
    pub principals: Vec<String>,
    /// `notPrincipals`.
    pub not_principals: Vec<String>,
    /// `namespaces`.
    pub namespaces: Vec<String>,
    /// `notNamespaces`.
    pub not_namespaces: Vec<String>,
}

/// `to[].operation`. Values are exact, `prefix*`, `*suffix` or `*`
/// (ports: decimal 1..=65535, no wildcards); at least one field is non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizationOperation {
    /// `methods`.
    pub methods: Vec<String>,
    /// `notMethods`.
    pub not_methods: Vec<String>,
    /// `paths`.
    pub paths: Vec<String>,
    /// `notPaths`.
    pub not_paths: Vec<String>,
    /// `ports`, as written (decimal strings).
    pub ports: Vec<String>,
    /// `notPorts`.
    pub not_ports: Vec<String>,
    /// `hosts`.
    pub hosts: Vec<String>,
    /// `notHosts`.
    pub not_hosts: Vec<String>,
}

// ---------------------------------------------------------------- Sidecar

/// `Sidecar.spec`: the scope of the proxies it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// `workloadSelector.labels`; `None` (or empty labels): every workload
    /// of the namespace (of the mesh, in the root namespace).
    pub workload_selector: Option<BTreeMap<String, String>>,
    /// `egress[].hosts`, every entry's together; `None` without `egress`:
    /// every service, as without a Sidecar.
    pub egress: Option<Vec<EgressHost>>,
    /// `outboundTrafficPolicy.mode`; `None`: the mesh's.
    pub outbound_traffic_policy: Option<OutboundMode>,
}

/// One `namespace/dnsName` of `egress[].hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressHost {
    /// The part before `/`.
    pub namespace: HostNamespace,
    /// The part after `/`, lower case.
    pub dns: DnsPattern,
}

/// Which namespaces' services an egress host takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostNamespace {
    /// `*`: any.
    Any,
    /// `.`: the Sidecar's own.
    Own,
    /// `~`: none (the entry imports nothing).
    NoNamespace,
    /// That namespace.
    Named(String),
}

/// Which host names an egress host takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsPattern {
    /// `*`.
    Any,
    /// `*.example.com`, held as `.example.com`.
    Suffix(String),
    /// A fully qualified name.
    Exact(String),
}

/// Istio's `outboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundMode {
    /// `ALLOW_ANY`.
    AllowAny,
    /// `REGISTRY_ONLY`.
    RegistryOnly,
}
