//! Why a snapshot cannot be applied: the one error type of compiling it,
//! whose text is what a proxy's NACK carries and what the control plane
//! reports when it refuses a registration.

/// Why a snapshot cannot be applied. The text is what the NACK carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An incremental snapshot that does not apply to the config in force.
    #[error(transparent)]
    Incremental(#[from] remora_proto::incremental::IncrementalError),
    /// A regex did not compile.
    #[error("{field}: invalid regex: {error}")]
    Regex {
        /// Where the regex is.
        field: String,
        /// The regex engine's message.
        error: String,
    },
    /// A `StringMatch` with none of exact, prefix, regex.
    #[error("{field}: string match has none of exact, prefix, regex")]
    EmptyStringMatch {
        /// Where the match is.
        field: String,
    },
    /// A virtual host declares a port outside 1–65535.
    #[error("virtual host {host}: port {port} is not in 1-65535")]
    BadPort {
        /// The virtual host.
        host: String,
        /// The port sent.
        port: u32,
    },
    /// A route names a cluster the snapshot does not define.
    #[error("{route}: destination names unknown cluster `{cluster}`")]
    UnknownCluster {
        /// The route.
        route: String,
        /// The missing cluster.
        cluster: String,
    },
    /// A route whose destinations are missing or all weigh zero.
    #[error("{route}: needs at least one destination with a weight above zero")]
    NoWeight {
        /// The route.
        route: String,
    },
    /// An endpoint address that is not `host:port`.
    #[error("cluster {cluster}: endpoint address `{address}` is not host:port")]
    BadAddress {
        /// The cluster.
        cluster: String,
        /// The address as sent.
        address: String,
    },
    /// The same cluster name twice.
    #[error("cluster `{name}` is defined twice")]
    DuplicateCluster {
        /// The cluster name.
        name: String,
    },
    /// The same domain in two virtual hosts.
    #[error("domain `{domain}` belongs to both {first} and {second}")]
    DuplicateDomain {
        /// The domain.
        domain: String,
        /// The first virtual host.
        first: String,
        /// The second virtual host.
        second: String,
    },
    /// A cluster's `outlierDetection` or `connectionPool` is out of range.
    #[error("cluster {cluster}: {error}")]
    Policy {
        /// The cluster.
        cluster: String,
        /// What is wrong, naming the field.
        error: String,
    },
    /// A route's `timeout`, `retries` or `fault` is invalid.
    #[error("{route}: {error}")]
    RoutePolicy {
        /// The virtual host and route.
        route: String,
        /// What is wrong, naming the field.
        error: String,
    },
    /// An mTLS endpoint without a valid SPIFFE ID to check it against.
    #[error("cluster {cluster}: endpoint {address}: {error}")]
    EndpointIdentity {
        /// The cluster.
        cluster: String,
        /// The endpoint's address.
        address: String,
        /// What is wrong with its `spiffe_id`.
        error: String,
    },
    /// The cluster's mTLS client config could not be built. Only a proxy
    /// that has an identity builds one (compiling alone never returns this).
    #[error("cluster {cluster}: cannot build the mTLS client config: {error}")]
    Tls {
        /// The cluster.
        cluster: String,
        /// What remora-certs said.
        error: String,
    },
    /// The inbound policy (PeerAuthentication mode or an
    /// AuthorizationPolicy) is invalid.
    #[error("{error}")]
    Inbound {
        /// What is wrong, naming the field.
        error: String,
    },
    /// An enum value this proxy does not know (a newer control plane).
    #[error("cluster {cluster}: unknown load balancer {value}")]
    UnknownLoadBalancer {
        /// The cluster.
        cluster: String,
        /// The raw value.
        value: i32,
    },
    /// `Snapshot.mesh` holds a value out of range.
    #[error("mesh.{field}: {error}")]
    MeshSettings {
        /// The field of `MeshSettings`.
        field: &'static str,
        /// What is wrong with it.
        error: String,
    },
}
