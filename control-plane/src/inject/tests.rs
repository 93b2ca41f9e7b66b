use saphyr::{LoadableYamlNode, Yaml};

use super::*;

fn args() -> InjectArgs {
    InjectArgs {
        file: PathBuf::from("-"),
        proxy_image: "remora-proxy:test".to_owned(),
        control_plane_image: "remora:test".to_owned(),
        control_plane: None,
        control_plane_service: "remora".to_owned(),
        otlp_endpoint: None,
    }
}

fn run(input: &str) -> Injected {
    inject(input, "in.yaml", &args()).unwrap_or_else(|e| panic!("inject failed: {e}"))
}

fn fail(input: &str) -> InjectError {
    inject(input, "in.yaml", &args()).expect_err("inject should fail")
}

fn docs(text: &str) -> Vec<Yaml<'_>> {
    Yaml::load_from_str(text).expect("output is YAML")
}

/// The node at a `/`-separated path (numbers index lists).
fn at<'n, 'a>(node: &'n Yaml<'a>, path: &str) -> &'n Yaml<'a> {
    let mut node = node;
    for step in path.split('/') {
        node = match step.parse::<usize>() {
            Ok(i) => node
                .as_sequence_get(i)
                .unwrap_or_else(|| panic!("no item {i} in {path}")),
            Err(_) => node
                .as_mapping_get(step)
                .unwrap_or_else(|| panic!("no {step} in {path}")),
        };
    }
    node
}

fn strs(node: &Yaml<'_>) -> Vec<String> {
    node.as_vec()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  namespace: shop
spec:
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels: {app: reviews, version: v1}
      annotations:
        traffic.sidecar.istio.io/excludeOutboundPorts: "5432"
        proxy.istio.io/config: |
          concurrency: 1
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews
        image: reviews:1
        ports:
        - containerPort: 9080
"#;

#[test]
fn a_deployment_gets_the_init_container_and_a_native_sidecar() {
    let injected = run(DEPLOYMENT);
    assert_eq!(injected.format, Format::Kubernetes);
    assert_eq!(
        injected.notes,
        ["in.yaml: document 1 (Deployment shop/reviews-v1): injected"]
    );
    let out = docs(&injected.output);
    let spec = at(&out[0], "spec/template/spec");

    let init = at(spec, "initContainers/0");
    assert_eq!(at(init, "name").as_str(), Some("remora-init"));
    assert_eq!(at(init, "image").as_str(), Some("remora-proxy:test"));
    assert_eq!(
        strs(at(init, "args")),
        ["init", "--exclude-outbound-ports=5432"]
    );
    assert_eq!(
        strs(at(init, "securityContext/capabilities/add")),
        ["NET_ADMIN", "NET_RAW"]
    );
    assert_eq!(at(init, "securityContext/runAsUser").as_integer(), Some(0));

    let sidecar = at(spec, "initContainers/1");
    assert_eq!(at(sidecar, "name").as_str(), Some("remora-proxy"));
    assert_eq!(at(sidecar, "restartPolicy").as_str(), Some("Always"));
    let sidecar_args = strs(at(sidecar, "args"));
    let flag = |name: &str| {
        let i = sidecar_args
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("no {name} in {sidecar_args:?}"));
        sidecar_args[i + 1].clone()
    };
    assert_eq!(flag("--service"), "reviews");
    assert_eq!(flag("--concurrency"), "1");
    assert_eq!(flag("--app"), "127.0.0.1:9080");
    assert_eq!(
        flag("--control-plane"),
        "http://remora.remora-system.svc:15010"
    );
    assert!(sidecar_args.contains(&"app=$(REMORA_LABEL_0)".to_owned()));
    assert!(sidecar_args.contains(&"version=$(REMORA_LABEL_1)".to_owned()));
    let env = at(sidecar, "env");
    let field_of = |name: &str| {
        env.as_vec()
            .expect("env list")
            .iter()
            .find(|e| at(e, "name").as_str() == Some(name))
            .map(|e| {
                at(e, "valueFrom/fieldRef/fieldPath")
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no env {name}"))
    };
    assert_eq!(
        field_of("REMORA_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(
        field_of("REMORA_SERVICE_ACCOUNT").as_deref(),
        Some("spec.serviceAccountName")
    );
    assert_eq!(
        field_of("REMORA_POD_NAME").as_deref(),
        Some("metadata.name")
    );
    assert_eq!(
        field_of("REMORA_LABEL_1").as_deref(),
        Some("metadata.labels['version']")
    );
    assert_eq!(
        at(sidecar, "startupProbe/httpGet/port").as_integer(),
        Some(15021)
    );
    assert_eq!(
        at(sidecar, "readinessProbe/httpGet/path").as_str(),
        Some("/healthz/ready")
    );
    assert_eq!(at(sidecar, "resources/requests/cpu").as_str(), Some("100m"));
    assert_eq!(
        at(sidecar, "securityContext/runAsUser").as_integer(),
        Some(1337)
    );

    // The token of the pod's own service account, from its Secret.
    let volumes = at(spec, "volumes");
    assert_eq!(
        at(volumes, "0/secret/secretName").as_str(),
        Some("remora-token-bookinfo-reviews")
    );
    assert_eq!(
        at(volumes, "1/configMap/name").as_str(),
        Some("remora-ca-root")
    );
    // The app is untouched.
    assert_eq!(at(spec, "containers/0/name").as_str(), Some("reviews"));
    assert_eq!(
        spec.as_mapping_get("containers")
            .and_then(Yaml::as_vec)
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn injecting_twice_gives_the_same_output() {
    for input in [DEPLOYMENT, COMPOSE, CRONJOB_AND_SERVICE] {
        let once = run(input).output;
        let twice = run(&once).output;
        assert_eq!(once, twice, "input:\n{input}");
    }
}

const CRONJOB_AND_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{port: 9080, name: http}]
  selector: {app: reviews}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          labels: {app: report}
        spec:
          restartPolicy: OnFailure
          containers:
          - name: report
            image: report:1
            args:
            - |
              line one
              line two
"#;

#[test]
fn other_kinds_pass_through_and_a_cronjob_is_injected_in_its_job_template() {
    let injected = run(CRONJOB_AND_SERVICE);
    let out = docs(&injected.output);
    let input = docs(CRONJOB_AND_SERVICE);
    assert_eq!(out[0], input[0], "the Service is unchanged");
    let spec = at(&out[1], "spec/jobTemplate/spec/template/spec");
    assert_eq!(
        at(spec, "initContainers/1/name").as_str(),
        Some("remora-proxy")
    );
    // No containerPort: the proxy's default app address.
    assert!(!strs(at(spec, "initContainers/1/args")).contains(&"--app".to_owned()));
    // A multi-line string survives.
    assert_eq!(
        at(spec, "containers/0/args/0").as_str(),
        Some("line one\nline two\n")
    );
    // The default service account's Secret.
    assert_eq!(
        at(spec, "volumes/0/secret/secretName").as_str(),
        Some("remora-token-default")
    );
}

#[test]
fn inject_false_and_host_network_leave_the_pod_alone() {
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: tool
  annotations: {sidecar.istio.io/inject: "false"}
spec:
  containers: [{name: tool, image: tool:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: node-agent}
spec:
  hostNetwork: true
  containers: [{name: agent, image: agent:1}]
"#;
    let injected = run(input);
    assert_eq!(docs(&injected.output), docs(input));
    assert!(injected.notes[0].contains("not injected: sidecar.istio.io/inject"));
    assert!(injected.notes[1].contains("not injected: hostNetwork"));
}

#[test]
fn a_list_injects_each_workload() {
    let input = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {a: "1"}
- apiVersion: apps/v1
  kind: DaemonSet
  metadata: {name: agent}
  spec:
    selector: {matchLabels: {app: agent}}
    template:
      metadata: {labels: {app: agent}}
      spec:
        containers: [{name: agent, image: agent:1}]
"#;
    let output = run(input).output;
    let out = docs(&output);
    assert_eq!(at(&out[0], "items/0/data/a").as_str(), Some("1"));
    assert_eq!(
        at(&out[0], "items/1/spec/template/spec/initContainers/0/name").as_str(),
        Some("remora-init")
    );
}

#[test]
fn errors_name_the_document_the_object_and_the_field() {
    let e = fail(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n\
         spec:\n  template:\n    spec:\n      containers: nginx\n",
    );
    assert_eq!(
        e.to_string(),
        "in.yaml: document 2 (Deployment shop/web): spec.template.spec.containers: \
         expected a list, found a string"
    );

    let e = fail(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    \
         metadata:\n      annotations:\n        traffic.sidecar.istio.io/excludeOutboundPorts: \
         \"80,http\"\n    spec:\n      containers: [{name: web, image: web}]\n",
    );
    assert_eq!(e.document, Some(1));
    assert_eq!(
        e.field.as_deref(),
        Some(
            "spec.template.metadata.annotations[\"traffic.sidecar.istio.io/excludeOutboundPorts\"]"
        )
    );

    let e = fail("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n");
    assert_eq!(e.field.as_deref(), Some("spec.template"));
    assert_eq!(e.message, "is missing");

    let e = fail(
        "kind: Pod\nmetadata: {name: p, labels: {replicas: 3}}\nspec: {containers: [{name: a}]}\n",
    );
    assert_eq!(e.field.as_deref(), Some("metadata.labels[\"replicas\"]"));
    assert!(e.message.contains("quote it"), "{}", e.message);

    let e = fail("- just\n- a list\n");
    assert_eq!(e.document, Some(1));
    assert!(
        e.message.contains("expected a Kubernetes object"),
        "{}",
        e.message
    );

    let e = fail("kind: [unclosed\n");
    assert!(e.message.starts_with("not valid YAML"), "{}", e.message);
}

const COMPOSE: &str = r#"
services:
  remora:
    image: remora:test
    command: [serve, --config-dir, /etc/remora/mesh]
    volumes:
    - remora-data:/var/lib/remora
    - ./mesh:/etc/remora/mesh:ro
  reviews-v1:
    image: remora-demo-app:test
    command: [--listen, "127.0.0.1:9080", --service, reviews, --version, v1]
    labels: {app: reviews, version: v1}
    expose: ["9080"]
  productpage:
    image: remora-demo-app:test
    labels:
      app: productpage
      traffic.sidecar.istio.io/excludeOutboundPorts: "5432"
    ports: ["8080:9080"]
    depends_on: [reviews-v1]
  jaeger:
    image: jaegertracing/jaeger:latest
    labels: {sidecar.istio.io/inject: "false"}
    profiles: [observability]
volumes:
  remora-data: {}
"#;

#[test]
fn a_compose_service_becomes_a_pod_of_sidecar_init_and_app() {
    let injected = run(COMPOSE);
    assert_eq!(injected.format, Format::Compose);
    let out = docs(&injected.output);
    let services = at(&out[0], "services");
    let names: Vec<_> = services
        .as_mapping()
        .expect("services")
        .keys()
        .map(|k| k.as_str().expect("name").to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "remora",
            "remora-bootstrap-productpage",
            "remora-bootstrap-reviews",
            "reviews-v1-proxy",
            "reviews-v1-init",
            "reviews-v1",
            "productpage-proxy",
            "productpage-init",
            "productpage",
            "jaeger",
        ]
    );
    let sidecar = at(services, "reviews-v1-proxy");
    let command = strs(at(sidecar, "command"));
    assert!(
        command.windows(2).any(|w| w == ["--label", "version=v1"]),
        "{command:?}"
    );
    assert!(command.windows(2).any(|w| w == ["--service", "reviews"]));
    assert!(
        command
            .windows(2)
            .any(|w| w == ["--control-plane", "http://remora:15010"])
    );
    assert!(command.windows(2).any(|w| w == ["--app", "127.0.0.1:9080"]));
    assert_eq!(strs(at(sidecar, "expose")), ["9080"]);
    assert_eq!(
        strs(at(sidecar, "networks/default/aliases")),
        ["reviews-v1", "reviews"]
    );
    assert_eq!(
        strs(at(sidecar, "volumes")),
        ["remora-bootstrap-reviews:/var/run/remora/bootstrap:ro"]
    );
    assert_eq!(
        strs(at(sidecar, "healthcheck/test"))[..3],
        ["CMD", "/usr/local/bin/remora-proxy", "wait-ready"]
    );

    let init = at(services, "productpage-init");
    assert_eq!(
        at(init, "network_mode").as_str(),
        Some("service:productpage-proxy")
    );
    assert_eq!(
        strs(at(init, "command")),
        ["init", "--exclude-outbound-ports=5432"]
    );
    assert_eq!(strs(at(init, "cap_add")), ["NET_ADMIN", "NET_RAW"]);

    let app = at(services, "productpage");
    assert_eq!(
        at(app, "network_mode").as_str(),
        Some("service:productpage-proxy")
    );
    assert!(
        app.as_mapping_get("ports").is_none(),
        "ports moved to the sidecar"
    );
    assert_eq!(strs(at(services, "productpage-proxy/ports")), ["8080:9080"]);
    assert_eq!(
        at(app, "depends_on/reviews-v1/condition").as_str(),
        Some("service_started")
    );
    assert_eq!(
        at(app, "depends_on/productpage-init/condition").as_str(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        at(app, "depends_on/productpage-proxy/condition").as_str(),
        Some("service_healthy")
    );

    let bootstrap = at(services, "remora-bootstrap-reviews");
    assert_eq!(
        strs(at(bootstrap, "volumes")),
        [
            "remora-data:/var/lib/remora:ro",
            "remora-bootstrap-reviews:/var/run/remora/bootstrap"
        ]
    );
    assert!(
        strs(at(bootstrap, "command"))
            .windows(2)
            .any(|w| w == ["--service-account", "reviews"])
    );
    assert_eq!(
        at(services, "remora/healthcheck/test/2").as_str(),
        Some("proxy-status")
    );
    // Jaeger is labelled out.
    assert!(
        at(services, "jaeger")
            .as_mapping_get("network_mode")
            .is_none()
    );
    assert!(
        at(&out[0], "volumes")
            .as_mapping_get("remora-bootstrap-reviews")
            .is_some()
    );
}

#[test]
fn a_compose_file_without_a_control_plane_gets_one() {
    let input = "services:\n  web:\n    image: web:1\n";
    let output = run(input).output;
    let out = docs(&output);
    let services = at(&out[0], "services");
    assert_eq!(at(services, "remora/image").as_str(), Some("remora:test"));
    assert_eq!(
        strs(at(services, "remora/volumes")),
        ["remora-data:/var/lib/remora"]
    );
    // Its monitoring port listens on the Compose network, for Prometheus,
    // and is not published on the host.
    assert_eq!(
        strs(at(services, "remora/command")),
        ["serve", "--monitoring-addr", "0.0.0.0:15014"]
    );
    assert!(
        services
            .as_mapping_get("remora")
            .unwrap()
            .as_mapping_get("ports")
            .is_none()
    );
    assert!(
        at(&out[0], "volumes")
            .as_mapping_get("remora-data")
            .is_some()
    );
}

#[test]
fn a_compose_control_plane_without_a_data_volume_is_an_error() {
    let e = fail("services:\n  remora:\n    image: remora:1\n  web:\n    image: web:1\n");
    assert_eq!(e.field.as_deref(), Some("services.remora.volumes"));
    assert!(e.message.contains("/var/lib/remora"), "{}", e.message);
}

/// Strings a YAML 1.1 reader (Kubernetes' sigs.k8s.io/yaml, Compose v1's
/// PyYAML) would take for dates, booleans or numbers if written plain.
const AMBIGUOUS: [&str; 16] = [
    "2024-01-01",
    "2001-12-14",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "N",
    "1e3",
    "0x1F",
    "010",
    "0b101",
    "1_000",
    "12:30",
    ".5",
    "~",
];

#[test]
fn strings_that_yaml_1_1_would_read_as_other_types_stay_quoted_strings() {
    let env: String = AMBIGUOUS
        .iter()
        .enumerate()
        .map(|(i, v)| format!("        - {{name: V{i}, value: \"{v}\"}}\n"))
        .collect();
    let labels: String = AMBIGUOUS
        .iter()
        .enumerate()
        .map(|(i, v)| format!("        l{i}: \"{v}\"\n"))
        .collect();
    let input = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels:
        app: web
{labels}    spec:
      containers:
      - name: web
        image: web:1
        env:
{env}"
    );
    for output in [run(&input).output, run(&run(&input).output).output] {
        for v in AMBIGUOUS {
            assert!(
                output.contains(&format!("\"{v}\"")) || output.contains(&format!("'{v}'")),
                "{v} is not quoted:\n{output}"
            );
        }
        let doc = &docs(&output)[0];
        for (i, v) in AMBIGUOUS.iter().enumerate() {
            let label = at(doc, &format!("spec/template/metadata/labels/l{i}"));
            assert_eq!(label.as_str(), Some(*v), "label l{i}");
            let env = at(
                doc,
                &format!("spec/template/spec/containers/0/env/{i}/value"),
            );
            assert_eq!(env.as_str(), Some(*v), "env V{i}");
        }
    }
}

#[test]
fn a_compose_value_that_looks_like_a_date_stays_a_quoted_string() {
    let input = "services:
  web:
    image: web:1
    environment:
      RELEASED: \"2024-01-01\"
      ENABLED: \"y\"
";
    let output = run(input).output;
    for v in ["\"2024-01-01\"", "\"y\""] {
        assert!(output.contains(v), "{v} is not quoted:\n{output}");
    }
}
