use super::*;

fn entry() -> Entry {
    Entry {
        start_time: rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
        direction: "outbound",
        method: "GET".into(),
        path: "/reviews/1?x=y".into(),
        protocol: "HTTP/1.1",
        authority: "reviews".into(),
        response_code: 503,
        response_flags: "UO".into(),
        bytes_sent: 57,
        bytes_received: 0,
        duration_ms: 3,
        upstream_host: Some("127.0.0.1:9080".into()),
        upstream_cluster: Some("v1|reviews.default.svc.cluster.local".into()),
        retries: 0,
        request_id: "4bf92f3577b34da6".into(),
        trace_id: None,
        peer_identity: None,
        user_agent: Some("curl/8".into()),
    }
}

#[test]
fn times_are_rfc3339_utc_with_millis() {
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
        "2023-11-14T22:13:20.123Z"
    );
    assert_eq!(
        rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00.000Z",
        "leap day"
    );
}

#[test]
fn json_lines_parse_and_carry_every_field() {
    let line = entry().render(Format::Json);
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["start_time"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["response_code"], 503);
    assert_eq!(v["response_flags"], "UO");
    assert_eq!(v["request_id"], "4bf92f3577b34da6");
    assert_eq!(v["upstream_host"], "127.0.0.1:9080");
    assert!(v["trace_id"].is_null());
}

#[test]
fn text_lines_follow_envoys_layout() {
    assert_eq!(
        entry().render(Format::Text),
        "[2023-11-14T22:13:20.123Z] \"GET /reviews/1?x=y HTTP/1.1\" 503 UO 57 3 \
             \"curl/8\" \"4bf92f3577b34da6\" \"reviews\" \"127.0.0.1:9080\" outbound"
    );
}

#[tokio::test]
async fn lines_reach_the_writer_in_order() {
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Shared::default();
    let log = AccessLog::spawn(Format::Json, Box::new(out.clone()));
    for code in [200, 404, 503] {
        log.log(&Entry {
            response_code: code,
            ..entry()
        });
    }
    drop(log);
    let mut text = String::new();
    for _ in 0..200 {
        text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        if text.lines().count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let codes: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["response_code"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(codes, [200, 404, 503]);
}
