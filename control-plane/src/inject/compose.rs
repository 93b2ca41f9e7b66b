//! Compose files: each app service becomes a "pod" of three services.
//!
//! For a service `S` (mesh service: its `app` label, else `S`; service
//! account: the mesh service's name):
//!
//! - `S-proxy`, the sidecar, owns the network namespace: it takes `S`'s
//!   `ports`, `expose`, `networks`, `hostname`, DNS settings and links, and
//!   answers to the aliases `S` and the mesh service on each network, so
//!   that `http://reviews:9080/` resolves. It reads its bootstrap token and
//!   the CA certificate from the volume `remora-bootstrap-<account>`, and is
//!   healthy once `remora-proxy wait-ready` says so (port 15021).
//! - `S-init` runs `remora-proxy init` in that namespace (root, NET_ADMIN and
//!   NET_RAW only) as soon as the sidecar has started, and exits.
//! - `S` joins with `network_mode: service:S-proxy` and starts only once
//!   `S-init` has completed successfully and `S-proxy` is healthy: the app
//!   never runs, and never sends a packet, before its traffic is captured.
//!
//! The sidecar starts before the capture rules exist; that is harmless,
//! since until the app starts the sidecar (uid 1337, which the rules leave
//! alone) is the only process in the namespace, and peers reach it on its
//! registered inbound address, not through capture.
//!
//! Per service account, `remora-bootstrap-<account>` (the control plane's
//! image, `remora bootstrap`) writes that account's token and the CA
//! certificate into its own volume once the control plane is healthy; only
//! the sidecars of that account mount it. The control plane is the service
//! `remora` (`--control-plane-service`): when the file has none, one is
//! added, with its data on the volume `remora-data`.
//!
//! Services that already use `network_mode` (a pod's members, host
//! networking), that run Remora's images, or that are labelled
//! `sidecar.istio.io/inject: "false"` are left alone; so injecting twice is
//! injecting once.

use saphyr::{Mapping, Scalar, Yaml};

use super::Settings;
use super::annotations::PodOptions;
use super::yaml::{FieldError, describe, get, get_str, int, join, map, string, strings};

/// Where the control plane keeps its CA and token key in its image.
const DATA_DIR: &str = "/var/lib/remora";
/// Where the bootstrap files are, in both images.
const BOOTSTRAP_DIR: &str = "/var/run/remora/bootstrap";
/// Keys of an app service that belong to whoever owns the network namespace.
const NETWORK_KEYS: &[&str] = &[
    "ports",
    "expose",
    "networks",
    "hostname",
    "domainname",
    "dns",
    "dns_search",
    "dns_opt",
    "extra_hosts",
    "mac_address",
    "links",
];

/// Is this document a Compose file (top-level `services`, no `kind`)?
pub(super) fn is_compose(doc: &Yaml<'_>) -> bool {
    doc.is_mapping() && get(doc, "services").is_some() && get(doc, "kind").is_none()
}

/// One app service to turn into a pod.
struct Pod {
    name: String,
    service: String,
    account: String,
    labels: Vec<(String, String)>,
    app_port: Option<u16>,
    options: PodOptions,
}

/// Injects a Compose file in place; returns the names of the services that
/// got a sidecar.
pub(super) fn inject_compose(
    doc: &mut Yaml<'_>,
    settings: &Settings,
) -> Result<Vec<String>, FieldError> {
    let Some(Yaml::Mapping(services)) = get(doc, "services") else {
        let found = get(doc, "services").map_or("nothing", describe);
        return Err(FieldError::new(
            "services",
            format!("expected a mapping, found {found}"),
        ));
    };
    let control_plane = settings.control_plane_service.as_str();
    let mut pods = Vec::new();
    let mut data_volume = None;
    for (key, service) in services {
        let name = key
            .as_str()
            .ok_or_else(|| FieldError::new("services", "has a key that is not a string"))?;
        let path = join("services", name);
        if !service.is_mapping() {
            return Err(FieldError::new(
                path,
                format!(
                    "expected a service (a mapping), found {}",
                    describe(service)
                ),
            ));
        }
        if name == control_plane {
            data_volume = Some(control_plane_data_volume(service, &path)?);
            continue;
        }
        if let Some(pod) = pod_of(name, service, &path)? {
            pods.push(pod);
        }
    }

    let mut accounts: Vec<&str> = pods.iter().map(|p| p.account.as_str()).collect();
    accounts.sort_unstable();
    accounts.dedup();

    let mut volumes_to_add: Vec<String> = accounts.iter().map(|a| bootstrap_name(a)).collect();
    let data_volume = match data_volume {
        Some(v) => v,
        None => {
            volumes_to_add.push("remora-data".to_owned());
            "remora-data".to_owned()
        }
    };

    // The services again, in order, with the generated ones beside theirs.
    let Some(Yaml::Mapping(old)) = doc.as_mapping_get_mut("services") else {
        unreachable!("checked above");
    };
    let old = std::mem::take(old);
    let mut new = Mapping::new();
    if !old.contains_key(&string(control_plane)) {
        new.insert(string(control_plane), control_plane_service(settings));
        for account in &accounts {
            insert_bootstrap(&mut new, account, control_plane, &data_volume, settings);
        }
    }
    for (key, mut service) in old {
        let name = key.as_str().unwrap_or_default().to_owned();
        if let Some(pod) = pods.iter().find(|p| p.name == name) {
            let mut sidecar = sidecar_service(pod, settings);
            move_network_keys(&mut service, &mut sidecar, pod)?;
            join_pod(&mut service, pod)?;
            new.insert(string(format!("{name}-proxy")), sidecar);
            new.insert(string(format!("{name}-init")), init_service(pod, settings));
            new.insert(key, service);
            continue;
        }
        let is_control_plane = name == control_plane;
        if is_control_plane
            && get(&service, "healthcheck").is_none()
            && let Yaml::Mapping(m) = &mut service
        {
            m.insert(string("healthcheck"), control_plane_healthcheck());
        }
        new.insert(key, service);
        if is_control_plane {
            for account in &accounts {
                insert_bootstrap(&mut new, account, control_plane, &data_volume, settings);
            }
        }
    }
    let Some(Yaml::Mapping(slot)) = doc.as_mapping_get_mut("services") else {
        unreachable!("checked above");
    };
    *slot = new;

    if !volumes_to_add.is_empty() {
        let volumes = super::yaml::mapping_mut(doc, "volumes", "")?;
        for v in volumes_to_add {
            volumes
                .entry(string(v))
                .or_insert(Yaml::Mapping(Mapping::new()));
        }
    }
    Ok(pods.into_iter().map(|p| p.name).collect())
}

fn bootstrap_name(account: &str) -> String {
    format!("remora-bootstrap-{account}")
}

/// The pod an app service becomes, or `None` when it is left alone.
fn pod_of(name: &str, service: &Yaml<'_>, path: &str) -> Result<Option<Pod>, FieldError> {
    if get(service, "network_mode").is_some() || name.starts_with("remora-bootstrap-") {
        return Ok(None);
    }
    if let Some(image) = get_str(service, "image", path)? {
        let repo = image.rsplit('/').next().unwrap_or(image);
        let repo = repo.split([':', '@']).next().unwrap_or(repo);
        if repo == "remora" || repo == "remora-proxy" {
            return Ok(None);
        }
    }
    let labels_path = join(path, "labels");
    let labels = labels(service, &labels_path)?;
    let options = PodOptions::from_annotations(
        labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &labels_path,
    )?;
    if options.skip {
        return Ok(None);
    }
    let service_name = labels
        .iter()
        .find(|(k, _)| k == "app")
        .map_or(name, |(_, v)| v.as_str())
        .to_owned();
    check_name(&service_name, &labels_path)?;
    let mesh_labels = labels
        .into_iter()
        .filter(|(k, _)| {
            !(k.starts_with("sidecar.istio.io/")
                || k.starts_with("traffic.sidecar.istio.io/")
                || k.starts_with("proxy.istio.io/")
                || k.starts_with("com.docker."))
        })
        .collect();
    Ok(Some(Pod {
        name: name.to_owned(),
        account: service_name.clone(),
        service: service_name,
        labels: mesh_labels,
        app_port: app_port(service, path)?,
        options,
    }))
}

fn check_name(name: &str, field: &str) -> Result<(), FieldError> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("the service name {name:?} may only have letters, digits, '-' and '_'"),
        ))
    }
}

/// A service's labels, in the mapping or the `KEY=VALUE` list form.
fn labels(service: &Yaml<'_>, path: &str) -> Result<Vec<(String, String)>, FieldError> {
    match get(service, "labels") {
        None | Some(Yaml::Value(Scalar::Null)) => Ok(Vec::new()),
        Some(Yaml::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let key = k
                    .as_str()
                    .ok_or_else(|| FieldError::new(path, "has a key that is not a string"))?;
                match v {
                    Yaml::Value(Scalar::String(s)) => Ok((key.to_owned(), s.to_string())),
                    other => Err(FieldError::new(
                        format!("{path}[\"{key}\"]"),
                        format!("expected a string, found {}; quote it", describe(other)),
                    )),
                }
            })
            .collect(),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = item.as_str().ok_or_else(|| {
                    FieldError::new(format!("{path}[{i}]"), "expected a KEY=VALUE string")
                })?;
                let (k, v) = text.split_once('=').unwrap_or((text, ""));
                Ok((k.to_owned(), v.to_owned()))
            })
            .collect(),
        Some(other) => Err(FieldError::new(
            path,
            format!("expected a mapping or a list, found {}", describe(other)),
        )),
    }
}

/// The app's port: the first of `expose`, else the container side of the
/// first of `ports`.
fn app_port(service: &Yaml<'_>, path: &str) -> Result<Option<u16>, FieldError> {
    for key in ["expose", "ports"] {
        let Some(node) = get(service, key) else {
            continue;
        };
        let Yaml::Sequence(items) = node else {
            return Err(FieldError::new(
                join(path, key),
                format!("expected a list, found {}", describe(node)),
            ));
        };
        let Some(first) = items.first() else {
            continue;
        };
        let at = format!("{}[0]", join(path, key));
        let text = match first {
            Yaml::Value(Scalar::Integer(n)) => n.to_string(),
            Yaml::Value(Scalar::String(s)) => s.to_string(),
            Yaml::Mapping(_) => match get(first, "target") {
                Some(Yaml::Value(Scalar::Integer(n))) => n.to_string(),
                Some(Yaml::Value(Scalar::String(s))) => s.to_string(),
                _ => return Err(FieldError::new(join(&at, "target"), "expected a port")),
            },
            other => {
                return Err(FieldError::new(
                    at,
                    format!("expected a port, found {}", describe(other)),
                ));
            }
        };
        // `[ip:]host:container[/proto]`: the container side, before any range.
        let container = text.rsplit(':').next().unwrap_or(&text);
        let container = container.split('/').next().unwrap_or(container);
        let container = container.split('-').next().unwrap_or(container);
        return match container.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(FieldError::new(
                at,
                format!("{text:?} names no container port"),
            )),
        };
    }
    Ok(None)
}

/// The volume the control plane service mounts at its data directory.
fn control_plane_data_volume(service: &Yaml<'_>, path: &str) -> Result<String, FieldError> {
    let field = join(path, "volumes");
    if let Some(Yaml::Sequence(volumes)) = get(service, "volumes") {
        for v in volumes {
            let (source, target) = match v {
                Yaml::Value(Scalar::String(s)) => {
                    let mut parts = s.split(':');
                    (
                        parts.next().map(str::to_owned),
                        parts.next().map(str::to_owned),
                    )
                }
                Yaml::Mapping(_) => (
                    get(v, "source").and_then(Yaml::as_str).map(str::to_owned),
                    get(v, "target").and_then(Yaml::as_str).map(str::to_owned),
                ),
                _ => (None, None),
            };
            if let (Some(source), Some(target)) = (source, target)
                && target.trim_end_matches('/') == DATA_DIR
                && !source.starts_with(['.', '/', '~'])
            {
                return Ok(source);
            }
        }
    }
    Err(FieldError::new(
        field,
        format!(
            "no named volume is mounted at {DATA_DIR}: the control plane's CA and token key must \
             be on a volume that the bootstrap services can mount too"
        ),
    ))
}

fn control_plane_healthcheck<'a>() -> Yaml<'a> {
    map([
        (
            "test",
            strings([
                "CMD",
                "/usr/local/bin/remora",
                "proxy-status",
                "--control-plane-admin",
                "http://127.0.0.1:15014",
            ]),
        ),
        ("interval", string("2s")),
        ("timeout", string("5s")),
        ("retries", int(60)),
    ])
}

fn control_plane_service<'a>(settings: &Settings) -> Yaml<'a> {
    map([
        ("image", string(settings.control_plane_image.as_str())),
        // The monitoring port on the Compose network (not published on the
        // host): Prometheus scrapes it there.
        (
            "command",
            strings(["serve", "--monitoring-addr", "0.0.0.0:15014"]),
        ),
        ("read_only", Yaml::Value(Scalar::Boolean(true))),
        ("volumes", strings([format!("remora-data:{DATA_DIR}")])),
        ("healthcheck", control_plane_healthcheck()),
    ])
}

fn insert_bootstrap<'a>(
    services: &mut Mapping<'a>,
    account: &str,
    control_plane: &str,
    data_volume: &str,
    settings: &Settings,
) {
    let name = bootstrap_name(account);
    if services.contains_key(&string(name.as_str())) {
        return;
    }
    let service = map([
        ("image", string(settings.control_plane_image.as_str())),
        (
            "command",
            strings([
                "bootstrap",
                "--namespace",
                "default",
                "--service-account",
                account,
                "--data-dir",
                DATA_DIR,
                "--out-dir",
                BOOTSTRAP_DIR,
            ]),
        ),
        ("read_only", Yaml::Value(Scalar::Boolean(true))),
        (
            "volumes",
            strings([
                format!("{data_volume}:{DATA_DIR}:ro"),
                format!("{name}:{BOOTSTRAP_DIR}"),
            ]),
        ),
        (
            "depends_on",
            map_owned([(
                control_plane.to_owned(),
                map([("condition", string("service_healthy"))]),
            )]),
        ),
    ]);
    services.insert(string(name), service);
}

/// A mapping with owned keys.
fn map_owned<'a>(entries: impl IntoIterator<Item = (String, Yaml<'a>)>) -> Yaml<'a> {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(string(k), v);
    }
    Yaml::Mapping(m)
}

fn sidecar_service<'a>(pod: &Pod, settings: &Settings) -> Yaml<'a> {
    let mut command = vec![
        "--service".to_owned(),
        pod.service.clone(),
        "--service-account".to_owned(),
        pod.account.clone(),
    ];
    for (k, v) in &pod.labels {
        command.push("--label".to_owned());
        command.push(format!("{k}={v}"));
    }
    command.extend([
        "--control-plane".to_owned(),
        settings.control_plane.clone(),
        "--token-file".to_owned(),
        format!("{BOOTSTRAP_DIR}/token"),
        "--ca-cert".to_owned(),
        format!("{BOOTSTRAP_DIR}/ca-cert.pem"),
    ]);
    if let Some(port) = pod.app_port {
        command.push("--app".to_owned());
        command.push(format!("127.0.0.1:{port}"));
    }
    if let Some(n) = pod.options.concurrency {
        command.push("--concurrency".to_owned());
        command.push(n.to_string());
    }
    if let Some(otlp) = &settings.otlp_endpoint {
        command.push("--otlp-endpoint".to_owned());
        command.push(otlp.clone());
    }
    let image = pod
        .options
        .image
        .clone()
        .unwrap_or_else(|| settings.proxy_image.clone());
    let account = bootstrap_name(&pod.account);
    map([
        ("image", string(image)),
        ("command", strings(command)),
        ("user", string("1337:1337")),
        ("read_only", Yaml::Value(Scalar::Boolean(true))),
        ("cap_drop", strings(["ALL"])),
        (
            "volumes",
            strings([format!("{account}:{BOOTSTRAP_DIR}:ro")]),
        ),
        (
            "depends_on",
            map_owned([(
                account,
                map([("condition", string("service_completed_successfully"))]),
            )]),
        ),
        (
            "healthcheck",
            map([
                (
                    "test",
                    strings([
                        "CMD",
                        "/usr/local/bin/remora-proxy",
                        "wait-ready",
                        "--timeout",
                        "1s",
                    ]),
                ),
                ("interval", string("1s")),
                ("timeout", string("5s")),
                ("retries", int(120)),
            ]),
        ),
    ])
}

fn init_service<'a>(pod: &Pod, settings: &Settings) -> Yaml<'a> {
    let mut command = vec!["init".to_owned()];
    command.extend(pod.options.capture.init_args());
    let image = pod
        .options
        .image
        .clone()
        .unwrap_or_else(|| settings.proxy_image.clone());
    map([
        ("image", string(image)),
        ("command", strings(command)),
        (
            "network_mode",
            string(format!("service:{}-proxy", pod.name)),
        ),
        ("user", string("0:0")),
        ("read_only", Yaml::Value(Scalar::Boolean(true))),
        ("cap_drop", strings(["ALL"])),
        ("cap_add", strings(["NET_ADMIN", "NET_RAW"])),
        (
            "depends_on",
            map_owned([(
                format!("{}-proxy", pod.name),
                map([("condition", string("service_started"))]),
            )]),
        ),
    ])
}

/// Moves the app's network settings to its sidecar, adding the aliases
/// under which the pod is reached.
fn move_network_keys<'a>(
    app: &mut Yaml<'a>,
    sidecar: &mut Yaml<'a>,
    pod: &Pod,
) -> Result<(), FieldError> {
    let (Yaml::Mapping(app), Yaml::Mapping(sidecar)) = (app, sidecar) else {
        unreachable!("both are mappings");
    };
    for key in NETWORK_KEYS {
        if let Some(value) = app.remove(&string(*key)) {
            sidecar.insert(string(*key), value);
        }
    }
    let mut aliases = vec![pod.name.clone()];
    if pod.service != pod.name {
        aliases.push(pod.service.clone());
    }
    let path = join(&join("services", &pod.name), "networks");
    let networks = sidecar
        .entry(string("networks"))
        .or_insert_with(|| map([("default", Yaml::Value(Scalar::Null))]));
    // The list form becomes the mapping form, which can carry aliases.
    if let Yaml::Sequence(list) = networks {
        let mut m = Mapping::new();
        for (i, n) in list.iter().enumerate() {
            let name = n.as_str().ok_or_else(|| {
                FieldError::new(format!("{path}[{i}]"), "expected a network name")
            })?;
            m.insert(string(name), Yaml::Value(Scalar::Null));
        }
        *networks = Yaml::Mapping(m);
    }
    let Yaml::Mapping(networks) = networks else {
        return Err(FieldError::new(
            path,
            format!("expected a mapping or a list, found {}", describe(networks)),
        ));
    };
    for (name, network) in networks.iter_mut() {
        if matches!(network, Yaml::Value(Scalar::Null)) {
            *network = Yaml::Mapping(Mapping::new());
        }
        let at = join(&path, name.as_str().unwrap_or("?"));
        let list = super::yaml::sequence_mut(network, "aliases", &at)?;
        for alias in &aliases {
            if !list.iter().any(|a| a.as_str() == Some(alias)) {
                list.push(string(alias.as_str()));
            }
        }
    }
    Ok(())
}

/// The app joins its sidecar's namespace and waits for the pod to be ready.
fn join_pod(app: &mut Yaml<'_>, pod: &Pod) -> Result<(), FieldError> {
    let path = join(&join("services", &pod.name), "depends_on");
    let Yaml::Mapping(app) = app else {
        unreachable!("a mapping");
    };
    app.insert(
        string("network_mode"),
        string(format!("service:{}-proxy", pod.name)),
    );
    let depends = app
        .entry(string("depends_on"))
        .or_insert(Yaml::Mapping(Mapping::new()));
    if let Yaml::Sequence(list) = depends {
        let mut m = Mapping::new();
        for (i, n) in list.iter().enumerate() {
            let name = n.as_str().ok_or_else(|| {
                FieldError::new(format!("{path}[{i}]"), "expected a service name")
            })?;
            m.insert(
                string(name),
                map([("condition", string("service_started"))]),
            );
        }
        *depends = Yaml::Mapping(m);
    }
    let Yaml::Mapping(depends) = depends else {
        return Err(FieldError::new(
            path,
            format!("expected a mapping or a list, found {}", describe(depends)),
        ));
    };
    depends.insert(
        string(format!("{}-init", pod.name)),
        map([("condition", string("service_completed_successfully"))]),
    );
    depends.insert(
        string(format!("{}-proxy", pod.name)),
        map([("condition", string("service_healthy"))]),
    );
    Ok(())
}
