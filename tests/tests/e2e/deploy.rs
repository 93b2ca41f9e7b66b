//! Deployment, end to end: `remora inject` on real manifests (validated
//! offline against Kubernetes' own schemas), the container images (run
//! read-only as their users), and the Compose mesh of `examples/compose`
//! (the exact 90/10 split counted by the calling app, mTLS between the
//! sidecars, and the app's plain `http://reviews:9080/` captured).
//!
//! The image and Compose tests need a Docker engine and skip, saying so,
//! where there is none. The schema checks need `kubernetes-validate`
//! (`.ci/run` installs it into `target/kubernetes-validate`, or set
//! `REMORA_KUBERNETES_VALIDATE`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use remora_e2e::{bin, workspace_root};

/// The Kubernetes version whose schemas the output must satisfy: native
/// sidecars (`restartPolicy` on init containers) need 1.29.
const KUBERNETES_VERSION: &str = "1.30.0";

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `remora inject -f <file>` and its stdout; panics with stderr on failure.
fn inject(file: &Path, extra: &[&str]) -> String {
    let out = run(Command::new(bin("remora"))
        .arg("inject")
        .arg("-f")
        .arg(file)
        .args(extra));
    assert!(
        out.status.success(),
        "remora inject -f {} failed:\n{}",
        file.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

mod kubernetes {
    use super::*;

    fn validator() -> Option<PathBuf> {
        let path = std::env::var_os("REMORA_KUBERNETES_VALIDATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                workspace_root().join("target/kubernetes-validate/bin/kubernetes-validate")
            });
        path.is_file().then_some(path)
    }

    /// Validates `yaml` with kubernetes-validate (strict: unknown fields
    /// are errors); `None` when the validator is not installed. A `List` has
    /// no schema of its own: its items are validated, as documents.
    fn validate(name: &str, yaml: &str) -> Option<()> {
        let Some(validator) = validator() else {
            eprintln!(
                "SKIPPED the schema check of {name}: kubernetes-validate is not installed \
                 (.ci/run installs it into target/kubernetes-validate)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(name);
        std::fs::write(&file, yaml).expect("write");
        // The validator's own Python has PyYAML: it unpacks Lists.
        let python = validator.with_file_name("python3");
        let unpack = run(Command::new(python).arg("-c").arg(UNPACK_LISTS).arg(&file));
        assert!(
            unpack.status.success(),
            "{name} is not YAML:\n{}",
            text(&unpack.stderr)
        );
        let out = run(Command::new(validator)
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file));
        assert!(
            out.status.success(),
            "{name} is not valid for Kubernetes {KUBERNETES_VERSION}:\n{}{}\n--- the YAML:\n{yaml}",
            text(&out.stdout),
            text(&out.stderr)
        );
        Some(())
    }

    /// Rewrites a YAML file with each `List`'s items as documents of their own.
    const UNPACK_LISTS: &str = "import sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
        out = []\n\
        for d in docs:\n    \
            out.extend(d['items'] if d.get('kind') == 'List' else [d])\n\
        yaml.safe_dump_all(out, open(sys.argv[1], 'w'))\n";

    fn fixture(name: &str) -> PathBuf {
        workspace_root().join("tests/fixtures/inject").join(name)
    }

    /// Injects a fixture, validates input and output, and checks that
    /// injecting the output again changes nothing.
    fn inject_and_validate(name: &str) -> String {
        let input = std::fs::read_to_string(fixture(name)).expect("fixture");
        validate(&format!("input-{name}"), &input);
        let once = inject(&fixture(name), &[]);
        validate(name, &once);
        let dir = tempfile::tempdir().expect("tempdir");
        let again = dir.path().join(name);
        std::fs::write(&again, &once).expect("write");
        let twice = inject(&again, &[]);
        assert_eq!(once, twice, "injecting {name} twice changed it");
        once
    }

    #[test]
    fn an_injected_deployment_is_valid_and_injecting_again_changes_nothing() {
        let out = inject_and_validate("deployment.yaml");
        assert!(out.contains("restartPolicy: Always"), "{out}");
        assert!(out.contains("--exclude-outbound-ports=5432,6379"), "{out}");
        assert!(
            out.contains("secretName: remora-token-bookinfo-reviews"),
            "{out}"
        );
    }

    #[test]
    fn an_injected_statefulset_with_two_containers_keeps_both_and_its_init_container() {
        let out = inject_and_validate("statefulset.yaml");
        let init = out.find("name: remora-init").expect("remora-init");
        let sidecar = out.find("name: remora-proxy").expect("remora-proxy");
        let own = out
            .find("name: fix-permissions")
            .expect("its own init container");
        assert!(
            init < sidecar && sidecar < own,
            "capture, then the sidecar, then its own"
        );
        assert!(out.contains("name: exporter") && out.contains("name: postgres"));
        assert!(out.contains("--exclude-inbound-ports=9187"), "{out}");
        assert!(
            // Quoted: a string that starts like a number always is.
            out.contains("cpu: \"50m\"") && out.contains("memory: \"256Mi\""),
            "{out}"
        );
    }

    #[test]
    fn an_injected_cronjob_is_valid() {
        let out = inject_and_validate("cronjob.yaml");
        assert!(out.contains("remora-init"), "{out}");
    }

    #[test]
    fn a_mixed_list_injects_its_workloads_only() {
        let out = inject_and_validate("mixed-list.yaml");
        // DaemonSet, Job and ReplicaSet: three pods, three sidecars; the
        // Pod that says no has none.
        assert_eq!(out.matches("name: remora-proxy").count(), 3, "{out}");
        assert!(out.contains("LOG_LEVEL: info"));
    }

    #[test]
    fn the_control_plane_manifests_are_valid() {
        let dir = workspace_root().join("deploy/kubernetes");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("deploy/kubernetes")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 2, "{files:?}");
        for file in files {
            let yaml = std::fs::read_to_string(&file).expect("read");
            let name = file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            validate(&name, &yaml);
        }
    }

    #[test]
    fn bad_input_names_the_document_and_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: apps/v1\n\
             kind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata:\n      \
             annotations:\n        sidecar.istio.io/inject: maybe\n    spec:\n      \
             containers: [{name: web, image: web}]\n",
        )
        .expect("write");
        let out = run(Command::new(bin("remora"))
            .arg("inject")
            .arg("-f")
            .arg(&file));
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "nothing on stdout when it fails");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(
                "bad.yaml: document 2 (Deployment web): \
                 spec.template.metadata.annotations[\"sidecar.istio.io/inject\"]: \"maybe\""
            ),
            "{stderr}"
        );
    }
}

mod compose_file {
    use super::*;

    /// The Compose example is `app.yaml` after `remora inject`: the file
    /// users run and the injector cannot drift apart.
    #[test]
    fn the_compose_example_is_what_inject_makes_of_its_app_file() {
        let dir = workspace_root().join("examples/compose");
        let made = inject(
            &dir.join("app.yaml"),
            &["--otlp-endpoint", "http://jaeger:4317"],
        );
        let committed =
            std::fs::read_to_string(dir.join("docker-compose.yml")).expect("docker-compose.yml");
        assert!(
            made == committed,
            "examples/compose/docker-compose.yml is not what `remora inject` makes of app.yaml; \
             regenerate it (see the command in app.yaml). It should be:\n{made}"
        );
    }
}

/// Docker, when an engine answers.
fn docker_available(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED {test}: no Docker engine answers `docker info`");
    }
    ok
}

/// Builds the three images with deploy/build-images.sh (cargo is a no-op
/// when the static binaries are current); the version tag.
fn build_images() -> String {
    let out = run(&mut Command::new(
        workspace_root().join("deploy/build-images.sh"),
    ));
    assert!(
        out.status.success(),
        "deploy/build-images.sh failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    eprintln!("{}", text(&out.stdout));
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Removes the containers, networks and volumes it names when dropped,
/// whether the test passed or not.
struct DockerCleanup {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        for n in &self.networks {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
    }
}

fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_owned()
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

mod images {
    use super::*;

    /// The proxy image runs with a read-only root filesystem as uid 1337,
    /// has no shell, carries a working nft, and reports ready on 15021 once
    /// the control plane's image has given it a config.
    #[test]
    fn the_proxy_image_runs_read_only_as_1337_and_serves_its_health_port() {
        if !docker_available("the image test") {
            return;
        }
        let version = build_images();
        let proxy_image = format!("remora-proxy:{version}");
        let cp_image = format!("remora:{version}");
        let network = unique("remora-e2e-img");
        let cp = format!("{network}-cp");
        let proxy = format!("{network}-proxy");
        let _cleanup = DockerCleanup {
            containers: vec![proxy.clone(), cp.clone()],
            networks: vec![network.clone()],
        };

        // Labels: where it came from and which commit.
        let revision = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"org.opencontainers.image.revision\"}}",
            &proxy_image,
        ]);
        let head = text(
            &run(Command::new("git")
                .arg("-C")
                .arg(workspace_root())
                .args(["rev-parse", "HEAD"]))
            .stdout,
        );
        assert!(
            revision.starts_with(head.trim()),
            "revision label {revision:?}, HEAD {head:?}"
        );
        assert_eq!(
            docker_ok(&[
                "image",
                "inspect",
                "--format",
                "{{.Config.User}}",
                &proxy_image
            ]),
            "1337:1337"
        );
        // No shell to exec into.
        let shell = docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            &proxy_image,
            "-c",
            "true",
        ]);
        assert!(!shell.status.success(), "the image has a shell");
        // nft, for `init`, runs with the libraries and loader carried in.
        let nft = docker_ok(&[
            "run",
            "--rm",
            "--read-only",
            "--entrypoint",
            "/usr/sbin/nft",
            &proxy_image,
            "--version",
        ]);
        assert!(nft.starts_with("nftables"), "{nft}");

        docker_ok(&["network", "create", &network]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &cp,
            "--network",
            &network,
            "--network-alias",
            "remora",
            "--read-only",
            "-v",
            "/var/lib/remora",
            &cp_image,
            "serve",
            // The proxy below has no token: it registers over plaintext,
            // which `serve` refuses unless told this is development.
            "--allow-plaintext-discovery",
        ]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &proxy,
            "--network",
            &network,
            "--read-only",
            "--user",
            "1337:1337",
            "--cap-drop",
            "ALL",
            "-p",
            "127.0.0.1::15021",
            &proxy_image,
            "--service",
            "web",
            "--control-plane",
            "http://remora:15010",
        ]);
        let port = docker_ok(&["port", &proxy, "15021/tcp"]);
        let port = port
            .lines()
            .next()
            .unwrap_or_default()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let url = format!("http://127.0.0.1:{port}/healthz/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let out = run(Command::new("curl").args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                &url,
            ]));
            let code = text(&out.stdout);
            if code == "200" || Instant::now() > deadline {
                break code;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let logs = |c: &str| text(&docker(&["logs", c]).stderr);
        assert_eq!(
            status,
            "200",
            "proxy health: {status}\nproxy logs:\n{}\ncontrol plane logs:\n{}",
            logs(&proxy),
            logs(&cp)
        );
        let user = docker_ok(&[
            "inspect",
            "--format",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
            &proxy,
        ]);
        assert_eq!(user, "1337:1337 true");
    }
}

mod compose {
    use super::*;

    /// Compose 1: docker-compose 1.29 from the PATH.
    fn compose_v1() -> PathBuf {
        PathBuf::from("docker-compose")
    }

    /// Compose v2 (the Go binary, which runs standalone as well as a docker
    /// plugin): `REMORA_COMPOSE_V2`, else `target/compose-v2/docker-compose`
    /// (where `.ci/run` puts Debian's package's binary); `None` when absent.
    fn compose_v2() -> Option<PathBuf> {
        let path = std::env::var_os("REMORA_COMPOSE_V2").map_or_else(
            || workspace_root().join("target/compose-v2/docker-compose"),
            PathBuf::from,
        );
        path.is_file().then_some(path)
    }

    /// `<compose> -p <project> -f examples/compose/docker-compose.yml`.
    struct Project {
        program: PathBuf,
        name: String,
        file: PathBuf,
    }

    impl Project {
        fn command(&self, args: &[&str]) -> Command {
            let mut c = Command::new(&self.program);
            c.arg("-p")
                .arg(&self.name)
                .arg("-f")
                .arg(&self.file)
                .args(args);
            c
        }

        fn exec(&self, service: &str, args: &[&str]) -> Output {
            let mut all = vec!["exec", "-T", service];
            all.extend_from_slice(args);
            run(&mut self.command(&all))
        }

        /// GET `url` from inside `service`'s network namespace (the demo
        /// app's `report` prints any answer's body).
        fn get(&self, service: &str, url: &str) -> String {
            text(
                &self
                    .exec(service, &["remora-demo-app", "report", "--url", url])
                    .stdout,
            )
        }
    }

    impl Drop for Project {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let logs = run(&mut self.command(&["logs", "--no-color", "--tail", "40"]));
                eprintln!("--- docker-compose logs:\n{}", text(&logs.stdout));
            }
            let down = run(&mut self.command(&[
                "down",
                "--volumes",
                "--remove-orphans",
                "--timeout",
                "2",
            ]));
            if !down.status.success() {
                eprintln!("docker-compose down failed:\n{}", text(&down.stderr));
            }
        }
    }

    /// The sum of the samples of `metric` whose labels contain every one of
    /// `labels`, in Prometheus text.
    fn sum(text: &str, metric: &str, labels: &[&str]) -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{metric}{{")) && labels.iter().all(|x| l.contains(x))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    impl Project {
        /// The address of `service`'s container on the project's network.
        fn address(&self, service: &str) -> String {
            let id = text(&run(&mut self.command(&["ps", "-q", service])).stdout);
            let id = id.trim();
            assert!(!id.is_empty(), "no container for {service}");
            docker_ok(&[
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                id,
            ])
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("{service} has no address"))
            .to_owned()
        }
    }

    /// GET `url` with curl from this host (on the Compose network's bridge,
    /// as a Prometheus container would be on the network): status and body.
    fn curl(url: &str) -> (String, String) {
        let out = run(Command::new("curl").args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            url,
        ]));
        let all = text(&out.stdout);
        let (body, code) = all.rsplit_once('\n').unwrap_or(("", &all));
        (code.to_owned(), format!("{body}{}", text(&out.stderr)))
    }

    /// The profile `observability` is a valid Compose file for both
    /// Composes, and its Prometheus scrapes what the file runs.
    #[test]
    fn the_observability_profile_is_valid_and_scrapes_every_sidecar_and_the_control_plane() {
        let mut programs = vec![compose_v1()];
        match compose_v2() {
            Some(v2) => programs.push(v2),
            None => eprintln!(
                "SKIPPED the Compose v2 check: no target/compose-v2/docker-compose \
                 (.ci/run fetches it) and no REMORA_COMPOSE_V2"
            ),
        }
        for program in programs {
            observability_config(&program);
        }
    }

    fn observability_config(program: &Path) {
        let dir = workspace_root().join("examples/compose");
        let out = run(Command::new(program)
            .arg("-f")
            .arg(dir.join("docker-compose.yml"))
            .args(["--profile", "observability", "config"]));
        assert!(
            out.status.success(),
            "{} --profile observability config:\n{}",
            program.display(),
            text(&out.stderr)
        );
        let config = text(&out.stdout);
        for service in ["jaeger", "prometheus", "remora", "reviews-v1-proxy"] {
            assert!(
                config.contains(&format!("  {service}:")),
                "{service}:\n{config}"
            );
        }
        let prometheus =
            std::fs::read_to_string(dir.join("prometheus.yml")).expect("prometheus.yml");
        for target in [
            "reviews-v1:15090",
            "reviews-v2:15090",
            "productpage:15090",
            "remora:15014",
        ] {
            assert!(prometheus.contains(target), "{target}");
        }
        // The control plane's monitoring port is on the network, not on
        // the host.
        assert!(
            config.contains("0.0.0.0:15014")
                && !config.contains("published: \"15014\"")
                && !config.contains("published: 15014"),
            "{config}"
        );
    }

    #[test]
    fn the_compose_canary_splits_90_10_over_mtls_through_capture() {
        if !docker_available("the Compose test") {
            return;
        }
        canary(compose_v1());
    }

    #[test]
    fn the_compose_canary_runs_with_compose_v2() {
        if !docker_available("the Compose v2 test") {
            return;
        }
        let Some(v2) = compose_v2() else {
            eprintln!(
                "SKIPPED the Compose v2 test: no target/compose-v2/docker-compose \
                 (.ci/run fetches Debian's docker-compose 2.x package) and no REMORA_COMPOSE_V2"
            );
            return;
        };
        canary(v2);
    }

    /// The canary of examples/compose run by `program`: up, the split, mTLS,
    /// capture, scraping, names; down with its volumes whatever happens.
    fn canary(program: PathBuf) {
        build_images();
        let started_test = Instant::now();
        let version = text(&run(Command::new(&program).arg("version")).stdout);
        eprintln!("Compose: {} ({})", program.display(), version.trim());
        let project = Project {
            program,
            name: unique("remora-e2e-compose"),
            file: workspace_root().join("examples/compose/docker-compose.yml"),
        };
        let started = SystemTime::now();
        let up = run(&mut project.command(&["up", "-d"]));
        assert!(
            up.status.success(),
            "docker-compose up failed:\n{}",
            text(&up.stderr)
        );

        // The client measures once every version has answered; its report
        // says when it is done.
        let deadline = Instant::now() + Duration::from_secs(240);
        let report = loop {
            let body = project.get("productpage", "http://127.0.0.1:9080/report.json");
            if let Ok(report) = serde_json::from_str::<serde_json::Value>(&body) {
                let state = report["state"].as_str().unwrap_or_default().to_owned();
                if state == "done" || state.starts_with("failed") {
                    break report;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the productpage client did not finish within 240 s; last answer: {body}"
            );
            std::thread::sleep(Duration::from_secs(1));
        };
        let printed = project.get("productpage", "http://127.0.0.1:9080/report");
        eprintln!("{printed}");
        assert_eq!(report["state"], "done", "{report}");
        assert_eq!(
            report["canary"]["versions"],
            serde_json::json!({"v1": 900, "v2": 100}),
            "{report}"
        );
        assert_eq!(report["canary"]["failed"], 0, "{report}");
        assert_eq!(
            report["jason"]["versions"],
            serde_json::json!({"v2": 100}),
            "{report}"
        );
        // Every measured call left productpage's sidecar over mTLS: the
        // plain call to reviews:9080 was captured (an uncaptured call would
        // not be counted there, nor split exactly).
        assert_eq!(report["mtls"], 1100, "{report}");

        // And arrived at the reviews sidecars over mTLS, from productpage.
        let mut inbound = 0;
        for pod in ["reviews-v1", "reviews-v2"] {
            let metrics = project.get(pod, "http://127.0.0.1:15090/stats/prometheus");
            inbound += sum(
                &metrics,
                "remora_requests_total",
                &["direction=\"inbound\"", "mtls=\"true\""],
            );
        }
        let warmup = report["warmup_calls"].as_u64().unwrap_or_default();
        assert!(
            (1100..=1100 + warmup).contains(&inbound),
            "the reviews sidecars served {inbound} requests over mTLS (1100 measured, {warmup} warm-up calls)"
        );

        // What Prometheus scrapes answers on the Compose network: each
        // sidecar's 15090 and the control plane's 15014.
        let mut scraped = Vec::new();
        for (service, port, path) in [
            ("remora", 15014, "/metrics"),
            ("reviews-v1-proxy", 15090, "/stats/prometheus"),
            ("reviews-v2-proxy", 15090, "/stats/prometheus"),
            ("productpage-proxy", 15090, "/stats/prometheus"),
        ] {
            let url = format!("http://{}:{port}{path}", project.address(service));
            let (code, body) = curl(&url);
            assert_eq!(code, "200", "{service}: {url}: {body}");
            scraped.push(format!("{service}:{port}"));
        }
        eprintln!("scrapeable on the Compose network: {scraped:?}");

        // Each sidecar registered under a name of its own (its container's).
        let url = format!("http://{}:15014/debug/proxies", project.address("remora"));
        let (code, body) = curl(&url);
        assert_eq!(code, "200", "{body}");
        let proxies: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let mut names: Vec<String> = proxies
            .as_array()
            .or_else(|| proxies["proxies"].as_array())
            .unwrap_or_else(|| panic!("no list of proxies: {body}"))
            .iter()
            .map(|p| p["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        eprintln!("registered proxies: {names:?}");
        let count = names.len();
        names.dedup();
        assert_eq!((count, names.len()), (3, 3), "{body}");

        if let Some(first) = report["first_answer_unix_ms"].as_u64() {
            let up_ms = started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            eprintln!(
                "from `up` to the first answered request: {:.1} s",
                first.saturating_sub(up_ms) as f64 / 1000.0
            );
        }
        eprintln!(
            "the Compose test took {:.1} s (images built before it)",
            started_test.elapsed().as_secs_f64()
        );
    }
}
