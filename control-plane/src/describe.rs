//! `remora describe`: which virtual host, route, match clause and weighted
//! destinations a request would take, and why.
//!
//! The snapshot is the one `remora serve` would push to a proxy in
//! `--namespace` (translated from the config directory, plus the running
//! mesh's workloads when `--control-plane-monitoring` is given), and it is
//! routed by the proxies' own code ([`CompiledSnapshot`],
//! [`VirtualHost::route`](remora_route::VirtualHost::route), [`RequestMatch`]):
//! there is one implementation of route matching.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, header};
use remora_proto::pb;
use remora_route::{CompiledSnapshot, RequestMatch};
use serde::Serialize;

use crate::config::{self, Severity};
use crate::proxy_status;
use crate::translate::{self, MeshSettings, Nodes};

/// `remora describe`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// The config directory `remora serve` reads.
    #[arg(long, env = "REMORA_CONFIG_DIR")]
    pub config_dir: PathBuf,
    /// The request's host (Host header), e.g. `reviews` or
    /// `reviews.default.svc.cluster.local:9080`.
    #[arg(long)]
    pub host: String,
    /// The request's path (with query, if any).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The request's method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header `name=value` (repeat for more).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The namespace of the calling workload: short host names resolve in it.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// A running control plane's monitoring address (`--monitoring-addr`
    /// of `remora serve`): its connected workloads become endpoints.
    /// Without it, endpoints come from the config only (ServiceEntries).
    #[arg(long)]
    pub control_plane_monitoring: Option<String>,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// How the answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("header `{s}` is not name=value")),
    }
}

/// Why a request could not be described.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescribeError {
    /// The config directory has errors; `remora validate` shows them.
    #[error("the config has {count} error(s):\n{errors}")]
    Config {
        /// How many.
        count: usize,
        /// One diagnostic per line.
        errors: String,
    },
    /// The request given on the command line is not a valid request.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The snapshot does not build (the proxy would NACK it).
    #[error("the proxy would reject this config: {0}")]
    Snapshot(String),
    /// No virtual host answers to the host.
    #[error("no service known as `{host}` from namespace {namespace}; known hosts: {known}")]
    UnknownHost {
        /// The host asked for.
        host: String,
        /// The caller's namespace.
        namespace: String,
        /// Every domain of the snapshot, comma-separated.
        known: String,
    },
    /// The control plane's workloads could not be read.
    #[error(transparent)]
    Monitoring(#[from] proxy_status::FetchError),
}

/// Where a request goes, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// The host as asked.
    pub host: String,
    /// The caller's namespace.
    pub namespace: String,
    /// The virtual host (service FQDN) the host selected.
    pub virtual_host: String,
    /// The route taken, or `None` when no route matches (the proxy answers
    /// 404 `NR`).
    pub route: Option<RouteChoice>,
    /// The routes before it that did not match, with the reason.
    pub skipped: Vec<Skipped>,
    /// The route's weighted destinations.
    pub destinations: Vec<Destination>,
    /// The route's `timeout` in ms (`None`: no bound).
    pub timeout_ms: Option<u64>,
    /// The route's `retries`, `None` for Remora's safe default; in JSON,
    /// `retry_on` as Istio writes it ([`retries_as_istio_writes_them`]).
    #[serde(serialize_with = "retries_as_istio_writes_them")]
    pub retries: Option<pb::RetryPolicy>,
    /// The route's `fault`, if any; in JSON, the delay as
    /// `fixed_delay_ms` ([`fault_in_milliseconds`]).
    #[serde(serialize_with = "fault_in_milliseconds")]
    pub fault: Option<pb::Fault>,
}

/// The route a request takes.
#[derive(Debug, Clone, Serialize)]
pub struct RouteChoice {
    /// The route name from the snapshot (`<vs-name>.<ns>/http[i]`, or
    /// `default` for a service without VirtualService).
    pub name: String,
    /// Its position in the virtual host.
    pub index: usize,
    /// The match clause that held (`None`: the route has no match clause
    /// and takes every request).
    pub matched: Option<usize>,
    /// Why it matched, in words.
    pub why: String,
}

/// A route that was tried before the one taken.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Its name.
    pub route: String,
    /// Why it did not match.
    pub why: String,
}

/// One weighted destination of the route.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// `<subset>|<fqdn>`.
    pub cluster: String,
    /// The service FQDN.
    pub service: String,
    /// The subset, empty for the whole service.
    pub subset: String,
    /// The weight as configured.
    pub weight: u32,
    /// Its share of the route's traffic, in percent.
    pub percent: f64,
    /// The cluster's endpoints.
    pub endpoints: Vec<EndpointView>,
}

/// One endpoint of a destination.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    /// `host:port`.
    pub address: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

impl DescribeArgs {
    /// Runs the command: prints the description, or the error and exits 1.
    pub fn run(self) -> ExitCode {
        let nodes = match &self.control_plane_monitoring {
            None => Ok(Nodes::new()),
            Some(url) => mesh_nodes(url),
        };
        let result = nodes.and_then(|nodes| {
            let resources = read_config(&self.config_dir)?;
            let request = request_parts(&self.method, &self.host, &self.path, &self.headers)?;
            describe(&resources, &nodes, &self.namespace, &self.host, &request)
        });
        match result {
            Ok(d) => {
                match self.output {
                    Output::Text => print!("{}", render(&d)),
                    Output::Json => match serde_json::to_string_pretty(&d) {
                        Ok(json) => println!("{json}"),
                        Err(e) => {
                            eprintln!("error: cannot encode the description: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The running mesh's workloads, as the control plane's registry holds them.
fn mesh_nodes(url: &str) -> Result<Nodes, DescribeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DescribeError::BadRequest(format!("cannot start the runtime: {e}")))?;
    let proxies = runtime.block_on(proxy_status::fetch(url))?;
    Ok(proxies
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let node = pb::Node {
                id: p.id,
                service_account: p.service.clone(),
                service: p.service,
                namespace: p.namespace,
                labels: p.labels.into_iter().collect(),
                inbound_address: p.inbound_address,
                ..Default::default()
            };
            (i as u64, node)
        })
        .collect())
}

/// The resources of every YAML file under `dir`; any error fails.
pub fn read_config(dir: &Path) -> Result<Vec<config::model::Resource>, DescribeError> {
    let files = config::yaml_files(&[dir.to_path_buf()]).map_err(|d| DescribeError::Config {
        count: 1,
        errors: d.to_string(),
    })?;
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        let outcome = config::parse_file(file);
        errors.extend(
            outcome
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(ToString::to_string),
        );
        resources.extend(outcome.resources);
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(DescribeError::Config {
            count: errors.len(),
            errors: errors.join("\n"),
        })
    }
}

/// The request head the proxy would see.
pub fn request_parts(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<Parts, DescribeError> {
    let bad = DescribeError::BadRequest;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| bad(format!("`{method}` is not an HTTP method")))?;
    if !path.starts_with('/') {
        return Err(bad(format!("path `{path}` must start with `/`")));
    }
    let uri: http::Uri = path
        .parse()
        .map_err(|e| bad(format!("path `{path}`: {e}")))?;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let host_value = HeaderValue::from_str(host)
        .map_err(|_| bad(format!("host `{host}` is not a header value")))?;
    req.headers_mut().insert(header::HOST, host_value);
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("`{name}` is not a header name")))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| bad(format!("header {name}: `{value}` is not a header value")))?;
        req.headers_mut().append(n, v);
    }
    Ok(req.into_parts().0)
}

/// Routes `request` (whose Host is `host`) on the snapshot a proxy in
/// `namespace` would get, with the proxy's own matcher.
pub fn describe(
    resources: &[config::model::Resource],
    nodes: &Nodes,
    namespace: &str,
    host: &str,
    request: &Parts,
) -> Result<Description, DescribeError> {
    let node = pb::Node {
        id: "remora-describe".into(),
        service: "remora-describe".into(),
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    let snapshot = translate::snapshot_for(&node, resources, nodes, &MeshSettings::default());
    let config = CompiledSnapshot::compile(&snapshot, |_| Ok(()))
        .map_err(|e| DescribeError::Snapshot(e.to_string()))?;
    // The proxy's lookup: host without port, lower-cased.
    let lookup = remora_route::host::host_of(host).to_ascii_lowercase();
    let Some(vhost) = config.routes.virtual_host(&lookup) else {
        let mut known: Vec<&str> = snapshot
            .virtual_hosts
            .iter()
            .flat_map(|v| v.domains.iter().map(String::as_str))
            .collect();
        known.sort_unstable();
        return Err(DescribeError::UnknownHost {
            host: host.to_owned(),
            namespace: namespace.to_owned(),
            known: if known.is_empty() {
                "(none)".to_owned()
            } else {
                known.join(", ")
            },
        });
    };
    let pb_routes: &[pb::Route] = snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.name == vhost.name())
        .map_or(&[], |v| &v.routes);
    let chosen = vhost.route(request).map(|r| r.name().to_owned());

    let mut description = Description {
        host: host.to_owned(),
        namespace: namespace.to_owned(),
        virtual_host: vhost.name().to_owned(),
        route: None,
        skipped: Vec::new(),
        destinations: Vec::new(),
        timeout_ms: None,
        retries: None,
        fault: None,
    };
    for (index, r) in pb_routes.iter().enumerate() {
        let held = clause_results(r, request);
        if chosen.as_deref() != Some(r.name.as_str()) {
            description.skipped.push(Skipped {
                route: r.name.clone(),
                why: format!(
                    "no match clause holds: {}",
                    r.matches
                        .iter()
                        .enumerate()
                        .map(|(i, m)| format!("match[{i}] ({})", clause_text(m)))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
            continue;
        }
        let matched = held.iter().position(|h| *h);
        let why = match matched {
            None => "the route has no match clause: it takes every request".to_owned(),
            Some(i) => format!("match[{i}] holds: {}", clause_text(&r.matches[i])),
        };
        description.route = Some(RouteChoice {
            name: r.name.clone(),
            index,
            matched,
            why,
        });
        description.destinations = destinations(r, &snapshot.clusters);
        description.timeout_ms = Some(millis(r.timeout.as_ref())).filter(|&ms| ms > 0);
        description.retries = r.retry.clone();
        description.fault = r.fault;
        break;
    }
    Ok(description)
}

/// Whether each match clause of `route` holds, by the proxy's matcher.
fn clause_results(route: &pb::Route, request: &Parts) -> Vec<bool> {
    route
        .matches
        .iter()
        .map(|m| {
            // The snapshot built above, so every clause compiles.
            RequestMatch::compile(m, &route.name).is_ok_and(|c| c.matches(request))
        })
        .collect()
}

fn destinations(route: &pb::Route, clusters: &[pb::Cluster]) -> Vec<Destination> {
    let total: u64 = route.destinations.iter().map(|d| u64::from(d.weight)).sum();
    route
        .destinations
        .iter()
        .map(|d| {
            let cluster = clusters.iter().find(|c| c.name == d.cluster);
            Destination {
                cluster: d.cluster.clone(),
                service: cluster.map(|c| c.service.clone()).unwrap_or_default(),
                subset: cluster.map(|c| c.subset.clone()).unwrap_or_default(),
                weight: d.weight,
                percent: if total == 0 {
                    0.0
                } else {
                    f64::from(d.weight) * 100.0 / total as f64
                },
                endpoints: cluster
                    .map(|c| {
                        c.endpoints
                            .iter()
                            .map(|e| EndpointView {
                                address: e.address.clone(),
                                labels: e.labels.clone().into_iter().collect(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// A match clause in words: `header end-user exact "jason" and uri prefix "/api"`.
pub fn clause_text(m: &pb::RouteMatch) -> String {
    let mut parts = Vec::new();
    if let Some(uri) = &m.uri {
        let case = if m.ignore_uri_case {
            " (ignoring case)"
        } else {
            ""
        };
        parts.push(format!("uri {}{case}", string_match(uri)));
    }
    for h in &m.headers {
        parts.push(format!("header {} {}", h.name, key_value(h)));
    }
    if let Some(a) = &m.authority {
        parts.push(format!("authority {}", string_match(a)));
    }
    if let Some(method) = &m.method {
        parts.push(format!("method {}", string_match(method)));
    }
    for q in &m.query_params {
        parts.push(format!("query {} {}", q.name, key_value(q)));
    }
    if parts.is_empty() {
        "every request".to_owned()
    } else {
        parts.join(" and ")
    }
}

fn key_value(k: &pb::KeyMatch) -> String {
    k.value
        .as_ref()
        .map_or_else(|| "present".to_owned(), string_match)
}

fn string_match(m: &pb::StringMatch) -> String {
    use pb::string_match::Kind;
    match &m.kind {
        Some(Kind::Exact(v)) => format!("exact {v:?}"),
        Some(Kind::Prefix(v)) => format!("prefix {v:?}"),
        Some(Kind::Regex(v)) => format!("regex {v:?}"),
        None => "(empty)".to_owned(),
    }
}

/// The description as human-readable lines.
pub fn render(d: &Description) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "host:          {} (from namespace {})",
        d.host, d.namespace
    ));
    line(format!("virtual host:  {}", d.virtual_host));
    for s in &d.skipped {
        line(format!("skipped route: {} — {}", s.route, s.why));
    }
    let Some(route) = &d.route else {
        line("route:         none matches: the proxy answers 404 (NR)".to_owned());
        return out;
    };
    line(format!(
        "route:         {} (http[{}] of the virtual host)",
        route.name, route.index
    ));
    line(format!("why:           {}", route.why));
    line("destinations:".to_owned());
    for dest in &d.destinations {
        let subset = if dest.subset.is_empty() {
            "(whole service)"
        } else {
            &dest.subset
        };
        line(format!(
            "  {}  subset {subset}  weight {} ({:.1}%)",
            dest.cluster, dest.weight, dest.percent
        ));
        if dest.endpoints.is_empty() {
            line("    no endpoints (the proxy answers 503 UH)".to_owned());
        }
        for e in &dest.endpoints {
            let labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line(format!("    endpoint {} {}", e.address, labels.join(",")));
        }
    }
    line(match d.timeout_ms {
        Some(ms) => format!("timeout:       {ms} ms"),
        None => "timeout:       none".to_owned(),
    });
    line(match &d.retries {
        None => "retries:       default (only requests that never reached the app)".to_owned(),
        Some(r) => {
            let per_try = match millis(r.per_try_timeout.as_ref()) {
                0 => String::new(),
                ms => format!(", perTryTimeout {ms} ms"),
            };
            format!(
                "retries:       attempts {}{per_try}, retryOn {}",
                r.attempts,
                retry_on_text(r)
            )
        }
    });
    line(match &d.fault {
        None => "fault:         none".to_owned(),
        Some(_) => format!(
            "fault:         {}",
            serde_json::to_string(&FaultShown(&d.fault))
                .unwrap_or_else(|e| format!("(cannot show: {e})"))
        ),
    });
    out
}

/// A wire duration in whole milliseconds, as describe has always shown
/// them; 0 when absent. The snapshot compiled, so it is a valid duration
/// (an invalid one would show as 0).
fn millis(d: Option<&remora_proto::Duration>) -> u64 {
    d.and_then(|&d| std::time::Duration::try_from(d).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A policy's `retryOn` as Istio writes it: conditions, gRPC names, codes.
fn retry_on_text(r: &pb::RetryPolicy) -> String {
    retry_on_names(r).join(",")
}

/// A policy's `retryOn`, one entry per condition, gRPC name or code, as
/// Istio spells them.
fn retry_on_names(r: &pb::RetryPolicy) -> Vec<String> {
    use remora_route::retry::{IstioCondition, istio_name};
    let http = r.retry_on.iter().filter_map(|&c| {
        let c = pb::RetryCondition::try_from(c).ok()?;
        istio_name(IstioCondition::Http(c)).map(str::to_owned)
    });
    let grpc = r
        .retriable_grpc_codes
        .iter()
        .filter_map(|&code| istio_name(IstioCondition::Grpc(code)).map(str::to_owned));
    let codes = r.retriable_status_codes.iter().map(u32::to_string);
    http.chain(grpc).chain(codes).collect()
}

/// `retries` in JSON with `retry_on` as Istio's names (`["gateway-error",
/// "unavailable", "503"]`), not the wire's enum numbers: what a script
/// compares with the VirtualService it read.
fn retries_as_istio_writes_them<S: serde::Serializer>(
    retries: &Option<pb::RetryPolicy>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown {
        attempts: u32,
        per_try_timeout_ms: u64,
        retry_on: Vec<String>,
    }
    retries
        .as_ref()
        .map(|r| Shown {
            attempts: r.attempts,
            per_try_timeout_ms: millis(r.per_try_timeout.as_ref()),
            retry_on: retry_on_names(r),
        })
        .serialize(serializer)
}

/// `fault` as [`fault_in_milliseconds`] shows it, for the text output.
struct FaultShown<'a>(&'a Option<pb::Fault>);

impl Serialize for FaultShown<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fault_in_milliseconds(self.0, serializer)
    }
}

/// `fault` in JSON with the delay in milliseconds (`fixed_delay_ms`), as
/// describe showed it before durations travelled as
/// `google.protobuf.Duration`: what a script compares stays a number.
fn fault_in_milliseconds<S: serde::Serializer>(
    fault: &Option<pb::Fault>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Delay {
        fixed_delay_ms: u64,
        percentage: Option<f64>,
    }
    /// One of the two statuses, the gRPC one by name as Istio writes it
    /// (`UNAVAILABLE`, not 14).
    #[derive(Serialize)]
    struct Abort {
        #[serde(skip_serializing_if = "Option::is_none")]
        http_status: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        grpc_status: Option<&'static str>,
        percentage: Option<f64>,
    }
    #[derive(Serialize)]
    struct Shown {
        delay: Option<Delay>,
        abort: Option<Abort>,
    }
    fault
        .as_ref()
        .map(|f| Shown {
            delay: f.delay.as_ref().map(|d| Delay {
                fixed_delay_ms: millis(d.fixed_delay.as_ref()),
                percentage: d.percentage,
            }),
            abort: f.abort.as_ref().map(|a| Abort {
                http_status: match a.status {
                    Some(pb::fault_abort::Status::HttpStatus(code)) => Some(code),
                    _ => None,
                },
                grpc_status: match a.status {
                    Some(pb::fault_abort::Status::GrpcStatus(code)) => Some(
                        usize::try_from(code)
                            .ok()
                            .and_then(|c| remora_route::grpc::STATUS_NAMES.get(c))
                            .copied()
                            .unwrap_or("UNKNOWN"),
                    ),
                    _ => None,
                },
                percentage: a.percentage,
            }),
        })
        .serialize(serializer)
}

#[cfg(test)]
mod tests;
