use super::*;

#[test]
fn the_flag_picks_the_probe() {
    assert_eq!(
        AppProbe::from_flag("127.0.0.1:8080", None).unwrap(),
        Some(AppProbe::Tcp("127.0.0.1:8080".into()))
    );
    assert_eq!(
        AppProbe::from_flag("127.0.0.1:8080", Some("off")).unwrap(),
        None
    );
    assert_eq!(
        AppProbe::from_flag("127.0.0.1:8080", Some("/ready")).unwrap(),
        Some(AppProbe::Http {
            address: "127.0.0.1:8080".into(),
            path: "/ready".into()
        })
    );
    let err = AppProbe::from_flag("127.0.0.1:8080", Some("ready")).unwrap_err();
    assert!(err.contains("--app-health `ready`"), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_not_ready_and_an_open_one_is() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let health = AppHealth::new(AppProbe::Tcp(addr.clone()), DEFAULT_INTERVAL);
    let mut changes = health.subscribe();
    let status = health.probe_once().await;
    assert!(status.ready && status.ever_ready, "{status:?}");
    assert!(changes.has_changed().unwrap(), "ready is a change");
    changes.borrow_and_update();

    drop(listener);
    let status = health.probe_once().await;
    assert!(!status.ready && status.ever_ready, "{status:?}");
    assert!(
        status.reason.starts_with(&format!("connect to {addr}")),
        "{status:?}"
    );
    assert!(changes.has_changed().unwrap(), "not ready is a change");
    changes.borrow_and_update();
    let report = health.status().report();
    assert!(!report.ready && report.reason.contains(&addr), "{report:?}");

    // The same failure again wakes nobody.
    health.probe_once().await;
    assert!(!changes.has_changed().unwrap());
}

#[tokio::test]
async fn an_http_probe_needs_a_status_below_400() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};
    let status = Arc::new(AtomicU16::new(200));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = Arc::clone(&status);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let code = if req.uri().path() == "/ready" {
                        served.load(Ordering::SeqCst)
                    } else {
                        404
                    };
                    async move {
                        let mut resp = http::Response::new(Empty::<Bytes>::new());
                        *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let probe = AppProbe::from_flag(&addr, Some("/ready")).unwrap().unwrap();
    let health = AppHealth::new(probe, DEFAULT_INTERVAL);
    assert!(health.probe_once().await.ready);
    status.store(503, Ordering::SeqCst);
    let s = health.probe_once().await;
    assert!(!s.ready, "{s:?}");
    assert_eq!(s.reason, format!("GET http://{addr}/ready: answered 503"));
    status.store(302, Ordering::SeqCst);
    assert!(
        health.probe_once().await.ready,
        "3xx is ready, as in Kubernetes"
    );
}
