use super::*;

#[test]
fn ready_only_once_a_config_was_applied() {
    let state = Health {
        config: Arc::new(ConfigState::default()),
        lifecycle: Arc::new(Lifecycle::new(true)),
    };
    let before = answer(&state, &Method::GET, READY_PATH);
    assert_eq!(before.status(), StatusCode::SERVICE_UNAVAILABLE);
    state.config.ready.send_replace(true);
    assert_eq!(
        answer(&state, &Method::GET, READY_PATH).status(),
        StatusCode::OK
    );
    assert_eq!(
        answer(&state, &Method::GET, "/healthz/live").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        answer(&state, &Method::POST, READY_PATH).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    state.lifecycle.start_draining();
    assert_eq!(
        answer(&state, &Method::GET, READY_PATH).status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a draining proxy is not ready"
    );
}
