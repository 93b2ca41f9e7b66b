//! The load generator against the real upstream on a real socket: every
//! protocol and both loops get full 1 KiB answers and count them.

use std::time::Duration;

use remora_bench::loadgen::{self, Load, Protocol, Workload};

#[tokio::test]
async fn every_protocol_and_loop_counts_full_answers_without_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let server = tokio::spawn(remora_bench::upstream::serve(addr));
    // Bounded wait for the server to listen.
    let mut up = false;
    for _ in 0..100 {
        if loadgen::probe(addr, Protocol::Http1, "upstream")
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "the upstream answers");
    for protocol in [
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Http1NewConnection,
    ] {
        for load in [Load::Closed { concurrency: 4 }, Load::Open { rate: 500 }] {
            let w = Workload {
                protocol,
                load,
                h2_connections: 1,
                senders: 4,
                duration: Duration::from_millis(100),
                host: "upstream".into(),
            };
            let r = loadgen::run(addr, &w).await.expect("run");
            assert_eq!(r.errors, 0, "{protocol:?} {load:?}: {:?}", r.first_error);
            assert!(r.ok > 0, "{protocol:?} {load:?} answered nothing");
            assert_eq!(r.latencies.count(), r.ok);
            if let Load::Open { .. } = load {
                // 500 rps for 100 ms: 50 requests due, all sent.
                assert_eq!(r.ok + r.missed, 50, "{protocol:?}");
            }
        }
    }
    server.abort();
}
