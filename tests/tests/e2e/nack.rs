//! A snapshot the proxy cannot apply is NACKed with the reason, the proxy
//! stays on its last good version, and the old routes keep serving.
//!
//! The control plane here is a scripted discovery server in the test, so it
//! can send snapshots `remora serve` would never produce.

use remora_e2e::discovery::{
    ScriptedDiscovery, cluster, cluster_name, route, snapshot, virtual_host,
};
use remora_e2e::{Backend, EVENT_TIMEOUT, HttpClient, Protocol, Proxy, ProxySpec};
use remora_proto::pb;

/// Sends `n` requests for `reviews` and asserts each one reached `expected`.
async fn assert_served_by(client: &mut HttpClient, expected: &str, n: usize) {
    for i in 0..n {
        let reply = client
            .get("reviews", "/", &[])
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, format!("{expected}\n").as_str()),
            "request {i}"
        );
    }
}

fn regex_uri(re: &str) -> pb::RouteMatch {
    pb::RouteMatch {
        uri: Some(pb::StringMatch {
            kind: Some(pb::string_match::Kind::Regex(re.to_owned())),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unappliable_snapshot_is_nacked_and_old_routes_keep_serving() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let mut discovery = ScriptedDiscovery::start().await;
    let mut proxy = Proxy::start(&ProxySpec::client("productpage"), &discovery.url()).await;
    let mut stream = discovery.accept(EVENT_TIMEOUT).await;
    assert_eq!(stream.node.service, "productpage");
    assert_eq!(stream.node.namespace, "default");
    assert_eq!(
        stream.node.inbound_address, "",
        "a client-only proxy is no endpoint"
    );
    assert_eq!(stream.hello.version_info, "", "fresh proxy has no version");

    let v1_cluster = cluster_name("reviews", "default", "v1");
    let v2_cluster = cluster_name("reviews", "default", "v2");
    let clusters = || {
        vec![
            cluster("reviews", "default", "v1", &[v1.addr]),
            cluster("reviews", "default", "v2", &[v2.addr]),
        ]
    };

    // A good snapshot: everything to v1.
    stream
        .send(snapshot(
            "A",
            vec![virtual_host(
                "reviews",
                "default",
                vec![route("all", vec![], &[(&v1_cluster, 1)])],
            )],
            clusters(),
        ))
        .await;
    let ack = stream.next_request(EVENT_TIMEOUT).await;
    assert_eq!(
        (
            ack.version_info.as_str(),
            ack.response_nonce.as_str(),
            ack.error_detail.as_str()
        ),
        ("A", "A-nonce", ""),
        "ACK of A"
    );
    assert_eq!(proxy.wait_ready().await, "A");
    let mut client = proxy.client(Protocol::Http1);
    assert_served_by(&mut client, "v1", 5).await;

    // Two snapshots the proxy cannot apply: a route to a cluster that does
    // not exist, and an invalid regex.
    let bad = [
        (
            "B",
            route(
                "to-nowhere",
                vec![],
                &[("v9|reviews.default.svc.cluster.local", 1)],
            ),
            &[
                "unknown cluster",
                "v9|reviews.default.svc.cluster.local",
                "to-nowhere",
            ][..],
        ),
        (
            "C",
            route(
                "bad-regex",
                vec![regex_uri("/reviews/([0-9]+")],
                &[(&v2_cluster, 1)],
            ),
            &["invalid regex", "bad-regex", "uri"][..],
        ),
    ];
    for (version, bad_route, reasons) in bad {
        let mark = proxy.process.mark();
        stream
            .send(snapshot(
                version,
                vec![virtual_host("reviews", "default", vec![bad_route])],
                clusters(),
            ))
            .await;
        let nack = stream.next_request(EVENT_TIMEOUT).await;
        assert_eq!(nack.response_nonce, format!("{version}-nonce"));
        assert_eq!(
            nack.version_info, "A",
            "a NACK names the version still applied"
        );
        for reason in reasons {
            assert!(
                nack.error_detail.contains(reason),
                "NACK of {version} should mention `{reason}`: {:?}",
                nack.error_detail
            );
        }
        let rejected = proxy
            .process
            .wait_for(mark, EVENT_TIMEOUT, "`rejected` event", |e| {
                e.name() == "rejected"
            })
            .await;
        assert_eq!(rejected.str("version"), version);
        assert_eq!(rejected.str("error"), nack.error_detail);

        assert_served_by(&mut client, "v1", 10).await;
        let dump = proxy.config_dump().await.expect("config_dump");
        assert_eq!(dump["version"], "A", "config_dump after NACK of {version}");
        assert!(
            proxy
                .process
                .events_since(mark)
                .iter()
                .all(|e| e.name() != "applied"),
            "nothing was applied after {version}"
        );
    }
    assert_eq!(v2.hits(), 0, "v2 got traffic from a rejected snapshot");

    // A NACK does not wedge the stream: the next good snapshot applies.
    stream
        .send(snapshot(
            "D",
            vec![virtual_host(
                "reviews",
                "default",
                vec![route("all", vec![], &[(&v2_cluster, 1)])],
            )],
            clusters(),
        ))
        .await;
    let ack = stream.next_request(EVENT_TIMEOUT).await;
    assert_eq!(
        (ack.version_info.as_str(), ack.error_detail.as_str()),
        ("D", ""),
        "ACK of D"
    );
    let applied = proxy.process.wait_event("applied", EVENT_TIMEOUT).await;
    assert_eq!(applied["version"], "D");
    assert_served_by(&mut client, "v2", 5).await;
}
