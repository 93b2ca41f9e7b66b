use super::*;

#[test]
fn only_a_destination_other_than_the_listener_is_a_capture() {
    let local: SocketAddr = "127.0.0.1:15001".parse().unwrap();
    assert!(!redirected(local, local));
    assert!(redirected(local, "10.0.0.7:9080".parse().unwrap()));
    assert!(redirected(local, "127.0.0.1:9080".parse().unwrap()));
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:15001".parse().unwrap();
    assert!(!redirected(mapped, local));
}

#[tokio::test]
async fn a_direct_loopback_connection_is_not_captured() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    assert_eq!(captured(&server), None);
}
