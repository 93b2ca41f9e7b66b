use super::*;

#[test]
fn quitquitquit_needs_post_and_a_loopback_admin_port() {
    let local = Lifecycle::new(true);
    assert_eq!(
        quit(&local, &Method::GET).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(quit(&local, &Method::POST).status(), StatusCode::OK);
    let exposed = Lifecycle::new(false);
    assert_eq!(
        quit(&exposed, &Method::POST).status(),
        StatusCode::FORBIDDEN
    );
}

#[test]
fn the_scrape_path_answers_prometheus_text() {
    let resp = scrape(&Method::GET, PROMETHEUS_PATH);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
    assert_eq!(
        scrape(&Method::GET, "/metrics").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        scrape(&Method::POST, PROMETHEUS_PATH).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}
