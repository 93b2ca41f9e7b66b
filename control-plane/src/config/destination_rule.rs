//! `DestinationRule.spec`: host, traffic policy and subsets.

use super::cursor::{Ctx, Map, Node, Schema, TransposeNone};
use super::model::{
    ConnectionPool, DestinationRule, H2UpgradePolicy, LoadBalancer, OutlierDetection, Subset,
    TlsMode, TrafficPolicy, UpstreamProtocolPolicy,
};
use super::values;

const SPEC: Schema = Schema {
    known: &["host", "trafficPolicy", "subsets"],
    unsupported: &["exportTo", "workloadSelector"],
};

const SUBSET: Schema = Schema {
    known: &["name", "labels", "trafficPolicy"],
    unsupported: &[],
};

const TRAFFIC_POLICY: Schema = Schema {
    known: &["loadBalancer", "connectionPool", "outlierDetection", "tls"],
    unsupported: &[
        "portLevelSettings",
        "tunnel",
        "proxyProtocol",
        "retryBudget",
    ],
};

/// `tls`: every field Istio has is known, so that the ones for originating
/// TLS get an error that says why rather than "unknown".
const TLS: Schema = Schema {
    known: &[
        "mode",
        "clientCertificate",
        "privateKey",
        "caCertificates",
        "caCrl",
        "credentialName",
        "subjectAltNames",
        "sni",
        "insecureSkipVerify",
    ],
    unsupported: &[],
};

const NO_TLS_ORIGINATION: &str = "Remora does not originate TLS to services outside the \
     mesh; `tls` takes only `mode: ISTIO_MUTUAL` (mesh mTLS) or `mode: DISABLE`";

const LOAD_BALANCER: Schema = Schema {
    known: &["simple"],
    unsupported: &[
        "consistentHash",
        "localityLbSetting",
        "warmupDurationSecs",
        "warmup",
    ],
};

const CONNECTION_POOL: Schema = Schema {
    known: &["tcp", "http"],
    unsupported: &[],
};

const TCP_SETTINGS: Schema = Schema {
    known: &["maxConnections", "connectTimeout", "idleTimeout"],
    unsupported: &["tcpKeepalive", "maxConnectionDuration"],
};

const HTTP_SETTINGS: Schema = Schema {
    known: &[
        "http1MaxPendingRequests",
        "http2MaxRequests",
        "maxRequestsPerConnection",
        "maxRetries",
        "idleTimeout",
        "h2UpgradePolicy",
        "useClientProtocol",
    ],
    unsupported: &["maxConcurrentStreams"],
};

const OUTLIER_DETECTION: Schema = Schema {
    known: &[
        "consecutive5xxErrors",
        "consecutiveGatewayErrors",
        "consecutiveErrors",
        "interval",
        "baseEjectionTime",
        "maxEjectionPercent",
        "minHealthPercent",
    ],
    unsupported: &[
        "splitExternalLocalOriginErrors",
        "consecutiveLocalOriginFailures",
    ],
};

/// Reads a DestinationRule spec.
pub(crate) fn parse(ctx: &mut Ctx, spec: &Node<'_>) -> Option<DestinationRule> {
    let spec = spec.map(ctx, &SPEC)?;
    let host = spec
        .required(ctx, "host")
        .and_then(|n| values::host(ctx, n));
    let traffic_policy = spec
        .get("trafficPolicy")
        .map(|n| traffic_policy(ctx, n))
        .transpose_none();
    let subsets = match spec.get("subsets") {
        None => Some(Vec::new()),
        Some(n) => subsets(ctx, n),
    };
    Some(DestinationRule {
        host: host?.to_owned(),
        traffic_policy: traffic_policy?,
        subsets: subsets?,
    })
}

fn subsets(ctx: &mut Ctx, node: &Node<'_>) -> Option<Vec<Subset>> {
    let errors = ctx.resource_errors();
    let mut out: Vec<(Subset, usize)> = Vec::new();
    for item in node.seq(ctx)? {
        let Some(s) = item.map(ctx, &SUBSET) else {
            continue;
        };
        let name_node = s.required(ctx, "name");
        let name = name_node.and_then(|n| values::object_name(ctx, n));
        let labels = match s.get("labels") {
            None => Some(Default::default()),
            Some(n) => n.string_map(ctx),
        };
        let traffic_policy = s
            .get("trafficPolicy")
            .map(|n| traffic_policy(ctx, n))
            .transpose_none();
        let (Some(name), Some(name_node)) = (name, name_node) else {
            continue;
        };
        if let Some((_, first_line)) = out.iter().find(|(s, _)| s.name == name) {
            ctx.error(
                name_node.line(),
                name_node.path(),
                format!("duplicate subset `{name}` (first defined at line {first_line})"),
            );
            continue;
        }
        if let (Some(labels), Some(traffic_policy)) = (labels, traffic_policy) {
            let subset = Subset {
                name: name.to_owned(),
                labels,
                traffic_policy,
            };
            out.push((subset, name_node.line()));
        }
    }
    (ctx.resource_errors() == errors).then(|| out.into_iter().map(|(s, _)| s).collect())
}

fn traffic_policy(ctx: &mut Ctx, node: &Node<'_>) -> Option<TrafficPolicy> {
    let p = node.map(ctx, &TRAFFIC_POLICY)?;
    let load_balancer = p
        .get("loadBalancer")
        .map(|n| load_balancer(ctx, n))
        .transpose_none();
    let connection_pool = p
        .get("connectionPool")
        .map(|n| connection_pool(ctx, n))
        .transpose_none();
    let outlier_detection = p
        .get("outlierDetection")
        .map(|n| outlier_detection(ctx, n))
        .transpose_none();
    let tls = p.get("tls").map(|n| tls(ctx, n)).transpose_none();
    Some(TrafficPolicy {
        load_balancer: load_balancer?,
        connection_pool: connection_pool?,
        outlier_detection: outlier_detection?,
        tls: tls?,
    })
}

/// `tls`: `mode` DISABLE or ISTIO_MUTUAL, nothing else.
fn tls(ctx: &mut Ctx, node: &Node<'_>) -> Option<TlsMode> {
    let errors = ctx.resource_errors();
    let t = node.map(ctx, &TLS)?;
    for field in TLS.known.iter().filter(|f| **f != "mode") {
        if let Some(line) = t.key_line(field) {
            ctx.error(
                line,
                &node.field_path(field),
                format!("`{field}` is not supported: {NO_TLS_ORIGINATION}"),
            );
        }
    }
    let mode = t.required(ctx, "mode")?;
    let mode = match mode.str(ctx)? {
        "DISABLE" => Some(TlsMode::Disable),
        "ISTIO_MUTUAL" => Some(TlsMode::IstioMutual),
        other @ ("SIMPLE" | "MUTUAL") => {
            ctx.error(
                mode.line(),
                mode.path(),
                format!("tls mode `{other}` is not supported: {NO_TLS_ORIGINATION}"),
            );
            None
        }
        other => {
            ctx.error(
                mode.line(),
                mode.path(),
                format!("unknown tls mode `{other}`; expected DISABLE or ISTIO_MUTUAL"),
            );
            None
        }
    };
    (ctx.resource_errors() == errors).then_some(mode).flatten()
}

fn load_balancer(ctx: &mut Ctx, node: &Node<'_>) -> Option<LoadBalancer> {
    let errors = ctx.resource_errors();
    let lb = node.map(ctx, &LOAD_BALANCER)?;
    if lb.get("simple").is_none() && ctx.resource_errors() != errors {
        return None; // `consistentHash` & co. were reported; "missing simple" would be noise
    }
    let simple = lb.required(ctx, "simple")?;
    let name = simple.str(ctx)?;
    let policy = match name {
        "LEAST_REQUEST" => LoadBalancer::LeastRequest,
        "ROUND_ROBIN" => LoadBalancer::RoundRobin,
        "RANDOM" => LoadBalancer::Random,
        "LEAST_CONN" => {
            ctx.warn(
                simple.line(),
                simple.path(),
                "`LEAST_CONN` is deprecated; use `LEAST_REQUEST` (Remora reads it as LEAST_REQUEST)",
            );
            LoadBalancer::LeastRequest
        }
        "PASSTHROUGH" | "UNSPECIFIED" => {
            ctx.error(
                simple.line(),
                simple.path(),
                format!(
                    "`{name}` is not supported by Remora; use LEAST_REQUEST, ROUND_ROBIN or RANDOM"
                ),
            );
            return None;
        }
        _ => {
            ctx.error(
                simple.line(),
                simple.path(),
                format!(
                    "unknown load balancer `{name}`; expected LEAST_REQUEST, ROUND_ROBIN or RANDOM"
                ),
            );
            return None;
        }
    };
    Some(policy)
}

fn connection_pool(ctx: &mut Ctx, node: &Node<'_>) -> Option<ConnectionPool> {
    let errors = ctx.resource_errors();
    let pool = node.map(ctx, &CONNECTION_POOL)?;
    let mut out = ConnectionPool::default();
    if let Some(tcp) = pool.get("tcp").and_then(|n| n.map(ctx, &TCP_SETTINGS)) {
        out.max_connections = tcp.get("maxConnections").and_then(|n| n.u32(ctx));
        out.connect_timeout = tcp
            .get("connectTimeout")
            .and_then(|n| values::duration(ctx, n));
        out.tcp_idle_timeout = tcp
            .get("idleTimeout")
            .and_then(|n| values::duration(ctx, n));
    }
    if let Some(http) = pool.get("http").and_then(|n| n.map(ctx, &HTTP_SETTINGS)) {
        let int = |ctx: &mut Ctx, key: &str| http.get(key).and_then(|n| n.u32(ctx));
        out.http1_max_pending_requests = int(ctx, "http1MaxPendingRequests");
        out.http2_max_requests = int(ctx, "http2MaxRequests");
        out.max_requests_per_connection = int(ctx, "maxRequestsPerConnection");
        out.max_retries = int(ctx, "maxRetries");
        out.http_idle_timeout = http
            .get("idleTimeout")
            .and_then(|n| values::duration(ctx, n));
        out.upstream_protocol = upstream_protocol(ctx, &http);
    }
    (ctx.resource_errors() == errors).then_some(out)
}

/// `http.h2UpgradePolicy` and `http.useClientProtocol`; `None` when
/// neither is given (or on an error, reported).
fn upstream_protocol(ctx: &mut Ctx, http: &Map<'_>) -> Option<UpstreamProtocolPolicy> {
    let policy_node = http.get("h2UpgradePolicy");
    let client_node = http.get("useClientProtocol");
    if policy_node.is_none() && client_node.is_none() {
        return None;
    }
    let h2_upgrade = match policy_node {
        None => H2UpgradePolicy::Default,
        Some(n) => match n.str(ctx)? {
            "DEFAULT" => H2UpgradePolicy::Default,
            "DO_NOT_UPGRADE" => H2UpgradePolicy::DoNotUpgrade,
            "UPGRADE" => H2UpgradePolicy::Upgrade,
            other => {
                ctx.error(
                    n.line(),
                    n.path(),
                    format!(
                        "unknown h2UpgradePolicy `{other}`; expected DEFAULT, DO_NOT_UPGRADE \
                         or UPGRADE"
                    ),
                );
                return None;
            }
        },
    };
    let use_client_protocol = match client_node {
        None => false,
        Some(n) => n.bool(ctx)?,
    };
    if let Some(n) = client_node.filter(|_| use_client_protocol)
        && h2_upgrade == H2UpgradePolicy::Upgrade
    {
        ctx.error(
            n.line(),
            n.path(),
            "`useClientProtocol: true` keeps the client's HTTP version and \
             `h2UpgradePolicy: UPGRADE` changes it to HTTP/2: give one of them \
             (Istio refuses both together)",
        );
        return None;
    }
    Some(UpstreamProtocolPolicy {
        h2_upgrade,
        use_client_protocol,
    })
}

fn outlier_detection(ctx: &mut Ctx, node: &Node<'_>) -> Option<OutlierDetection> {
    let errors = ctx.resource_errors();
    let od = node.map(ctx, &OUTLIER_DETECTION)?;
    let count = |ctx: &mut Ctx, key: &str| od.get(key).and_then(|n| n.u32(ctx));
    let percent = |ctx: &mut Ctx, key: &str| {
        od.get(key)
            .and_then(|n| n.int_in(ctx, 0..=100))
            .and_then(|v| u32::try_from(v).ok())
    };
    let gateway = match (
        od.get("consecutiveErrors"),
        od.get("consecutiveGatewayErrors"),
    ) {
        (Some(old), Some(_)) => {
            ctx.error(
                old.line(),
                old.path(),
                "`consecutiveErrors` and `consecutiveGatewayErrors` are both given; \
                 `consecutiveErrors` is the deprecated name of `consecutiveGatewayErrors`, \
                 keep only `consecutiveGatewayErrors`",
            );
            None
        }
        (Some(old), None) => {
            ctx.warn(
                old.line(),
                old.path(),
                "`consecutiveErrors` is deprecated; use `consecutiveGatewayErrors` \
                 (Remora reads it as consecutiveGatewayErrors: 502, 503 and 504 only)",
            );
            old.u32(ctx)
        }
        (None, _) => count(ctx, "consecutiveGatewayErrors"),
    };
    // 0 turns 5xx-based ejection off, as in Istio.
    let consecutive_5xx = od.get("consecutive5xxErrors").and_then(|n| n.u32(ctx));
    let out = OutlierDetection {
        consecutive_5xx_errors: consecutive_5xx,
        consecutive_gateway_errors: gateway,
        interval: od.get("interval").and_then(|n| values::duration(ctx, n)),
        base_ejection_time: od
            .get("baseEjectionTime")
            .and_then(|n| values::duration(ctx, n)),
        max_ejection_percent: percent(ctx, "maxEjectionPercent"),
        min_health_percent: percent(ctx, "minHealthPercent"),
    };
    (ctx.resource_errors() == errors).then_some(out)
}

#[cfg(test)]
mod tests;
