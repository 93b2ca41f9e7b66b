//! The `Sidecar` resource (issue 20): a proxy is told only about the
//! services its Sidecar's `egress` names, chosen by `workloadSelector` over
//! the namespace's default; a host outside its scope is, to it, outside the
//! mesh. Changing or removing the Sidecar changes the scope at run time.

use std::time::Duration;

use remora_e2e::{Backend, Mesh, Protocol, Proxy, ProxySpec, bin};
use serde_json::Value;

const SCOPE: &str = "
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector:
    labels: {app: productpage}
  egress:
  - hosts: [\"./reviews.default.svc.cluster.local\"]
";

const WAIT: Duration = Duration::from_secs(30);

fn hosts(dump: &Value) -> Vec<String> {
    dump["snapshot"]["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

async fn status(proxy: &Proxy, host: &str) -> u16 {
    let mut client = proxy.client(Protocol::Http1);
    client
        .get(host, "/", &[])
        .await
        .expect("request")
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_gets_only_the_services_its_sidecar_names_and_the_scope_follows_the_file() {
    let mesh = Mesh::start(&[("sidecar.yaml", SCOPE)]).await;
    let reviews_app = Backend::start("reviews").await;
    let ratings_app = Backend::start("ratings").await;
    let _reviews = mesh
        .proxy(&ProxySpec::sidecar("reviews", "v1", reviews_app.addr))
        .await;
    let _ratings = mesh
        .proxy(&ProxySpec::sidecar("ratings", "v1", ratings_app.addr))
        .await;
    let mut spec = ProxySpec::client("productpage");
    spec.labels.push(("app".into(), "productpage".into()));
    let productpage = mesh.proxy(&spec).await;
    let other = mesh.proxy(&ProxySpec::client("details")).await;

    // Selected by its labels: reviews only. The proxy without them: all.
    productpage
        .wait_config("reviews only", WAIT, |d| {
            hosts(d) == ["reviews.default.svc.cluster.local"]
        })
        .await;
    other
        .wait_config("every service", WAIT, |d| {
            hosts(d)
                == [
                    "ratings.default.svc.cluster.local",
                    "reviews.default.svc.cluster.local",
                ]
        })
        .await;
    assert_eq!(status(&productpage, "reviews").await, 200);
    let ratings_hits = ratings_app.hits();
    assert_eq!(
        status(&productpage, "ratings").await,
        404,
        "ratings is outside productpage's scope: no route"
    );
    assert_eq!(ratings_app.hits(), ratings_hits, "never forwarded");
    assert_eq!(status(&other, "ratings").await, 200);

    // The scope widens with the file, at run time.
    mesh.write_file(
        "sidecar.yaml",
        &SCOPE.replace(
            "[\"./reviews.default.svc.cluster.local\"]",
            "[\"./reviews.default.svc.cluster.local\", \"./ratings.default.svc.cluster.local\"]",
        ),
    );
    productpage
        .wait_config("reviews and ratings", WAIT, |d| {
            hosts(d)
                == [
                    "ratings.default.svc.cluster.local",
                    "reviews.default.svc.cluster.local",
                ]
        })
        .await;
    assert_eq!(status(&productpage, "ratings").await, 200);
    assert!(ratings_app.hits() > ratings_hits);
}

/// `remora validate` names the file, line, resource and field of each
/// mistake in a Sidecar, and the second default of a namespace.
#[test]
fn validate_names_each_mistake_in_a_sidecar() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sidecars.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: pp, namespace: shop}
spec:
  egress:
  - hosts: [\"shop/reviews\"]
  ingress: []
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a, namespace: shop}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b, namespace: shop}
spec: {}
",
    )
    .expect("write");
    let out = std::process::Command::new(bin("remora"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("run remora validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let at = |line: usize| format!("{}:{line}: error: ", file.display());
    for expected in [
        format!(
            "{}Sidecar shop/pp: spec.egress[0].hosts[0]: egress host `shop/reviews`: `reviews` is \
             a short name; Istio matches the fully qualified name (e.g. \
             `shop/reviews.shop.svc.cluster.local`)",
            at(6)
        ),
        format!(
            "{}Sidecar shop/pp: spec.ingress: `ingress` is not supported by Remora yet",
            at(7)
        ),
        format!(
            "{}Sidecar shop/b: spec.workloadSelector: Sidecar shop/b and Sidecar shop/a ({}:9) \
             are both the default Sidecar of namespace `shop`",
            at(14),
            file.display()
        ),
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&expected)),
            "expected a line starting {expected:?}; got:\n{stdout}"
        );
    }
}
