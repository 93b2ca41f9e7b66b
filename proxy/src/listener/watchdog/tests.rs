use super::*;
use crate::listener::activity::ConnectionLimit;

fn short() -> Timeouts {
    Timeouts {
        listener_filters: Duration::from_secs(15),
        request_headers: Duration::from_secs(10),
        stream_idle: Duration::from_secs(300),
        idle: Duration::from_secs(3600),
        tcp_idle: Duration::from_secs(3600),
    }
}

fn activity(phase: Phase) -> Arc<Activity> {
    let activity = Arc::new(Activity::new(ConnectionLimit::new("outbound", false)));
    activity.set_phase(phase);
    activity
}

/// How long `watch` took to end, in paused time, and why.
async fn ended(activity: &Activity, t: &Timeouts) -> (Ended, Duration) {
    let start = Instant::now();
    let ended = watch(activity, t).await;
    (ended, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn each_phase_ends_at_its_own_bound_and_within_a_quarter_of_it() {
    let t = short();
    let within = |d: Duration, bound: u64| {
        d >= Duration::from_secs(bound) && d <= Duration::from_secs(bound + bound / 4 + 1)
    };
    let (why, took) = ended(&activity(Phase::Detecting), &t).await;
    assert_eq!(why, Ended::ListenerFilters);
    assert!(within(took, 15), "{took:?}");
    let (why, took) = ended(&activity(Phase::Tcp), &t).await;
    assert_eq!(why, Ended::TcpIdle);
    assert!(within(took, 3600), "{took:?}");
    let (why, took) = ended(&activity(Phase::Http2), &t).await;
    assert_eq!(why, Ended::Idle);
    assert!(within(took, 3600), "{took:?}");
    // A request in flight with nothing moving: the stream idle timeout.
    let busy = activity(Phase::Http2);
    let _stream = busy.stream();
    let (why, took) = ended(&busy, &t).await;
    assert_eq!(why, Ended::StreamIdle);
    assert!(within(took, 300), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn an_http1_head_in_progress_ends_at_the_request_headers_bound() {
    let t = short();
    let conn = activity(Phase::Http1);
    conn.read.fetch_add(3, Ordering::Relaxed); // `GET`, then nothing
    let (why, took) = ended(&conn, &t).await;
    assert_eq!(why, Ended::RequestHeaders);
    assert!(took <= Duration::from_secs(15), "{took:?}");
    // A finished request is no head in progress: idle, not headers.
    let conn = activity(Phase::Http1);
    conn.read.fetch_add(40, Ordering::Relaxed);
    drop(conn.stream());
    let (why, _) = ended(&conn, &t).await;
    assert_eq!(why, Ended::Idle);
}

#[tokio::test(start_paused = true)]
async fn bytes_moving_keep_a_connection_and_a_zero_bound_is_off() {
    let t = short();
    let conn = activity(Phase::Tcp);
    let watching = watch(&conn, &t);
    tokio::pin!(watching);
    for _ in 0..10 {
        tokio::select! {
            ended = &mut watching => panic!("closed while bytes moved: {ended:?}"),
            () = tokio::time::sleep(Duration::from_secs(1800)) => {
                conn.written.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let off = Timeouts {
        tcp_idle: Duration::ZERO,
        ..t
    };
    let idle = activity(Phase::Tcp);
    let result = tokio::time::timeout(Duration::from_secs(100_000), watch(&idle, &off)).await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn a_detecting_connection_is_evicted_on_notice_and_an_established_one_is_not() {
    let t = short();
    let conn = activity(Phase::Detecting);
    conn.evicted.store(true, Ordering::Relaxed);
    conn.evict.notify_one();
    assert_eq!(ended(&conn, &t).await.0, Ended::Evicted);
    let conn = activity(Phase::Http2);
    conn.evicted.store(true, Ordering::Relaxed);
    conn.evict.notify_one();
    assert_eq!(ended(&conn, &t).await.0, Ended::Idle);
}

#[test]
fn the_watchdog_wakes_at_a_quarter_of_the_shortest_bound() {
    let t = Timeouts::default();
    assert_eq!(tick(Phase::Detecting, &t), Some(Duration::from_secs(15)));
    assert_eq!(tick(Phase::Http1, &t), Some(Duration::from_millis(2500)));
    assert_eq!(tick(Phase::Http2, &t), Some(Duration::from_secs(75)));
    assert_eq!(tick(Phase::Tcp, &t), Some(Duration::from_secs(900)));
    let off = Timeouts {
        tcp_idle: Duration::ZERO,
        ..t
    };
    assert_eq!(tick(Phase::Tcp, &off), None);
}
