//! Real children (`sh`) printing events, failing and refusing to stop.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tokio::process::Command;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// `sh -c script` with its stderr kept.
fn sh(name: &str, script: &str) -> Process {
    Process::spawn(name, Path::new("sh"), ["-c", script])
}

#[tokio::test]
async fn each_event_name_has_its_own_cursor_and_other_lines_go_to_the_tail() {
    let mut p = sh(
        "events",
        r#"echo '{"event":"a","n":1}'; echo 'not json'; echo '{"event":"b"}'
           echo '{"event":"a","n":2}'; echo 'to stderr' >&2"#,
    );
    assert_eq!(p.wait_event("b", WAIT).await["event"], "b");
    assert_eq!(p.wait_event("a", WAIT).await["n"], 1);
    assert_eq!(p.wait_event("a", WAIT).await["n"], 2);
    assert_eq!(p.mark(), 3);
    assert_eq!(p.events_since(1)[0].name(), "b");
    // Its exit is awaited with its stderr read to the end: the two pipes
    // are read by two tasks, in no order.
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    let tail = p.stderr_tail();
    assert!(tail.contains("[stdout] not json"), "{tail}");
    assert!(tail.contains("to stderr"), "{tail}");
}

#[tokio::test]
async fn a_timeout_names_the_process_the_event_and_what_it_said() {
    let mut p = sh(
        "quiet one",
        r#"echo '{"event":"listening"}'; echo 'still starting' >&2; exec sleep 30"#,
    );
    let err = p
        .try_wait_event("ready", Duration::from_secs(1))
        .await
        .expect_err("no `ready` is printed");
    let text = err.to_string();
    assert!(matches!(err, Error::Timeout { .. }), "{text}");
    assert!(
        text.starts_with("quiet one: no `ready` event within 1s"),
        "{text}"
    );
    assert!(text.contains(r#"{"event":"listening"}"#), "{text}");
    assert!(text.contains("still starting"), "{text}");
    p.kill().await;
}

#[tokio::test]
async fn an_exit_before_the_event_says_how_it_ended_with_its_last_words() {
    let mut p = sh("dies", "echo 'bad flag' >&2; exit 3");
    let err = p
        .try_wait_event("listening", WAIT)
        .await
        .expect_err("it exits first");
    let text = err.to_string();
    assert!(matches!(err, Error::Exited { .. }), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("bad flag"), "{text}");
}

#[tokio::test]
async fn a_missing_field_is_an_error_naming_it() {
    let mut p = sh(
        "fields",
        r#"echo '{"event":"listening","addr":"127.0.0.1:1"}'; exec sleep 30"#,
    );
    let addr = p
        .try_wait_field("listening", "addr", WAIT)
        .await
        .expect("addr");
    assert_eq!(addr, "127.0.0.1:1");
    p.cursors.clear();
    let err = p
        .try_wait_field("listening", "admin", WAIT)
        .await
        .expect_err("no admin field");
    assert!(matches!(err, Error::MissingField { .. }), "{err}");
    p.kill().await;
}

#[tokio::test]
async fn stderr_into_a_file_is_quoted_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("child.log");
    let mut command = Command::new("sh");
    command.args(["-c", "echo 'first' >&2; echo 'last' >&2; exit 1"]);
    let mut p = Process::try_spawn("logged", command, Stderr::File(log.clone())).expect("spawn");
    let status = p.wait_exit(WAIT).await.expect("it exits");
    assert_eq!(status.code(), Some(1));
    assert_eq!(p.stderr_tail(), "first\nlast");
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "first\nlast\n");
}

#[tokio::test]
async fn a_spawn_failure_names_the_program() {
    let err = Process::try_spawn("ghost", Command::new("/nonexistent/remora"), Stderr::Keep)
        .expect_err("no such program");
    assert!(
        err.to_string()
            .starts_with("ghost: cannot start /nonexistent/remora: "),
        "{err}"
    );
}

#[tokio::test]
async fn stop_ends_a_child_with_sigterm_and_kills_one_that_ignores_it() {
    let mut polite = sh("polite", r#"echo '{"event":"ready"}'; exec sleep 30"#);
    polite.wait_event("ready", WAIT).await;
    let status = polite.stop(WAIT).await.expect("stopped");
    assert_eq!(
        status.signal(),
        Some(rustix::process::Signal::TERM.as_raw())
    );

    let mut stubborn = sh(
        "stubborn",
        r#"trap '' TERM; echo '{"event":"ready"}'; exec sleep 30"#,
    );
    stubborn.wait_event("ready", WAIT).await;
    let status = stubborn
        .stop(Duration::from_millis(200))
        .await
        .expect("stopped");
    assert_eq!(
        status.signal(),
        Some(rustix::process::Signal::KILL.as_raw())
    );
}

#[tokio::test]
async fn stop_all_shares_one_grace_period_and_names_the_killed() {
    let mut all = Vec::new();
    for (name, script) in [
        ("polite", "exec sleep 30"),
        (
            "stubborn",
            "trap '' TERM; echo '{\"event\":\"ready\"}'; exec sleep 30",
        ),
    ] {
        all.push(sh(name, script));
    }
    all[1].wait_event("ready", WAIT).await;
    let started = std::time::Instant::now();
    let forced = stop_all(&mut all, Duration::from_millis(300)).await;
    assert_eq!(forced, ["stubborn"]);
    assert!(all.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
