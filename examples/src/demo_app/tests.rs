use super::*;

fn app() -> DemoApp {
    DemoApp::new("reviews", "v2").unwrap()
}

async fn call(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
    let resp = app().handle(req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

#[tokio::test]
async fn version_names_the_version_and_service() {
    for path in ["/", "/version"] {
        let (status, headers, body) = call(get(path)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "v2\n");
        assert_eq!(headers[SERVICE_HEADER], "reviews");
        assert_eq!(headers[VERSION_HEADER], "v2");
    }
}

#[tokio::test]
async fn echo_returns_body_method_path_and_selected_headers() {
    let req = Request::post("/echo?a=1")
        .header("x-request-id", "abc")
        .header("end-user", "jason")
        .header("accept", "*/*")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let (status, headers, body) = call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "hello");
    assert_eq!(headers["x-echo-method"], "POST");
    assert_eq!(headers["x-echo-path"], "/echo?a=1");
    assert_eq!(headers["x-echo-version"], "HTTP/1.1");
    assert_eq!(headers["x-echo-x-request-id"], "abc");
    assert_eq!(headers["x-echo-end-user"], "jason");
    assert!(!headers.contains_key("x-echo-accept"));
    assert_eq!(headers[VERSION_HEADER], "v2");
}

#[tokio::test]
async fn status_answers_valid_codes_and_rejects_others() {
    let (status, headers, body) = call(get("/status/503")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "status 503\n");
    assert_eq!(headers[VERSION_HEADER], "v2");
    for bad in ["/status/600", "/status/99", "/status/abc", "/status/"] {
        let (status, _, _) = call(get(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn delay_waits_then_answers_and_is_capped() {
    let start = tokio::time::Instant::now();
    let (status, _, body) = call(get("/delay/250")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "v2\n");
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    let start = tokio::time::Instant::now();
    let _ = call(get("/delay/999999999")).await;
    assert_eq!(start.elapsed(), MAX_DELAY);
}

#[tokio::test]
async fn unknown_path_is_404_naming_it() {
    let (status, headers, body) = call(get("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no such path: /nope\n");
    assert_eq!(headers[SERVICE_HEADER], "reviews");
}
