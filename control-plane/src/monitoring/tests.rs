use http_body_util::BodyExt;

use super::*;

fn monitoring() -> Monitoring {
    let metrics = Metrics::new();
    Monitoring {
        proxies: ProxyTracker::new(metrics.clone()),
        metrics,
    }
}

async fn body(resp: Response<Full<Bytes>>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn routes_answer_get_and_name_the_endpoints_otherwise() {
    let m = monitoring();
    let _proxy = m.proxies.track(
        &remora_proto::pb::Node {
            id: "a".into(),
            service: "reviews".into(),
            ..Default::default()
        },
        "",
    );

    let metrics = route(&m, &Method::GET, "/metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    assert_eq!(
        metrics.headers()[header::CONTENT_TYPE],
        metrics::CONTENT_TYPE
    );
    assert!(body(metrics).await.contains("remora_connected_proxies 1\n"));

    let proxies = route(&m, &Method::GET, PROXIES_PATH);
    assert_eq!(proxies.status(), StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body(proxies).await).unwrap();
    assert_eq!(json[0]["id"], "a");
    assert_eq!(json[0]["status"], "STALE");

    let missing = route(&m, &Method::GET, "/nope");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(body(missing).await.contains("/debug/proxies"));

    let post = route(&m, &Method::POST, "/metrics");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}
