//! HTTP/2 and gRPC across two proxies: app → client-only proxy (outbound)
//! → server sidecar (inbound) → app, with trailers intact.
//!
//! Both proxies get their config from a scripted discovery server in the
//! test, which points each service's cluster at its sidecar's inbound
//! address, as `remora serve` does for registered proxies.

use std::time::Duration;

use bytes::Bytes;
use remora_e2e::discovery::{
    DiscoveryStream, ScriptedDiscovery, cluster, cluster_name, route, snapshot, virtual_host,
};
use remora_e2e::echo::EchoApp;
use remora_e2e::echo::pb::echo_client::EchoClient;
use remora_e2e::echo::pb::{EchoRequest, Failure};
use remora_e2e::{Backend, EVENT_TIMEOUT, Protocol, Proxy, ProxySpec};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// A web app and a gRPC echo app, each behind its own sidecar, and a
/// client-only proxy in front, all configured and ready.
struct TwoHopMesh {
    client: Proxy,
    web: Backend,
    _echo: EchoApp,
    _sidecars: Vec<Proxy>,
    // Kept open for the test's life, so the proxies' streams stay up.
    _streams: Vec<DiscoveryStream>,
    _discovery: ScriptedDiscovery,
}

async fn two_hop_mesh() -> TwoHopMesh {
    let web = Backend::start("web-v1").await;
    let echo = EchoApp::start().await;
    let mut discovery = ScriptedDiscovery::start().await;
    let url = discovery.url();
    let mut web_sidecar = Proxy::start(&ProxySpec::sidecar("web", "v1", web.addr), &url).await;
    let mut echo_sidecar = Proxy::start(&ProxySpec::sidecar("echo", "v1", echo.addr), &url).await;
    let mut client = Proxy::start(&ProxySpec::client("frontend"), &url).await;

    let mut streams: Vec<DiscoveryStream> = Vec::new();
    for _ in 0..3 {
        streams.push(discovery.accept(EVENT_TIMEOUT).await);
    }
    for (sidecar, service) in [(&web_sidecar, "web"), (&echo_sidecar, "echo")] {
        let inbound = sidecar.inbound.expect("sidecar has inbound").to_string();
        assert!(
            streams
                .iter()
                .any(|s| s.node.service == service && s.node.inbound_address == inbound),
            "the {service} sidecar registers its inbound address {inbound}: {:?}",
            streams.iter().map(|s| &s.node).collect::<Vec<_>>()
        );
    }

    let web_cluster = cluster_name("web", "default", "");
    let echo_cluster = cluster_name("echo", "default", "");
    let config = snapshot(
        "two-hop-1",
        vec![
            virtual_host(
                "web",
                "default",
                vec![route("web", vec![], &[(&web_cluster, 1)])],
            ),
            virtual_host(
                "echo",
                "default",
                vec![route("echo", vec![], &[(&echo_cluster, 1)])],
            ),
        ],
        vec![
            cluster(
                "web",
                "default",
                "",
                &[web_sidecar.inbound.expect("inbound")],
            ),
            cluster(
                "echo",
                "default",
                "",
                &[echo_sidecar.inbound.expect("inbound")],
            ),
        ],
    );
    for stream in &mut streams {
        stream.send(config.clone()).await;
        let ack = stream.next_request(EVENT_TIMEOUT).await;
        assert_eq!(
            (ack.version_info.as_str(), ack.error_detail.as_str()),
            ("two-hop-1", ""),
            "{} ACKs",
            stream.node.id
        );
    }
    for proxy in [&mut web_sidecar, &mut echo_sidecar, &mut client] {
        assert_eq!(proxy.wait_ready().await, "two-hop-1");
    }
    TwoHopMesh {
        client,
        web,
        _echo: echo,
        _sidecars: vec![web_sidecar, echo_sidecar],
        _streams: streams,
        _discovery: discovery,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_prior_knowledge_crosses_two_proxies_end_to_end() {
    let mesh = two_hop_mesh().await;
    for (protocol, version) in [(Protocol::Http2, "HTTP/2.0"), (Protocol::Http1, "HTTP/1.1")] {
        let mut client = mesh.client.client(protocol);
        for host in [
            "web",
            "web:80",
            "web.default",
            "web.default.svc.cluster.local:8080",
        ] {
            let reply = client
                .get(host, "/echo?q=1", &[("x-trace", "abc")])
                .await
                .unwrap_or_else(|e| panic!("{protocol:?} {host}: {e:#}"));
            assert_eq!(reply.status, 200, "{protocol:?} {host}: {}", reply.body);
            let first_line = reply.body.lines().next().unwrap_or_default();
            assert_eq!(
                first_line,
                format!("web-v1 GET /echo?q=1 {version}"),
                "the app sees the client's protocol ({protocol:?} via {host})"
            );
            assert!(
                reply.body.contains("x-trace: abc"),
                "headers reach the app: {}",
                reply.body
            );
            assert_eq!(reply.headers["x-backend"], "web-v1");
        }
    }
    assert_eq!(mesh.web.hits(), 8);
}

async fn echo_client(mesh: &TwoHopMesh) -> EchoClient<Channel> {
    // Connect to the client proxy, but name the service in `:authority`.
    let channel = Endpoint::from_shared(format!("http://{}", mesh.client.outbound))
        .expect("endpoint")
        .origin("http://echo:50051".parse().expect("origin"))
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the client proxy");
    EchoClient::new(channel)
}

fn failure() -> Failure {
    Failure {
        code: Code::FailedPrecondition as i32,
        message: "reviews are closed today".to_owned(),
        details: b"\x08\x01detail-bytes".to_vec(),
    }
}

fn assert_is_failure(status: &tonic::Status) {
    let want = failure();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.message(), want.message, "{status:?}");
    assert_eq!(status.details(), &Bytes::from(want.details), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_unary_streaming_and_error_status_cross_two_proxies() {
    let mesh = two_hop_mesh().await;
    let mut echo = echo_client(&mesh).await;

    // Unary.
    let reply = echo
        .unary(EchoRequest {
            message: "hello".into(),
            ..Default::default()
        })
        .await
        .expect("unary call")
        .into_inner();
    assert_eq!(reply.message, "hello");

    // Server streaming: five messages, then OK in the trailers (tonic fails
    // the stream if the trailers with grpc-status never arrive).
    let mut stream = echo
        .server_stream(EchoRequest {
            message: "tick".into(),
            count: 5,
            fail: None,
        })
        .await
        .expect("streaming call")
        .into_inner();
    let mut got = Vec::new();
    while let Some(msg) = stream.message().await.expect("stream message") {
        got.push((msg.index, msg.message));
    }
    let want: Vec<_> = (0..5).map(|i| (i, format!("tick #{i}"))).collect();
    assert_eq!(got, want);
    let trailers = stream.trailers().await.expect("trailers");
    assert!(trailers.is_some(), "an OK stream ends with trailers");

    // Server streaming that fails after two messages: the status, message
    // and details can only travel in the trailers.
    let mut stream = echo
        .server_stream(EchoRequest {
            message: "tock".into(),
            count: 2,
            fail: Some(failure()),
        })
        .await
        .expect("streaming call starts")
        .into_inner();
    for i in 0..2 {
        let msg = stream
            .message()
            .await
            .expect("message before the failure")
            .expect("two messages before the failure");
        assert_eq!(msg.index, i);
    }
    let status = stream
        .message()
        .await
        .expect_err("the stream ends with the error status");
    assert_is_failure(&status);

    // Unary failure (a trailers-only response).
    let status = echo
        .unary(EchoRequest {
            message: "x".into(),
            count: 0,
            fail: Some(failure()),
        })
        .await
        .expect_err("unary call fails");
    assert_is_failure(&status);

    // Several calls multiplexed on the one h2 connection.
    let calls = (0..20).map(|i| {
        let mut echo = echo.clone();
        async move {
            echo.unary(EchoRequest {
                message: format!("m{i}"),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().message)
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    for (i, r) in replies.into_iter().enumerate() {
        assert_eq!(r.expect("concurrent unary"), format!("m{i}"));
    }
}
