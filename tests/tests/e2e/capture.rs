//! Transparent capture in real network namespaces ("pods", see
//! `remora_e2e::netns`): `remora-proxy init` installs nftables rules that
//! send an unmodified app's TCP through the sidecar's ports, leave alone
//! what they must, and come off again exactly.
//!
//! These tests need root and `ip netns`; without them they print why and
//! pass, unless `REMORA_REQUIRE_NETNS=1` (CI) makes that a failure.

use std::net::SocketAddr;
use std::time::Duration;

use remora_e2e::discovery::cluster_name;
use remora_e2e::mesh::endpoints_in;
use remora_e2e::netns::{self, Network, Pod, User};
use remora_e2e::{bin, yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long one `curl` may take.
const CURL_TIMEOUT_SECS: &str = "10";

/// The most of a request head the test servers read.
const MAX_HEAD: usize = 16 * 1024;

/// Answers every HTTP/1.1 request on `listener` with 200 and body `name`,
/// then closes the connection: whoever answers a call names itself.
fn answer_as(listener: TcpListener, name: &'static str) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                let read = tokio::time::timeout(Duration::from_secs(10), async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                })
                .await;
                if read != Ok(true) {
                    return;
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
}

/// Binds `addr` in `pod` and answers as `name` there.
async fn serve(pod: &Pod, addr: &str, name: &'static str) {
    let addr: SocketAddr = addr.parse().expect("address");
    let listener = pod
        .bind(addr)
        .await
        .unwrap_or_else(|e| panic!("[{}] bind {addr}: {e}", pod.name));
    answer_as(listener, name);
}

/// `curl url` from `pod` as `user`: the body, or curl's error.
async fn curl(pod: &Pod, user: User, url: &str) -> Result<String, String> {
    let out = pod
        .run(
            user,
            "curl",
            ["-sS", "-g", "--max-time", CURL_TIMEOUT_SECS, url],
        )
        .await;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Runs `remora-proxy init args` in `pod` as root; panics unless it
/// succeeds; returns its stdout.
async fn init(pod: &Pod, args: &[&str]) -> String {
    let proxy = bin("remora-proxy");
    let mut argv = vec![proxy.to_string_lossy().into_owned(), "init".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    pod.run_ok(&argv[0], &argv[1..]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn init_sends_the_apps_tcp_through_the_sidecar_ports_and_leaves_the_rest_alone() {
    if netns::skip("init_sends_the_apps_tcp_through_the_sidecar_ports") {
        return;
    }
    let net = Network::create();
    let app = net.pod("app");
    let peer = net.pod("peer");
    let outside = net.pod("outside");
    app.set_hosts(&[
        ("peer", peer.ipv4.into()),
        ("peer6", peer.ipv6.into()),
        ("outside", outside.ipv4.into()),
    ]);
    peer.set_hosts(&[("app", app.ipv4.into()), ("app6", app.ipv6.into())]);

    // Stand-ins that name themselves: the sidecar's listeners and the app's
    // ports in the captured pod, and the destinations elsewhere.
    serve(&app, "127.0.0.1:15001", "sidecar outbound").await;
    serve(&app, "[::1]:15001", "sidecar outbound (IPv6)").await;
    serve(&app, "[::]:15006", "sidecar inbound").await;
    serve(&app, "[::]:15021", "sidecar health").await;
    serve(&app, "[::]:8080", "app 8080").await;
    serve(&app, "[::]:2222", "app 2222").await;
    serve(&peer, "[::]:9080", "peer 9080").await;
    serve(&peer, "[::]:5432", "peer 5432").await;
    serve(&outside, "[::]:9080", "outside 9080").await;

    let outside_cidr = format!("{}/32", outside.ipv4);
    init(
        &app,
        &[
            "--exclude-outbound-ports",
            "5432",
            "--exclude-outbound-cidrs",
            &outside_cidr,
            "--exclude-inbound-ports",
            "2222",
        ],
    )
    .await;

    let app_own = format!("http://{}:8080/", app.ipv4);
    let checks: Vec<(&str, &Pod, User, String, &str)> = vec![
        (
            "the app's call to a peer goes to the outbound port",
            &app,
            User::Root,
            "http://peer:9080/".into(),
            "sidecar outbound",
        ),
        (
            "an IPv6 call goes to the outbound port on ::1",
            &app,
            User::Root,
            "http://peer6:9080/".into(),
            "sidecar outbound (IPv6)",
        ),
        (
            "an excluded port is reached directly",
            &app,
            User::Root,
            "http://peer:5432/".into(),
            "peer 5432",
        ),
        (
            "an excluded CIDR is reached directly",
            &app,
            User::Root,
            "http://outside:9080/".into(),
            "outside 9080",
        ),
        (
            "the proxy's uid is never captured",
            &app,
            User::Uid(netns::PROXY_UID),
            "http://peer:9080/".into(),
            "peer 9080",
        ),
        (
            "loopback is not captured",
            &app,
            User::Root,
            "http://127.0.0.1:8080/".into(),
            "app 8080",
        ),
        (
            "the pod calling its own address is not captured",
            &app,
            User::Root,
            app_own,
            "app 8080",
        ),
        (
            "a peer's call to the app goes to the inbound port",
            &peer,
            User::Root,
            "http://app:8080/".into(),
            "sidecar inbound",
        ),
        (
            "an IPv6 call to the app goes to the inbound port",
            &peer,
            User::Root,
            "http://app6:8080/".into(),
            "sidecar inbound",
        ),
        (
            "the proxy's own ports are reached directly",
            &peer,
            User::Root,
            "http://app:15021/".into(),
            "sidecar health",
        ),
        (
            "an excluded inbound port is reached directly",
            &peer,
            User::Root,
            "http://app:2222/".into(),
            "app 2222",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, pod, user, url, expected) in &checks {
        let got = curl(pod, *user, url).await;
        if got.as_deref() != Ok(*expected) {
            wrong.push(format!(
                "{what}: {url} from {} as {user:?} answered {got:?}, expected {expected:?}",
                pod.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nrules:\n{}",
        wrong.join("\n"),
        app.ruleset().await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_twice_gives_the_same_rules_and_cleanup_restores_the_namespace() {
    if netns::skip("init_twice_gives_the_same_rules_and_cleanup_restores_the_namespace") {
        return;
    }
    let net = Network::create();
    let pod = net.pod("pod");
    // Someone else's rules, which must survive both init and cleanup.
    let theirs = net.write_file(
        "theirs.nft",
        "table inet theirs {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 7 counter\n\t}\n}\ntable ip nat {\n\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n\t\ttcp dport 7 counter\n\t}\n}\n",
    );
    pod.run_ok("nft", ["-f".as_ref(), theirs.as_os_str()]).await;
    let before = pod.ruleset().await;
    assert!(before.contains("table inet theirs"), "{before}");

    let out = init(&pod, &["--exclude-outbound-ports", "5432"]).await;
    assert!(
        out.contains(r#""event":"capture""#) && out.contains(r#""action":"installed""#),
        "{out}"
    );
    let first = pod.ruleset().await;
    assert!(first.contains("table inet remora"), "{first}");
    assert!(first.contains("redirect to :15001"), "{first}");
    assert!(
        first.contains("table inet theirs") && first.contains("table ip nat"),
        "{first}"
    );

    init(&pod, &["--exclude-outbound-ports", "5432"]).await;
    let second = pod.ruleset().await;
    assert_eq!(second, first, "a second init changed the rules");
    assert_eq!(second.matches("table inet remora").count(), 1, "{second}");

    let out = init(&pod, &["--cleanup"]).await;
    assert!(out.contains(r#""action":"removed""#), "{out}");
    assert_eq!(
        pod.ruleset().await,
        before,
        "cleanup left the rules changed"
    );
    // Cleaning up what is not there is no error, and changes nothing.
    init(&pod, &["--cleanup"]).await;
    assert_eq!(pod.ruleset().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_valid_rules_and_changes_nothing() {
    if netns::skip("dry_run_prints_valid_rules_and_changes_nothing") {
        return;
    }
    let net = Network::create();
    let pod = net.pod("pod");
    let before = pod.ruleset().await;
    let printed = init(&pod, &["--dry-run", "--exclude-outbound-ports", "5432"]).await;
    assert!(printed.contains("redirect to :15001"), "{printed}");
    assert!(printed.contains("redirect to :15006"), "{printed}");
    assert!(printed.contains("tcp dport { 5432 } return"), "{printed}");
    assert_eq!(pod.ruleset().await, before, "--dry-run changed the rules");
    // What it prints is what it would apply: nft accepts it (check only).
    let script = net.write_file("printed.nft", &printed);
    pod.run_ok("nft", ["-c".as_ref(), "-f".as_ref(), script.as_os_str()])
        .await;
    assert_eq!(pod.ruleset().await, before);

    let cleanup = init(&pod, &["--cleanup", "--dry-run"]).await;
    assert_eq!(cleanup, "table inet remora\ndelete table inet remora\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn init_without_net_admin_fails_with_one_clear_line() {
    if netns::skip("init_without_net_admin_fails_with_one_clear_line") {
        return;
    }
    let net = Network::create();
    let pod = net.pod("pod");
    let before = pod.ruleset().await;
    let out = pod
        .run(
            User::Uid(netns::PROXY_UID),
            &bin("remora-proxy").to_string_lossy(),
            ["init"],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "init as uid 1337 succeeded: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(
        lines[0].starts_with("error: cannot install the capture rules")
            && lines[0].contains("NET_ADMIN"),
        "{}",
        lines[0]
    );
    assert_eq!(pod.ruleset().await, before);
}

/// A sidecar for `service` in `pod`, as uid 1337 with the default ports,
/// with a certificate from the control plane at `cp`; waits until it is
/// ready.
async fn sidecar(
    pod: &Pod,
    cp: &PodControlPlane,
    service: &str,
    extra: &[&str],
) -> remora_e2e::Process {
    let token = cp.token(service);
    let control_plane = format!("http://{}:15010", cp.pod.ipv4);
    let mut args: Vec<String> = [
        "--service",
        service,
        "--control-plane",
        &control_plane,
        "--token",
        &token,
        "--ca-cert",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.push(cp.ca_cert.to_string_lossy().into_owned());
    if !extra.contains(&"--access-log") {
        args.extend(["--access-log", "off"].map(str::to_owned));
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let mut process = pod.spawn(
        &format!("remora-proxy {service}"),
        User::Uid(netns::PROXY_UID),
        &bin("remora-proxy"),
        &args,
    );
    process.wait_event("ready", Duration::from_secs(60)).await;
    process
}

/// `remora serve` in a pod of its own, with its CA and tokens.
struct PodControlPlane {
    pod: Pod,
    _process: remora_e2e::Process,
    _config: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    ca_cert: std::path::PathBuf,
}

impl PodControlPlane {
    async fn start(net: &Network, files: &[(&str, String)]) -> Self {
        Self::start_with(net, files, &[]).await
    }

    /// [`Self::start`] with more `remora serve` flags.
    async fn start_with(net: &Network, files: &[(&str, String)], flags: &[&str]) -> Self {
        let pod = net.pod("istiod");
        let config = tempfile::tempdir().expect("temp dir");
        for (name, contents) in files {
            std::fs::write(config.path().join(name), contents).expect("write config");
        }
        let data_dir = config.path().join(".data");
        let mut process = pod.spawn(
            "remora serve",
            User::Root,
            &bin("remora"),
            [
                "serve".as_ref(),
                "--config-dir".as_ref(),
                config.path().as_os_str(),
                "--grpc-addr".as_ref(),
                "0.0.0.0:15010".as_ref(),
                "--grpc-tls-addr".as_ref(),
                "0.0.0.0:15012".as_ref(),
                "--monitoring-addr".as_ref(),
                "127.0.0.1:15014".as_ref(),
                "--data-dir".as_ref(),
                data_dir.as_os_str(),
            ]
            .into_iter()
            .chain(flags.iter().map(std::ffi::OsStr::new)),
        );
        process
            .wait_event("listening", Duration::from_secs(60))
            .await;
        let ca = std::fs::read_to_string(data_dir.join("ca-cert.pem")).expect("CA certificate");
        let ca_cert = net.write_file("ca-cert.pem", &ca);
        Self {
            pod,
            _process: process,
            _config: config,
            data_dir,
            ca_cert,
        }
    }

    /// A bootstrap token for service account `sa` in `default`.
    fn token(&self, sa: &str) -> String {
        let out = std::process::Command::new(bin("remora"))
            .args(["token", "create", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--namespace", "default", "--service-account", sa])
            .output()
            .expect("remora token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_curl_by_name_gets_the_exact_canary_split_over_mtls() {
    if netns::skip("a_plain_curl_by_name_gets_the_exact_canary_split_over_mtls") {
        return;
    }
    let net = Network::create();
    let cp = PodControlPlane::start(
        &net,
        &[
            (
                "reviews-dr.yaml",
                yaml::reviews_destination_rule(&["v1", "v2"]),
            ),
            ("reviews-vs.yaml", yaml::reviews_canary(90, 10)),
        ],
    )
    .await;

    // Two `reviews` pods: init, the demo app on 127.0.0.1:9080, the sidecar.
    let mut pods = Vec::new();
    for version in ["v1", "v2"] {
        let pod = net.pod(&format!("reviews-{version}"));
        init(&pod, &[]).await;
        let mut app = pod.spawn(
            "remora-demo-app",
            User::Root,
            &bin("remora-demo-app"),
            [
                "--listen",
                "127.0.0.1:9080",
                "--service",
                "reviews",
                "--version",
                version,
            ],
        );
        app.wait_event("listening", Duration::from_secs(60)).await;
        let label = format!("version={version}");
        let proxy = sidecar(
            &pod,
            &cp,
            "reviews",
            &["--label", &label, "--app", "127.0.0.1:9080"],
        )
        .await;
        pods.push((pod, app, proxy));
    }

    // The client pod: `reviews` resolves to an address nothing answers at,
    // as a Kubernetes ClusterIP; only the capture rules make it work.
    let client = net.pod("productpage");
    client.set_hosts(&[
        ("reviews", "10.88.0.250".parse().expect("ip")),
        ("reviews", "fd88::fa".parse().expect("ip")),
    ]);
    init(&client, &[]).await;
    let _proxy = sidecar(&client, &cp, "productpage", &["--no-inbound"]).await;
    let proxy_bin = bin("remora-proxy");
    client
        .run_ok(
            &proxy_bin.to_string_lossy(),
            ["wait-ready", "--timeout", "60s"],
        )
        .await;
    let clusters = ["v1", "v2"].map(|v| cluster_name("reviews", "default", v));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dump = client
            .run_ok(
                "curl",
                [
                    "-sS",
                    "--max-time",
                    "5",
                    "http://127.0.0.1:15000/config_dump",
                ],
            )
            .await;
        let dump: serde_json::Value = serde_json::from_str(&dump).expect("config_dump JSON");
        if clusters.iter().all(|c| endpoints_in(&dump, c).len() == 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client sidecar never had both endpoints: {dump}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The app: plain curl, by name and port, 1000 requests on one keep-alive
    // connection, while the client pod's link is recorded.
    let pcap = net.files().join("productpage.pcap");
    let mut tcpdump = net.capture_link(&client, &pcap).await;
    let out = client
        .run_ok(
            "curl",
            [
                "-4",
                "-sS",
                "--max-time",
                "300",
                "-w",
                "%{http_code}\\n",
                "http://reviews:9080/version?n=[1-1000]",
            ],
        )
        .await;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let mut lines = out.lines();
    while let (Some(body), Some(code)) = (lines.next(), lines.next()) {
        *counts.entry(body.trim().to_owned()).or_default() += 1;
        *codes.entry(code.trim().to_owned()).or_default() += 1;
    }
    println!(
        "captured canary: curl http://reviews:9080/ x1000: {counts:?}, status codes {codes:?}"
    );
    assert_eq!(codes.get("200"), Some(&1000), "{codes:?}\n{out}");
    assert_eq!(
        (counts.get("v1").copied(), counts.get("v2").copied()),
        (Some(900), Some(100)),
        "{counts:?}"
    );

    // IPv6: the same name over the pod's IPv6 address, captured as well.
    let v6 = client
        .run_ok(
            "curl",
            [
                "-6",
                "-sS",
                "--max-time",
                "60",
                "-w",
                "%{http_code}\\n",
                "http://reviews:9080/version?n=[1-10]",
            ],
        )
        .await;
    let v6_ok = v6.lines().filter(|l| l.trim() == "200").count();
    assert_eq!(v6_ok, 10, "over IPv6: {v6}");

    // Nothing on the wire between the pods is plaintext HTTP.
    let status = tcpdump.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some(), "tcpdump did not stop");
    let wire = std::fs::read(&pcap).expect("the capture file");
    let has = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
    println!(
        "captured canary: {} bytes recorded on the client pod's link",
        wire.len()
    );
    assert!(
        wire.len() > 50_000,
        "too little traffic recorded: {} bytes",
        wire.len()
    );
    for plaintext in [
        &b"GET /version"[..],
        b"HTTP/1.1 200",
        b"x-remora-demo-version",
    ] {
        assert!(
            !has(plaintext),
            "plaintext {:?} on the wire between the sidecars",
            String::from_utf8_lossy(plaintext)
        );
    }

    // Every one of them crossed between the sidecars over mTLS.
    let metrics = client
        .run_ok(
            "curl",
            [
                "-sS",
                "--max-time",
                "5",
                "http://127.0.0.1:15090/stats/prometheus",
            ],
        )
        .await;
    let samples = remora_e2e::mesh::parse_samples(&metrics).expect("metrics");
    let outbound = |mtls: &str| -> f64 {
        samples
            .iter()
            .filter(|(k, _)| {
                k.starts_with("remora_requests_total{")
                    && k.contains("direction=\"outbound\"")
                    && k.contains(&format!("mtls=\"{mtls}\""))
            })
            .map(|(_, v)| v)
            // Not `sum()`: an empty float sum is -0, printed "-0".
            .fold(0.0, |sum, v| sum + v)
    };
    println!(
        "captured canary: outbound requests with mTLS {}, without {}",
        outbound("true"),
        outbound("false")
    );
    assert_eq!(outbound("true"), 1010.0, "{metrics}");
    assert_eq!(outbound("false"), 0.0, "{metrics}");
}

/// Counts, per distinct answer, the bodies of `n` plain curls of `url` from
/// `pod` as its app (captured), each on a connection of its own.
async fn answers(
    pod: &Pod,
    url: &str,
    n: usize,
    extra: &[&str],
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let mut args = vec!["-sS", "-g", "--max-time", CURL_TIMEOUT_SECS];
        args.extend_from_slice(extra);
        args.push(url);
        let out = pod.run(User::Root, "curl", &args).await;
        let body = if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            format!(
                "curl failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        };
        *seen.entry(body).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_http_over_mtls_reaches_the_app_on_the_port_its_caller_called() {
    if netns::skip("inbound_http_over_mtls_reaches_the_app_on_the_port_its_caller_called") {
        return;
    }
    let net = Network::create();
    let cp = PodControlPlane::start(&net, &[("strict.yaml", MESH_STRICT.to_owned())]).await;

    // One app serving two ports to the pod's network; its sidecar's
    // `--app` names the first. A third port it keeps on loopback, private
    // to the pod (an admin or debug port, say).
    let server = net.pod("reviews");
    init(&server, &[]).await;
    serve(&server, "127.0.0.1:9080", "app on 9080").await;
    serve(&server, "0.0.0.0:9090", "app on 9090").await;
    serve(&server, "127.0.0.1:9091", "private 9091").await;
    let _server_proxy = sidecar(&server, &cp, "reviews", &["--app", "127.0.0.1:9080"]).await;

    let client = net.pod("productpage");
    client.set_hosts(&[("reviews", "10.88.0.251".parse().expect("ip"))]);
    init(&client, &[]).await;
    let _client_proxy = sidecar(&client, &cp, "productpage", &["--no-inbound"]).await;
    wait_for_endpoints(&client, &[cluster_name("reviews", "default", "")]).await;

    // A plain curl by name on each port: each port's server sees its own
    // requests, across the mTLS hop (STRICT: nothing else gets through).
    let n = 5;
    for port in [9080, 9090] {
        let seen = answers(&client, &format!("http://reviews:{port}/"), n, &[]).await;
        println!("two app ports: curl http://reviews:{port}/ x{n}: {seen:?}");
        assert_eq!(
            seen,
            [(format!("app on {port}"), n)].into_iter().collect(),
            "port {port}"
        );
    }

    // A port the app keeps on loopback is not reached through the
    // sidecar, by a mesh peer over mTLS (the server's sidecar dials the
    // pod address, as the caller did) nor by a captured plaintext client
    // (below): what the mesh exposes is what the app binds.
    let private = answers(&client, "http://reviews:9091/", 1, &[]).await;
    println!("a loopback-only port through the mesh: {private:?}");
    assert!(
        private.keys().all(|body| !body.contains("private")),
        "a mesh peer reached the app's loopback-only listener: {private:?}"
    );

    // The app cannot choose the port: the header that carries it between
    // sidecars is replaced by the client's sidecar...
    let seen = answers(
        &client,
        "http://reviews:9080/",
        2,
        &["-H", "remora-dst-port: 9090"],
    )
    .await;
    assert_eq!(seen, [("app on 9080".to_owned(), 2)].into_iter().collect());
    // ...and believed by the server's sidecar only from an mTLS peer: a
    // plaintext client (PERMISSIVE on the sidecar's own port) gets `--app`.
    // A pod outside the mesh: plaintext, no identity.
    let permissive = net.pod("plain");
    let mesh_config = cp._config.path().join("strict.yaml");
    std::fs::write(&mesh_config, MESH_STRICT.replace("STRICT", "PERMISSIVE"))
        .expect("rewrite the PeerAuthentication");
    let url = format!("http://{}:15006/", server.ipv4);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = curl(&permissive, User::Root, &url).await;
        if got.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PERMISSIVE never applied: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let forged = permissive
        .run(
            User::Root,
            "curl",
            [
                "-sS",
                "--max-time",
                CURL_TIMEOUT_SECS,
                "-H",
                "remora-dst-port: 9090",
                "-H",
                "host: reviews",
                &url,
            ],
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&forged.stdout),
        "app on 9080",
        "{}",
        String::from_utf8_lossy(&forged.stderr)
    );
    // Captured from outside (PERMISSIVE lets plaintext in): the port the
    // app serves to the pod's network answers, the loopback one does not.
    let served = curl(
        &permissive,
        User::Root,
        &format!("http://{}:9090/", server.ipv4),
    )
    .await;
    assert_eq!(served, Ok("app on 9090".to_owned()));
    let private = curl(
        &permissive,
        User::Root,
        &format!("http://{}:9091/", server.ipv4),
    )
    .await;
    assert!(
        !private.as_deref().unwrap_or_default().contains("private"),
        "a captured client reached the app's loopback-only listener: {private:?}"
    );
}

// The sidecar's lifecycle: wait-ready, the drain on SIGTERM, /quitquitquit.
// These run on loopback: they are about the proxy, not the rules.

mod lifecycle {
    use std::time::{Duration, Instant};

    use http::{Method, Request, header};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use remora_e2e::discovery::cluster_name;
    use remora_e2e::load::failures;
    use remora_e2e::mesh::ControlPlane;
    use remora_e2e::{
        Backend, EVENT_TIMEOUT, HttpClient, Load, Mesh, Process, Protocol, Proxy, ProxySpec, bin,
        yaml,
    };

    /// `remora-proxy wait-ready args...` run to completion: exit code and
    /// stderr.
    async fn wait_ready(args: &[&str]) -> (Option<i32>, String) {
        let out = tokio::process::Command::new(bin("remora-proxy"))
            .arg("wait-ready")
            .args(args)
            .output()
            .await
            .expect("run wait-ready");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn wait_ready_blocks_until_the_proxy_is_ready() {
        // Nothing listens: it gives up after its timeout, with the reason.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (code, stderr) =
            wait_ready(&["--health-addr", &free.to_string(), "--timeout", "1s"]).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: the proxy at") && stderr.contains("cannot connect"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");

        // A proxy whose control plane is not there yet is not ready. The
        // port is picked now and bound later: on an address of its own
        // (127.0.3.7), so that no other test's `127.0.0.1:0` takes it
        // meanwhile.
        let cp_addr = std::net::TcpListener::bind("127.0.3.7:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let proxy = Proxy::start(
            &ProxySpec::client("productpage"),
            &format!("http://{cp_addr}"),
        )
        .await;
        let health = proxy.health.to_string();
        let mut waiting = Process::spawn(
            "wait-ready",
            &bin("remora-proxy"),
            ["wait-ready", "--health-addr", &health, "--timeout", "60s"],
        );
        let (code, stderr) = wait_ready(&["--health-addr", &health, "--timeout", "1s"]).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("503") && stderr.contains("no config from the control plane yet"),
            "{stderr}"
        );
        assert!(
            waiting.wait_exit(Duration::from_millis(10)).await.is_none(),
            "wait-ready returned before the proxy was ready"
        );

        // The control plane comes: the proxy gets its config, and only then
        // does the waiting wait-ready return, with 0.
        let dir = tempfile::tempdir().expect("temp dir");
        let _control_plane = ControlPlane::start(dir.path(), cp_addr).await;
        let status = waiting
            .wait_exit(Duration::from_secs(30))
            .await
            .expect("wait-ready exits once the proxy is ready");
        assert!(status.success(), "{status:?}: {}", waiting.stderr_tail());
        assert_eq!(proxy.health().await.expect("health").0, 200);
    }

    /// Sends `GET path` to `addr` over a new HTTP/2 connection; returns the
    /// status and a handle that finishes when the connection closes.
    async fn h2_request(
        addr: std::net::SocketAddr,
        path: &str,
    ) -> (
        tokio::task::JoinHandle<http::StatusCode>,
        tokio::task::JoinHandle<()>,
    ) {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
                TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .expect("h2 handshake");
        let closed = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(format!("http://reviews{path}"))
            .version(http::Version::HTTP_2)
            .body(Empty::new())
            .expect("request");
        let response = tokio::spawn(async move {
            let resp = sender.send_request(req).await.expect("h2 response");
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            status
        });
        (response, closed)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sigterm_under_load_fails_no_request_and_outbound_serves_through_the_drain() {
        let mesh = Mesh::start(&[("reviews-vs.yaml", &yaml::virtual_service("reviews", ""))]).await;
        let (b1, b2) = (Backend::start("one").await, Backend::start("two").await);
        let spec = |version: &str, app| {
            ProxySpec::sidecar("reviews", version, app).arg("--drain-duration", "3s")
        };
        let mut one = mesh.proxy(&spec("v1", b1.addr)).await;
        let _two = mesh.proxy(&spec("v2", b2.addr)).await;
        let mut client = mesh
            .proxy(&ProxySpec::client("productpage").arg("--drain-duration", "3s"))
            .await;
        client
            .wait_endpoints(&cluster_name("reviews", "default", ""), 2, EVENT_TIMEOUT)
            .await;

        // Steady load through the client's sidecar; every answer takes 20 ms
        // at the app, so requests are always in flight.
        let load = Load::start(
            client.outbound,
            "reviews",
            "/delay/20",
            8,
            Duration::from_secs(60),
        );
        load.wait_more(200, Duration::from_secs(20)).await;

        // Requests in flight at `one`'s inbound when it is told to stop, on
        // HTTP/1.1 and HTTP/2 connections of their own.
        let inbound = one.inbound.expect("sidecar inbound");
        let slow_h1 = tokio::spawn(async move {
            let mut c = HttpClient::new(inbound, Protocol::Http1);
            c.get("reviews", "/delay/1000", &[]).await
        });
        let (slow_h2, h2_closed) = h2_request(inbound, "/delay/1000").await;
        let hits = b1.hits();
        while b1.hits() < hits + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let terminated = Instant::now();
        assert!(one.process.terminate(Duration::ZERO).await.is_none());
        one.process.wait_event("draining", EVENT_TIMEOUT).await;
        // At once, while its requests are still in flight, the inbound port
        // refuses new connections (a closed listener, not a full backlog).
        // The event is printed as the listener task is told to close: allow
        // it a moment (well within the 1 s the slow requests take).
        let refused_by = Instant::now() + Duration::from_millis(500);
        while tokio::net::TcpStream::connect(inbound).await.is_ok() {
            assert!(
                Instant::now() < refused_by,
                "a draining inbound listener accepts new connections"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The requests in flight finish.
        let h1 = slow_h1
            .await
            .expect("task")
            .expect("in-flight HTTP/1.1 request");
        assert_eq!(h1.status, 200, "{}", h1.body);
        assert_eq!(
            h1.headers.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "the in-flight HTTP/1.1 response closes its connection: {:?}",
            h1.headers
        );
        assert_eq!(slow_h2.await.expect("task"), 200, "in-flight h2 request");
        tokio::time::timeout(Duration::from_secs(5), h2_closed)
            .await
            .expect("the h2 connection is closed (GOAWAY) once its stream is done")
            .expect("task");
        let status = one
            .process
            .wait_exit(Duration::from_secs(20))
            .await
            .expect("the sidecar exits when its drain ends");
        assert!(status.success(), "{status:?}");
        load.wait_more(200, Duration::from_secs(20)).await;

        // The client's own drain: the app's calls keep working until it ends,
        // on its open connections and on new ones.
        let client_terminated = Instant::now();
        assert!(client.process.terminate(Duration::ZERO).await.is_none());
        client.process.wait_event("draining", EVENT_TIMEOUT).await;
        load.wait_more(100, Duration::from_secs(20)).await;
        let mut fresh = HttpClient::new(client.outbound, Protocol::Http1);
        let reply = fresh
            .get("reviews", "/", &[])
            .await
            .expect("a new connection during the drain");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let samples = load.stop().await;
        let status = client
            .process
            .wait_exit(Duration::from_secs(20))
            .await
            .expect("the client's sidecar exits when its drain ends");
        assert!(status.success(), "{status:?}");

        let in_flight = samples
            .iter()
            .filter(|s| s.started < terminated && s.finished > terminated)
            .count();
        let during_client_drain = samples
            .iter()
            .filter(|s| s.started > client_terminated)
            .count();
        let failed = failures(&samples);
        println!(
            "drain under load: {} requests, {} failed; {in_flight} in flight at the sidecar's SIGTERM; \
             {during_client_drain} sent through the client sidecar during its drain",
            samples.len(),
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{} of {} requests failed, e.g. {:?}",
            failed.len(),
            samples.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(in_flight > 0, "no request was in flight at SIGTERM");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn quitquitquit_drains_and_ends_the_proxy() {
        let mesh = Mesh::start(&[]).await;
        let mut proxy = mesh
            .proxy(&ProxySpec::client("job").arg("--drain-duration", "200ms"))
            .await;
        let mut admin = HttpClient::new(proxy.admin, Protocol::Http1);
        let get = admin
            .get("admin", "/quitquitquit", &[])
            .await
            .unwrap_or_else(|e| panic!("GET /quitquitquit: {e:#}"));
        assert_eq!(get.status, 405, "{}", get.body);
        let post = admin
            .request(Method::POST, "admin", "/quitquitquit", &[])
            .await
            .unwrap_or_else(|e| panic!("POST /quitquitquit: {e:#}"));
        assert_eq!(post.status, 200, "{}", post.body);
        let ev = proxy.process.wait_event("draining", EVENT_TIMEOUT).await;
        assert_eq!(ev["cause"], "/quitquitquit", "{ev}");
        let status = proxy.process.wait_exit(Duration::from_secs(20)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "the proxy should exit 0 after /quitquitquit: {status:?}\nevents: {:?}\nstderr tail:\n{}",
            proxy.process.events_since(0),
            proxy.process.stderr_tail()
        );
    }
}

// ------------------------------------------------------------ opaque TCP
//
// Captured connections that are not HTTP: a real Redis reached with its own
// client through both sidecars (mTLS between them), server-first banners
// within the detection bound, PeerAuthentication STRICT and an
// AuthorizationPolicy on `ports` applied to TCP, and destinations outside
// the mesh under ALLOW_ANY and REGISTRY_ONLY.

/// STRICT mesh-wide: plaintext (HTTP or TCP) from outside the mesh is refused.
const MESH_STRICT: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
";

/// Denies port 2526 of every workload in `default`: the same peer may use
/// the workload's other ports.
const DENY_PORT_2526: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-2526, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {ports: [\"2526\"]}}]
";

/// How long the tests wait for a TCP exchange (far above the detection
/// bound; a stall like linkerd2-proxy's 10 s shows as a failure).
const TCP_WAIT: Duration = Duration::from_secs(5);

/// A server-first protocol on `listener`: every client gets `banner` at
/// once, before saying anything; what it sends then is echoed.
fn banner_server(listener: TcpListener, banner: &'static [u8]) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream.write_all(banner).await.is_err() {
                    return;
                }
                let (mut r, mut w) = stream.split();
                let _ =
                    tokio::time::timeout(Duration::from_secs(30), tokio::io::copy(&mut r, &mut w))
                        .await;
            });
        }
    });
}

/// Connects from `pod` (as its app: captured) to `addr`, says nothing, and
/// reads the first bytes that come (none if the connection is closed);
/// returns them and the time from `connect` to their arrival.
async fn first_bytes(pod: &Pod, addr: SocketAddr) -> (Vec<u8>, Duration) {
    let started = std::time::Instant::now();
    let mut stream = pod
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("[{}] connect {addr}: {e}", pod.name));
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(TCP_WAIT, stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("[{}] nothing from {addr} within {TCP_WAIT:?}", pod.name))
        .unwrap_or(0);
    buf.truncate(n);
    (buf, started.elapsed())
}

/// `sh -c script` in `pod` as root: stdout, trimmed; panics on failure.
async fn sh(pod: &Pod, script: &str) -> String {
    pod.run_ok("sh", ["-c", script]).await.trim().to_owned()
}

/// The sum of the series of `name` in Prometheus text `metrics` whose
/// labels include every one of `labels` (`key="value"`).
fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The sidecar's metrics in `pod` (its stats port on loopback).
async fn sidecar_metrics(pod: &Pod) -> String {
    pod.run_ok(
        "curl",
        [
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:15090/stats/prometheus",
        ],
    )
    .await
}

/// Waits until the sidecar in `pod` has one endpoint in each of `clusters`.
async fn wait_for_endpoints(pod: &Pod, clusters: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dump = pod
            .run_ok(
                "curl",
                [
                    "-sS",
                    "--max-time",
                    "5",
                    "http://127.0.0.1:15000/config_dump",
                ],
            )
            .await;
        let dump: serde_json::Value = serde_json::from_str(&dump).expect("config_dump JSON");
        if clusters.iter().all(|c| endpoints_in(&dump, c).len() == 1) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "[{}] the sidecar never had the endpoints of {clusters:?}: {dump}",
            pod.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_redis_and_a_banner_go_through_capture_as_tcp_over_mtls_and_policy_applies() {
    if netns::skip("a_real_redis_and_a_banner_go_through_capture_as_tcp_over_mtls") {
        return;
    }
    let net = Network::create();
    let cp = PodControlPlane::start(
        &net,
        &[
            ("strict.yaml", MESH_STRICT.to_owned()),
            ("deny-2526.yaml", DENY_PORT_2526.to_owned()),
        ],
    )
    .await;

    // The redis pod: Debian's redis-server on loopback only (so that only
    // its sidecar can reach it), two banner servers, capture, the sidecar.
    let redis = net.pod("redis");
    init(&redis, &[]).await;
    let _redis_server = redis.spawn(
        "redis-server",
        User::Root,
        std::path::Path::new("redis-server"),
        [
            "--port",
            "6379",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while redis
        .run(User::Root, "redis-cli", ["-h", "127.0.0.1", "PING"])
        .await
        .stdout
        != b"PONG\n"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two served to the pod's network, one private to the pod.
    for (addr, banner) in [
        ("0.0.0.0:2525", &b"220 redis pod banner\r\n"[..]),
        ("0.0.0.0:2526", b"220 denied banner\r\n"),
        ("127.0.0.1:2527", b"220 private banner\r\n"),
    ] {
        let addr: SocketAddr = addr.parse().expect("address");
        banner_server(redis.bind(addr).await.expect("bind banner"), banner);
    }
    let _redis_proxy = sidecar(&redis, &cp, "redis", &["--app", "127.0.0.1:6379"]).await;

    // Outside the mesh: a banner and an HTTP server, no sidecar.
    let outside = net.pod("outside");
    banner_server(
        outside
            .bind("[::]:2525".parse().expect("addr"))
            .await
            .expect("bind"),
        b"220 outside banner\r\n",
    );
    serve(&outside, "[::]:8080", "outside 8080").await;

    // The client: an app whose `redis` is the redis pod's address.
    let client = net.pod("client");
    client.set_hosts(&[
        ("redis", redis.ipv4.into()),
        ("outside", outside.ipv4.into()),
    ]);
    init(&client, &[]).await;
    let _client_proxy = sidecar(&client, &cp, "client", &["--no-inbound"]).await;
    wait_for_endpoints(&client, &[cluster_name("redis", "default", "")]).await;

    // Redis with its own client, through both sidecars.
    assert_eq!(sh(&client, "redis-cli -h redis -p 6379 PING").await, "PONG");
    let value_len = 64 * 1024;
    assert_eq!(
        sh(
            &client,
            &format!("head -c {value_len} /dev/zero | tr '\\0' x | redis-cli -h redis -x SET big")
        )
        .await,
        "OK"
    );
    assert_eq!(
        sh(&client, "redis-cli -h redis STRLEN big").await,
        value_len.to_string()
    );
    let got = sh(&client, "redis-cli -h redis GET big | tr -d '\\n' | wc -c").await;
    assert_eq!(got, value_len.to_string());

    // The hop between the sidecars was mTLS: the client sidecar counted the
    // bytes as TCP to the redis service with mtls="true", and none without.
    let to_redis = [
        "direction=\"outbound\"",
        "destination_service=\"redis.default.svc.cluster.local\"",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (received, sent, metrics) = loop {
        let metrics = sidecar_metrics(&client).await;
        let mtls = [to_redis[0], to_redis[1], "mtls=\"true\""];
        let received = metric_sum(&metrics, "remora_tcp_received_bytes_total", &mtls);
        let sent = metric_sum(&metrics, "remora_tcp_sent_bytes_total", &mtls);
        if received >= value_len && sent >= value_len {
            break (received, sent, metrics);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client sidecar did not count the Redis bytes over mTLS:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let plaintext = [to_redis[0], to_redis[1], "mtls=\"false\""];
    assert_eq!(
        metric_sum(&metrics, "remora_tcp_connections_opened_total", &plaintext),
        0,
        "{metrics}"
    );
    eprintln!(
        "Redis through capture over mTLS: {received} bytes from the app, {sent} bytes to it \
         (client sidecar, remora_tcp_*_bytes_total)"
    );

    // Server-first banners within the detection bound: through the tunnel
    // to the redis pod, and straight out to a pod outside the mesh.
    let (banner, mesh_delay) = first_bytes(&client, SocketAddr::from((redis.ipv4, 2525))).await;
    assert_eq!(banner, b"220 redis pod banner\r\n");
    let (banner, outside_delay) =
        first_bytes(&client, SocketAddr::from((outside.ipv4, 2525))).await;
    assert_eq!(banner, b"220 outside banner\r\n");
    eprintln!(
        "server-first banner delay: {mesh_delay:?} through the mTLS tunnel, \
         {outside_delay:?} to a pod outside the mesh (detection bound 100 ms)"
    );

    // HTTP to a host outside the mesh passes under ALLOW_ANY.
    assert_eq!(
        curl(&client, User::Root, "http://outside:8080/").await,
        Ok("outside 8080".to_owned())
    );

    // AuthorizationPolicy `ports` applies to TCP: 2526 is denied, from the
    // same peer that reached 2525 and 6379.
    let (denied, _) = first_bytes(&client, SocketAddr::from((redis.ipv4, 2526))).await;
    assert_eq!(
        denied, b"",
        "a DENY on port 2526 let a TCP connection through"
    );

    // A tunnel reaches the app at the pod address the peer dialled, not
    // at loopback: a listener the app keeps private stays private.
    let (private, _) = first_bytes(&client, SocketAddr::from((redis.ipv4, 2527))).await;
    assert_eq!(
        private, b"",
        "a TCP tunnel reached the app's loopback-only listener"
    );

    // STRICT refuses plaintext TCP: a client outside the mesh reaches the
    // redis pod's port 6379 only as far as its sidecar.
    let mut plain = outside
        .connect(SocketAddr::from((redis.ipv4, 6379)))
        .await
        .expect("connect");
    let _ = plain.write_all(b"*1\r\n$4\r\nPING\r\n").await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut reply)).await;
    assert!(
        !String::from_utf8_lossy(&reply).contains("PONG"),
        "STRICT let plaintext TCP reach Redis: {reply:?}"
    );
}

/// Sends `probe` on `stream` and reads it back (the banner servers echo).
async fn echoes(stream: &mut tokio::net::TcpStream, probe: &[u8]) -> bool {
    if stream.write_all(probe).await.is_err() {
        return false;
    }
    let mut back = vec![0u8; probe.len()];
    matches!(
        tokio::time::timeout(TCP_WAIT, stream.read_exact(&mut back)).await,
        Ok(Ok(_)) if back == probe
    )
}

/// Reads `stream` until it ends (within a generous bound): whether it
/// ended, rather than staying open.
async fn ends(stream: &mut tokio::net::TcpStream) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// An empty file every uid may append to, for a sidecar's access log.
fn access_log_file(net: &Network, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = net.write_file(name, "");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    path
}

/// The TCP lines of a JSON access log, as JSON.
fn tcp_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("access log")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["protocol"] == "TCP")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_connections_carry_on_through_the_drain_and_close_at_its_end_over_ipv4_and_ipv6() {
    if netns::skip("tcp_connections_carry_on_through_the_drain") {
        return;
    }
    let net = Network::create();
    let cp = PodControlPlane::start(&net, &[]).await;
    let drain = [
        "--drain-duration",
        "4s",
        "--access-log",
        "json",
        "--access-log-path",
    ];

    // A server-first (banner, then echo) app behind a sidecar...
    let server = net.pod("smtp");
    init(&server, &[]).await;
    banner_server(
        server
            .bind("127.0.0.1:2525".parse().expect("addr"))
            .await
            .expect("bind"),
        b"220 smtp pod\r\n",
    );
    let server_log = access_log_file(&net, "smtp-access.log");
    let mut server_args = drain.to_vec();
    let server_log_arg = server_log.to_string_lossy().into_owned();
    server_args.extend([server_log_arg.as_str(), "--app", "127.0.0.1:2525"]);
    let mut server_proxy = sidecar(&server, &cp, "smtp", &server_args).await;

    // ...and one outside the mesh, over IPv4 and IPv6.
    let outside = net.pod("outside");
    banner_server(
        outside
            .bind("[::]:2525".parse().expect("addr"))
            .await
            .expect("bind"),
        b"220 outside\r\n",
    );

    let client = net.pod("client");
    init(&client, &[]).await;
    let client_log = access_log_file(&net, "client-access.log");
    let client_log_arg = client_log.to_string_lossy().into_owned();
    let mut client_args = drain.to_vec();
    client_args.extend([client_log_arg.as_str(), "--no-inbound"]);
    let mut client_proxy = sidecar(&client, &cp, "client", &client_args).await;
    wait_for_endpoints(&client, &[cluster_name("smtp", "default", "")]).await;

    // Three connections open through the client's sidecar: tunnelled over
    // mTLS to the mesh pod, and plain to the pod outside, by IPv4 and IPv6.
    let open = |addr: SocketAddr, banner: &'static [u8]| {
        let client = &client;
        async move {
            let mut stream = client.connect(addr).await.expect("connect");
            let mut got = vec![0u8; banner.len()];
            tokio::time::timeout(TCP_WAIT, stream.read_exact(&mut got))
                .await
                .unwrap_or_else(|_| panic!("no banner from {addr}"))
                .unwrap_or_else(|e| panic!("banner from {addr}: {e}"));
            assert_eq!(got, banner, "{addr}");
            stream
        }
    };
    let in_mesh = SocketAddr::from((server.ipv4, 2525));
    let outside_v4 = SocketAddr::from((outside.ipv4, 2525));
    let outside_v6 = SocketAddr::from((outside.ipv6, 2525));
    let mut tunnelled = open(in_mesh, b"220 smtp pod\r\n").await;
    let mut plain_v4 = open(outside_v4, b"220 outside\r\n").await;
    let mut plain_v6 = open(outside_v6, b"220 outside\r\n").await;

    // IPv6 TCP went through the sidecar (captured), as IPv4 did.
    let metrics = sidecar_metrics(&client).await;
    let passthrough = [
        "direction=\"outbound\"",
        "destination_service=\"PassthroughCluster\"",
    ];
    assert_eq!(
        metric_sum(
            &metrics,
            "remora_tcp_connections_opened_total",
            &passthrough
        ),
        2,
        "{metrics}"
    );
    let outside_hosts = [
        ("outside", outside.ipv4.into()),
        ("outside6", outside.ipv6.into()),
    ];
    client.set_hosts(&outside_hosts);
    serve(&outside, "[::]:8080", "outside 8080").await;
    assert_eq!(
        curl(&client, User::Root, "http://outside6:8080/").await,
        Ok("outside 8080".to_owned()),
        "HTTP over IPv6 to a host outside the mesh"
    );
    let metrics = sidecar_metrics(&client).await;
    assert_eq!(
        metric_sum(&metrics, "remora_requests_total", &passthrough),
        1,
        "the IPv6 HTTP call went through the sidecar: {metrics}"
    );

    // The server's sidecar drains: its tunnel carries on, a new connection
    // is refused, and when the drain ends the tunnel is closed.
    assert!(server_proxy.terminate(Duration::ZERO).await.is_none());
    server_proxy
        .wait_event("draining", Duration::from_secs(30))
        .await;
    assert!(echoes(&mut tunnelled, b"during the server's drain\n").await);
    let (refused, _) = first_bytes(&client, in_mesh).await;
    assert_eq!(refused, b"", "a draining sidecar took a new TCP connection");
    assert!(echoes(&mut tunnelled, b"still there\n").await);
    let status = server_proxy.wait_exit(Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        ends(&mut tunnelled).await,
        "the tunnel outlived the server's drain"
    );
    let inbound: Vec<_> = tcp_lines(&server_log)
        .into_iter()
        .filter(|l| l["direction"] == "inbound" && l["bytes_received"].as_u64() > Some(0))
        .collect();
    assert_eq!(
        inbound.len(),
        1,
        "the drained tunnel was closed and logged: {inbound:?}"
    );

    // The client's sidecar drains: its open connections, both families,
    // carry on until the end, and are then closed and logged.
    assert!(client_proxy.terminate(Duration::ZERO).await.is_none());
    client_proxy
        .wait_event("draining", Duration::from_secs(30))
        .await;
    for stream in [&mut plain_v4, &mut plain_v6] {
        assert!(echoes(stream, b"during the client's drain\n").await);
    }
    let status = client_proxy.wait_exit(Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    for stream in [&mut plain_v4, &mut plain_v6] {
        assert!(
            ends(stream).await,
            "a connection outlived the client's drain"
        );
    }
    let drained: Vec<_> = tcp_lines(&client_log)
        .into_iter()
        .filter(|l| {
            l["upstream_cluster"] == "PassthroughCluster" && l["bytes_sent"].as_u64() > Some(0)
        })
        .collect();
    println!("TCP drain: client access log, PassthroughCluster: {drained:?}");
    assert_eq!(drained.len(), 2, "both were closed and logged: {drained:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_only_refuses_a_destination_outside_the_mesh_with_502_and_closes_tcp() {
    if netns::skip("registry_only_refuses_a_destination_outside_the_mesh") {
        return;
    }
    let net = Network::create();
    let cp =
        PodControlPlane::start_with(&net, &[], &["--outbound-traffic-policy", "REGISTRY_ONLY"])
            .await;
    let outside = net.pod("outside");
    serve(&outside, "[::]:8080", "outside 8080").await;
    banner_server(
        outside
            .bind("[::]:2525".parse().expect("addr"))
            .await
            .expect("bind"),
        b"220 outside banner\r\n",
    );
    let client = net.pod("client");
    client.set_hosts(&[("outside", outside.ipv4.into())]);
    init(&client, &[]).await;
    let _proxy = sidecar(&client, &cp, "client", &["--no-inbound"]).await;

    // HTTP: 502 with the reason, and the server never sees the request.
    let out = client
        .run(
            User::Root,
            "curl",
            [
                "-sS",
                "--max-time",
                CURL_TIMEOUT_SECS,
                "-w",
                "\n%{http_code}",
                "http://outside:8080/",
            ],
        )
        .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("\n502"), "{text}");
    assert!(
        text.contains("REGISTRY_ONLY") && text.contains(&format!("{}:8080", outside.ipv4)),
        "{text}"
    );
    // TCP: closed without a byte.
    let (banner, _) = first_bytes(&client, SocketAddr::from((outside.ipv4, 2525))).await;
    assert_eq!(banner, b"", "REGISTRY_ONLY let TCP out of the mesh");
    // The proxy's own uid is not captured: the destination itself is up.
    assert_eq!(
        curl(&client, User::Uid(netns::PROXY_UID), "http://outside:8080/").await,
        Ok("outside 8080".to_owned())
    );
}

/// Issue 15, D5: opaque TCP with nothing moving either way is closed at
/// `--tcp-idle-timeout` (counted as `timeout="tcp_idle"`), while a
/// connection that keeps talking for longer than the timeout lives on.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_tcp_connection_is_closed_at_tcp_idle_timeout_and_a_busy_one_is_not() {
    if netns::skip("an_idle_tcp_connection_is_closed_at_tcp_idle_timeout") {
        return;
    }
    let net = Network::create();
    let cp = PodControlPlane::start(&net, &[]).await;
    let outside = net.pod("outside");
    banner_server(
        outside
            .bind("0.0.0.0:2525".parse().expect("addr"))
            .await
            .expect("bind"),
        b"220 outside\r\n",
    );
    let client = net.pod("client");
    init(&client, &[]).await;
    let _proxy = sidecar(
        &client,
        &cp,
        "client",
        &["--tcp-idle-timeout", "2s", "--no-inbound"],
    )
    .await;

    let addr = SocketAddr::from((outside.ipv4, 2525));
    let open = || async {
        let mut stream = client.connect(addr).await.expect("connect");
        let mut banner = [0u8; 13];
        tokio::time::timeout(TCP_WAIT, stream.read_exact(&mut banner))
            .await
            .expect("no banner")
            .expect("banner");
        assert_eq!(&banner, b"220 outside\r\n");
        stream
    };
    let mut idle = open().await;
    let mut busy = open().await;

    // The busy one talks every 500 ms for 5 s, two and a half timeouts.
    for i in 0..10 {
        assert!(
            echoes(&mut busy, format!("ping {i}\n").as_bytes()).await,
            "a connection that kept talking was closed after {i} echoes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The idle one is gone by then (the test server itself would hold it
    // for 30 s, so only the sidecar can have closed it so soon).
    let mut sink = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut sink)).await;
    assert!(
        ended.is_ok(),
        "an idle TCP connection outlived --tcp-idle-timeout 2s"
    );
    let metrics = sidecar_metrics(&client).await;
    assert!(
        metric_sum(
            &metrics,
            "remora_downstream_cx_timeout_total",
            &["timeout=\"tcp_idle\""]
        ) >= 1,
        "{metrics}"
    );
    assert!(echoes(&mut busy, b"still here\n").await);
}
