use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[tokio::test]
async fn bytes_pass_both_ways_with_half_close_and_are_counted() {
    let (mut app, client_side) = tokio::io::duplex(64);
    let (upstream_side, mut server) = tokio::io::duplex(64);
    let telemetry = Arc::new(Telemetry::off());
    let record = TcpRecord::start(telemetry, Direction::Outbound, "10.0.0.1:6379".into());
    let task = tokio::spawn(forward(client_side, upstream_side, record));
    app.write_all(b"PING\r\n").await.unwrap();
    app.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"PING\r\n");
    server.write_all(b"+PONG\r\n").await.unwrap();
    drop(server);
    let mut back = Vec::new();
    app.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"+PONG\r\n");
    task.await.unwrap();
}
