use std::time::Instant;

use tokio::io::AsyncWriteExt;

use super::*;

#[test]
fn request_lines_are_http1_and_other_protocols_are_tcp() {
    use Protocol::*;
    for (bytes, expected) in [
        (&b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n"[..], Some(Http1)),
        (b"POST /api?x=1 HTTP/1.0\r\n", Some(Http1)),
        (b"PROPFIND /dav HTTP/1.1\r\n", Some(Http1)),
        (H2_PREFACE, Some(Http2)),
        // A Redis inline command has no version: TCP.
        (b"GET key\r\n", Some(Tcp)),
        // RESP, TLS ClientHello, PostgreSQL startup.
        (b"*1\r\n$4\r\nPING\r\n", Some(Tcp)),
        (b"\x16\x03\x01\x02\x00\x01", Some(Tcp)),
        (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", Some(Tcp)),
        (b"GET / HTTP/2.0\r\n", Some(Tcp)),
        (b"GET / SMTP\r\n", Some(Tcp)),
        // Not decided yet: more bytes are needed.
        (b"GE", None),
        (b"GET /reviews", None),
        (b"GET / HTTP/1.", None),
        (b"GET / HTTP/1.1", None),
        (b"PRI * HTTP/2", None),
    ] {
        assert_eq!(
            classify(bytes),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[tokio::test]
async fn the_http_version_is_known_at_the_first_byte_unlike_the_preface() {
    for (bytes, expected) in [
        (&b"GET / HTTP/1.1\r\n"[..], Protocol::Http1),
        (H2_PREFACE, Protocol::Http2),
        (b"PRI * HTTP/1.1\r\n", Protocol::Http1),
    ] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(bytes).await.unwrap();
        let (protocol, prefix) = http_version(&mut server).await.unwrap().unwrap();
        assert_eq!(protocol, expected);
        assert!(bytes.starts_with(&prefix));
    }
    // A partial preface waits for more; then the client gives up.
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"PRI * HT").await.unwrap();
    drop(client);
    assert!(http_version(&mut server).await.unwrap().is_none());
}

#[tokio::test]
async fn a_silent_client_is_tcp_after_the_silence_bound_and_nothing_is_lost() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let started = Instant::now();
    let (protocol, prefix) = detect(&mut server, Duration::from_millis(50))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!((protocol, prefix.len()), (Protocol::Tcp, 0));
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    client.write_all(b"late").await.unwrap();
    let mut read = [0u8; 4];
    server.read_exact(&mut read).await.unwrap();
    assert_eq!(&read, b"late");
}

#[tokio::test]
async fn a_request_line_in_pieces_is_http1_and_replayed_whole() {
    let (mut client, server) = tokio::io::duplex(1024);
    let writer = tokio::spawn(async move {
        client.write_all(b"GET /a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        client
            .write_all(b" HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        client
    });
    let mut server = server;
    let (protocol, prefix) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
    assert_eq!(protocol, Protocol::Http1);
    let _client = writer.await.unwrap();
    let mut replay = Prefixed::new(prefix, server);
    let mut line = vec![0u8; b"GET /a HTTP/1.1\r\n".len()];
    replay.read_exact(&mut line).await.unwrap();
    assert_eq!(line, b"GET /a HTTP/1.1\r\n");
}
