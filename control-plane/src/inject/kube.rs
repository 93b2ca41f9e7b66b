//! Kubernetes manifests: the init container and the native sidecar added to
//! the pod template of each workload.
//!
//! What a pod gets (names are fixed, so injecting again first removes them
//! and the result is the same):
//!
//! - `initContainers[0]` `remora-init`: `remora-proxy init` as root with
//!   NET_ADMIN and NET_RAW only, the capture exclusions from the pod's
//!   annotations as flags;
//! - `initContainers[1]` `remora-proxy`: the sidecar, a native sidecar
//!   (`restartPolicy: Always`, Kubernetes 1.29+) so that it starts before
//!   the app and stops after it, with startup and readiness probes on
//!   15021, resource requests, uid 1337, a read-only root filesystem, and
//!   the pod's namespace, service account, name and labels from the
//!   downward API;
//! - volumes `remora-token` (the Secret `remora-token-<service account>`,
//!   key `token`, made with `remora token create`) and `remora-ca` (the
//!   ConfigMap `remora-ca-root`, key `ca-cert.pem`);
//! - annotations: `sidecar.remora.io/status`, and when absent the
//!   Prometheus scrape annotations and `kubectl.kubernetes.io/default-container`.

use saphyr::{Scalar, Yaml};

use super::annotations::{INJECT, PodOptions};
use super::yaml::{
    FieldError, boolean, get, get_str, int, join, map, mapping_mut, require_mapping, seq,
    sequence_mut, string, strings,
};
use super::{CA_CONFIG_MAP, Settings, TOKEN_SECRET_PREFIX};

/// The init container's name.
pub(super) const INIT_NAME: &str = "remora-init";
/// The sidecar's name.
pub(super) const SIDECAR_NAME: &str = "remora-proxy";
const TOKEN_VOLUME: &str = "remora-token";
const CA_VOLUME: &str = "remora-ca";
const STATUS_ANNOTATION: &str = "sidecar.remora.io/status";
const TOKEN_DIR: &str = "/var/run/secrets/remora/token";
const CA_DIR: &str = "/var/run/secrets/remora/ca";
/// Istio's sidecar concurrency when no annotation says otherwise.
const DEFAULT_CONCURRENCY: u32 = 2;

/// What happened to one pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The sidecar was added (or replaced).
    Injected,
    /// Left alone, and why.
    Skipped(String),
    /// Not a workload: passed through.
    NotAWorkload,
}

/// Where a kind keeps its pod template, as a path of mapping keys from the
/// document's root; `None` for kinds that have none.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Injects one Kubernetes object (a `List` injects each item). Returns what
/// happened to each pod template, for the summary on stderr.
pub(super) fn inject_object(
    doc: &mut Yaml<'_>,
    settings: &Settings,
) -> Result<Vec<Outcome>, FieldError> {
    inject_at(doc, "", settings)
}

fn inject_at(
    doc: &mut Yaml<'_>,
    path: &str,
    settings: &Settings,
) -> Result<Vec<Outcome>, FieldError> {
    if !doc.is_mapping() {
        return Err(FieldError::new(
            if path.is_empty() { "(document)" } else { path },
            format!(
                "expected a Kubernetes object (a mapping with kind), found {}",
                super::yaml::describe(doc)
            ),
        ));
    }
    let kind = get_str(doc, "kind", path)?
        .ok_or_else(|| FieldError::new(join(path, "kind"), "is missing"))?
        .to_owned();
    if kind == "List" || kind.ends_with("List") && get(doc, "items").is_some() {
        let items = sequence_mut(doc, "items", path)?;
        let mut outcomes = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            outcomes.extend(inject_at(
                item,
                &format!("{}[{i}]", join(path, "items")),
                settings,
            )?);
        }
        return Ok(outcomes);
    }
    let Some(steps) = template_path(&kind) else {
        return Ok(vec![Outcome::NotAWorkload]);
    };
    let workload_name = get(doc, "metadata")
        .map(|m| get_str(m, "name", &join(path, "metadata")))
        .transpose()?
        .flatten()
        .map(str::to_owned);
    let mut template = &mut *doc;
    let mut template_field = path.to_owned();
    for step in steps {
        template = require_mapping(template, step, &template_field)?;
        template_field = join(&template_field, step);
    }
    inject_pod(
        template,
        &template_field,
        workload_name.as_deref(),
        settings,
    )
    .map(|o| vec![o])
}

/// Injects a pod template (or a Pod): `template` has `metadata` and `spec`.
fn inject_pod(
    template: &mut Yaml<'_>,
    path: &str,
    workload_name: Option<&str>,
    settings: &Settings,
) -> Result<Outcome, FieldError> {
    let metadata_path = join(path, "metadata");
    let annotations_path = join(&metadata_path, "annotations");
    let labels = string_map(
        template,
        &["metadata", "labels"],
        &join(&metadata_path, "labels"),
    )?;
    let annotations = string_map(template, &["metadata", "annotations"], &annotations_path)?;
    let mut options = PodOptions::from_annotations(
        annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &annotations_path,
    )?;
    // Istio also reads the inject switch as a pod label.
    if let Some((_, value)) = labels.iter().find(|(k, _)| k == INJECT) {
        let from_label = PodOptions::from_annotations(
            [(INJECT, value.as_str())],
            &join(&metadata_path, "labels"),
        )?;
        options.skip |= from_label.skip;
    }
    if options.skip {
        return Ok(Outcome::Skipped(format!("{INJECT}: \"false\"")));
    }
    let spec_path = join(path, "spec");
    let spec = require_mapping(template, "spec", path)?;
    if matches!(
        get(spec, "hostNetwork"),
        Some(Yaml::Value(Scalar::Boolean(true)))
    ) {
        return Ok(Outcome::Skipped(
            "hostNetwork: the capture rules would apply to the node".to_owned(),
        ));
    }
    let service_account = get_str(spec, "serviceAccountName", &spec_path)?
        .unwrap_or("default")
        .to_owned();
    check_name(&service_account, &join(&spec_path, "serviceAccountName"))?;

    remove_injected(spec, &spec_path)?;
    let containers = app_containers(spec, &spec_path)?;
    let Some(first_container) = containers.first().cloned() else {
        return Err(FieldError::new(
            join(&spec_path, "containers"),
            "is empty: there is no app to put a sidecar beside",
        ));
    };
    let app_port = first_container_port(spec, &spec_path)?;

    // The mesh service: the `app` label, as Istio's telemetry reads it.
    let service = labels
        .iter()
        .find(|(k, _)| k == "app" || k == "app.kubernetes.io/name")
        .map(|(_, v)| v.clone())
        .or_else(|| workload_name.map(str::to_owned))
        .ok_or_else(|| {
            FieldError::new(
                join(&metadata_path, "labels"),
                "has no `app` label and the workload has no name: the sidecar needs its service",
            )
        })?;
    check_name(&service, &join(&metadata_path, "labels.app"))?;

    let image = options
        .image
        .clone()
        .unwrap_or_else(|| settings.proxy_image.clone());
    let init = init_container(&image, &options);
    let sidecar = sidecar_container(&image, &service, &labels, app_port, &options, settings);
    let init_containers = sequence_mut(spec, "initContainers", &spec_path)?;
    init_containers.insert(0, sidecar);
    init_containers.insert(0, init);

    let volumes = sequence_mut(spec, "volumes", &spec_path)?;
    volumes.push(map([
        ("name", string(TOKEN_VOLUME)),
        (
            "secret",
            map([
                (
                    "secretName",
                    string(format!("{TOKEN_SECRET_PREFIX}{service_account}")),
                ),
                (
                    "items",
                    seq([map([("key", string("token")), ("path", string("token"))])]),
                ),
            ]),
        ),
    ]));
    volumes.push(map([
        ("name", string(CA_VOLUME)),
        ("configMap", map([("name", string(CA_CONFIG_MAP))])),
    ]));

    let metadata = mapping_mut(template, "metadata", path)?;
    let annotations = {
        let slot = metadata
            .entry(string("annotations"))
            .or_insert_with(|| Yaml::Mapping(Default::default()));
        if !slot.is_mapping() {
            *slot = Yaml::Mapping(Default::default());
        }
        match slot {
            Yaml::Mapping(m) => m,
            _ => unreachable!("made a mapping above"),
        }
    };
    annotations.insert(
        string(STATUS_ANNOTATION),
        string(format!(
            "{{\"version\":\"{}\",\"initContainers\":[\"{INIT_NAME}\",\"{SIDECAR_NAME}\"],\"volumes\":[\"{TOKEN_VOLUME}\",\"{CA_VOLUME}\"]}}",
            env!("CARGO_PKG_VERSION")
        )),
    );
    for (key, value) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "15090"),
        ("prometheus.io/path", "/stats/prometheus"),
        (
            "kubectl.kubernetes.io/default-container",
            first_container.as_str(),
        ),
    ] {
        annotations
            .entry(string(key))
            .or_insert_with(|| string(value));
    }
    Ok(Outcome::Injected)
}

/// A map of strings at `steps` under `node` (labels, annotations); empty
/// when absent. Values must be strings, as Kubernetes requires.
fn string_map(
    node: &Yaml<'_>,
    steps: &[&str],
    path: &str,
) -> Result<Vec<(String, String)>, FieldError> {
    let mut at = node;
    for step in steps {
        match get(at, step) {
            Some(next) => at = next,
            None => return Ok(Vec::new()),
        }
    }
    match at {
        Yaml::Value(Scalar::Null) => Ok(Vec::new()),
        Yaml::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let key = k
                    .as_str()
                    .ok_or_else(|| FieldError::new(path, "has a key that is not a string"))?;
                match v {
                    Yaml::Value(Scalar::String(s)) => Ok((key.to_owned(), s.to_string())),
                    other => Err(FieldError::new(
                        format!("{path}[\"{key}\"]"),
                        format!(
                            "expected a string, found {}; quote it (\"{}\")",
                            super::yaml::describe(other),
                            scalar_text(other)
                        ),
                    )),
                }
            })
            .collect(),
        other => Err(FieldError::new(
            path,
            format!("expected a mapping, found {}", super::yaml::describe(other)),
        )),
    }
}

fn scalar_text(node: &Yaml<'_>) -> String {
    match node {
        Yaml::Value(Scalar::Boolean(b)) => b.to_string(),
        Yaml::Value(Scalar::Integer(i)) => i.to_string(),
        Yaml::Value(Scalar::FloatingPoint(f)) => f.to_string(),
        _ => "...".to_owned(),
    }
}

/// A service or service-account name usable in a SPIFFE ID and a flag.
fn check_name(name: &str, field: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{name:?} is not a name (letters, digits, '-', '.', '_')"),
        ))
    }
}

/// Removes what an earlier injection added, so that injecting again gives
/// the same result.
fn remove_injected(spec: &mut Yaml<'_>, spec_path: &str) -> Result<(), FieldError> {
    let named = |item: &Yaml<'_>, names: &[&str]| {
        get(item, "name")
            .and_then(Yaml::as_str)
            .is_some_and(|n| names.contains(&n))
    };
    if get(spec, "initContainers").is_some() {
        let init = sequence_mut(spec, "initContainers", spec_path)?;
        init.retain(|c| !named(c, &[INIT_NAME, SIDECAR_NAME]));
    }
    if get(spec, "volumes").is_some() {
        let volumes = sequence_mut(spec, "volumes", spec_path)?;
        volumes.retain(|v| !named(v, &[TOKEN_VOLUME, CA_VOLUME]));
    }
    Ok(())
}

/// The names of the app's containers (there must be at least one).
fn app_containers(spec: &mut Yaml<'_>, spec_path: &str) -> Result<Vec<String>, FieldError> {
    let path = join(spec_path, "containers");
    let containers = sequence_mut(spec, "containers", spec_path)?;
    containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("{path}[{i}]");
            if !c.is_mapping() {
                return Err(FieldError::new(
                    at,
                    format!(
                        "expected a container (a mapping), found {}",
                        super::yaml::describe(c)
                    ),
                ));
            }
            let name = get_str(c, "name", &at)?
                .ok_or_else(|| FieldError::new(join(&at, "name"), "is missing"))?;
            if name == SIDECAR_NAME || name == INIT_NAME {
                return Err(FieldError::new(
                    join(&at, "name"),
                    format!("{name:?} is the name of the container Remora injects; rename it"),
                ));
            }
            Ok(name.to_owned())
        })
        .collect()
}

/// The first TCP `containerPort` of the app's containers: where the sidecar
/// forwards inbound requests that were not captured.
fn first_container_port(spec: &Yaml<'_>, spec_path: &str) -> Result<Option<u16>, FieldError> {
    let Some(Yaml::Sequence(containers)) = get(spec, "containers") else {
        return Ok(None);
    };
    for (i, c) in containers.iter().enumerate() {
        let Some(Yaml::Sequence(ports)) = get(c, "ports") else {
            continue;
        };
        for (j, p) in ports.iter().enumerate() {
            let at = format!("{spec_path}.containers[{i}].ports[{j}]");
            let protocol = get_str(p, "protocol", &at)?.unwrap_or("TCP");
            if protocol != "TCP" {
                continue;
            }
            match get(p, "containerPort") {
                Some(Yaml::Value(Scalar::Integer(n))) => match u16::try_from(*n) {
                    Ok(port) if port > 0 => return Ok(Some(port)),
                    _ => {
                        return Err(FieldError::new(
                            join(&at, "containerPort"),
                            format!("{n} is not a port (1 to 65535)"),
                        ));
                    }
                },
                Some(other) => {
                    return Err(FieldError::new(
                        join(&at, "containerPort"),
                        format!("expected a number, found {}", super::yaml::describe(other)),
                    ));
                }
                None => {
                    return Err(FieldError::new(join(&at, "containerPort"), "is missing"));
                }
            }
        }
    }
    Ok(None)
}

fn init_container<'a>(image: &str, options: &PodOptions) -> Yaml<'a> {
    let mut args = vec!["init".to_owned()];
    args.extend(options.capture.init_args());
    map([
        ("name", string(INIT_NAME)),
        ("image", string(image)),
        ("args", strings(args)),
        (
            "resources",
            map([(
                "requests",
                map([("cpu", string("10m")), ("memory", string("16Mi"))]),
            )]),
        ),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", boolean(false)),
                (
                    "capabilities",
                    map([
                        ("add", strings(["NET_ADMIN", "NET_RAW"])),
                        ("drop", strings(["ALL"])),
                    ]),
                ),
                ("privileged", boolean(false)),
                ("readOnlyRootFilesystem", boolean(true)),
                ("runAsGroup", int(0)),
                ("runAsNonRoot", boolean(false)),
                ("runAsUser", int(0)),
            ]),
        ),
    ])
}

fn sidecar_container<'a>(
    image: &str,
    service: &str,
    labels: &[(String, String)],
    app_port: Option<u16>,
    options: &PodOptions,
    settings: &Settings,
) -> Yaml<'a> {
    let field_env = |name: &str, field: &str| {
        map([
            ("name", string(name)),
            (
                "valueFrom",
                map([("fieldRef", map([("fieldPath", string(field))]))]),
            ),
        ])
    };
    let mut env = vec![
        field_env("REMORA_NAMESPACE", "metadata.namespace"),
        field_env("REMORA_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("REMORA_POD_NAME", "metadata.name"),
    ];
    let mut args = vec![
        "--service".to_owned(),
        service.to_owned(),
        "--control-plane".to_owned(),
        settings.control_plane.clone(),
        "--token-file".to_owned(),
        format!("{TOKEN_DIR}/token"),
        "--ca-cert".to_owned(),
        format!("{CA_DIR}/ca-cert.pem"),
        "--concurrency".to_owned(),
        options
            .concurrency
            .unwrap_or(DEFAULT_CONCURRENCY)
            .to_string(),
    ];
    if let Some(port) = app_port {
        args.push("--app".to_owned());
        args.push(format!("127.0.0.1:{port}"));
    }
    if let Some(otlp) = &settings.otlp_endpoint {
        args.push("--otlp-endpoint".to_owned());
        args.push(otlp.clone());
    }
    // Each label's value comes from the downward API at run time (Kubernetes
    // expands `$(NAME)` in args); the keys are the template's.
    for (i, (key, _)) in labels.iter().filter(|(k, _)| k != INJECT).enumerate() {
        let name = format!("REMORA_LABEL_{i}");
        env.push(field_env(&name, &format!("metadata.labels['{key}']")));
        args.push("--label".to_owned());
        args.push(format!("{key}=$({name})"));
    }
    let probe = |period: i64, failures: i64| {
        map([
            (
                "httpGet",
                map([("path", string("/healthz/ready")), ("port", int(15021))]),
            ),
            ("periodSeconds", int(period)),
            ("timeoutSeconds", int(3)),
            ("failureThreshold", int(failures)),
        ])
    };
    let r = &options.resources;
    let mut resources = vec![(
        "requests",
        map([
            ("cpu", string(r.cpu.as_deref().unwrap_or("100m"))),
            ("memory", string(r.memory.as_deref().unwrap_or("64Mi"))),
        ]),
    )];
    let mut limits = Vec::new();
    if let Some(cpu) = &r.cpu_limit {
        limits.push(("cpu", string(cpu.as_str())));
    }
    if let Some(memory) = &r.memory_limit {
        limits.push(("memory", string(memory.as_str())));
    }
    if !limits.is_empty() {
        resources.push(("limits", map(limits)));
    }
    map([
        ("name", string(SIDECAR_NAME)),
        ("image", string(image)),
        // A native sidecar: started before the app's containers, in order,
        // and stopped after them.
        ("restartPolicy", string("Always")),
        ("args", strings(args)),
        ("env", seq(env)),
        (
            "ports",
            seq([
                map([
                    ("name", string("remora-metrics")),
                    ("containerPort", int(15090)),
                    ("protocol", string("TCP")),
                ]),
                map([
                    ("name", string("remora-health")),
                    ("containerPort", int(15021)),
                    ("protocol", string("TCP")),
                ]),
            ]),
        ),
        // Up to 10 minutes to get a config and a certificate; the app's
        // containers start only once this has passed.
        ("startupProbe", probe(1, 600)),
        ("readinessProbe", probe(5, 3)),
        ("resources", map(resources)),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", boolean(false)),
                ("capabilities", map([("drop", strings(["ALL"]))])),
                ("privileged", boolean(false)),
                ("readOnlyRootFilesystem", boolean(true)),
                ("runAsGroup", int(1337)),
                ("runAsNonRoot", boolean(true)),
                ("runAsUser", int(1337)),
            ]),
        ),
        (
            "volumeMounts",
            seq([
                map([
                    ("name", string(TOKEN_VOLUME)),
                    ("mountPath", string(TOKEN_DIR)),
                    ("readOnly", boolean(true)),
                ]),
                map([
                    ("name", string(CA_VOLUME)),
                    ("mountPath", string(CA_DIR)),
                    ("readOnly", boolean(true)),
                ]),
            ]),
        ),
    ])
}
