//! A Host that carries a port routes only when the service declares that
//! port (issue 18, section 3): `httpbin:9999` when the ServiceEntry
//! declares only port 80 is 404 (no route), as in Istio, and never reaches
//! the backend; `httpbin:80` and a bare `httpbin` route.

use remora_e2e::{Direct, ProxySpec};

const HOST: &str = "httpbin";

#[tokio::test(flavor = "multi_thread")]
async fn a_host_port_the_service_does_not_declare_is_not_routed() {
    let direct = Direct::start(HOST, 1, &[], ProxySpec::client("client")).await;
    let mut http = direct.http();
    for host in ["httpbin", "httpbin:80", "HTTPBIN:80"] {
        let reply = http.get(host, "/", &[]).await.expect("request");
        assert_eq!(reply.status, 200, "Host {host}: {}", reply.body);
    }
    let hits = direct.backends[0].hits();
    let reply = http.get("httpbin:9999", "/", &[]).await.expect("request");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(
        reply.body.contains("httpbin:9999"),
        "the reason names the Host: {}",
        reply.body
    );
    assert_eq!(direct.backends[0].hits(), hits, "never forwarded");
}
