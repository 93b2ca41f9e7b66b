use super::*;

fn listen() -> Listen {
    Listen {
        h1: "127.0.0.1:8001".parse().expect("addr"),
        h2: "127.0.0.1:8002".parse().expect("addr"),
    }
}

#[test]
fn nginx_has_one_worker_keepalive_and_no_access_log() {
    let up = "127.0.0.1:9000".parse().expect("addr");
    let c = nginx(Path::new("/tmp/x"), listen(), up);
    assert!(c.contains("worker_processes 1;"));
    assert!(c.contains("access_log off;"));
    assert!(c.contains("keepalive 128;"));
    assert!(c.contains("server 127.0.0.1:9000;"));
    assert!(c.contains("listen 127.0.0.1:8002 http2;"));
}

#[test]
fn haproxy_has_one_thread_and_reuses_connections() {
    let c = haproxy(listen(), "127.0.0.1:9000".parse().expect("addr"));
    assert!(c.contains("nbthread 1"));
    assert!(c.contains("http-reuse always"));
    assert!(!c.contains("log "), "no log lines");
    assert!(c.contains("bind 127.0.0.1:8002 proto h2"));
}
