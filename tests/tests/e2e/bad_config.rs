//! A file with an error is rejected with a precise message (file, line,
//! resource, field path), the last good config keeps serving, `remora
//! validate` says the same, and a fixed file resumes updates. A file over
//! the size limit is refused unread, the same way.

use std::process::Command;

use remora_e2e::scenario::{AppKind, Canary, VS_FILE};
use remora_e2e::{EVENT_TIMEOUT, HttpClient, Protocol, bin, yaml};

/// Sends `n` requests and returns how many v1 and v2 answered.
async fn split(client: &mut HttpClient, n: usize) -> (usize, usize) {
    let (mut v1, mut v2) = (0, 0);
    for i in 0..n {
        let reply = client
            .get("reviews", "/", &[])
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
        match reply.body.trim() {
            "v1" => v1 += 1,
            "v2" => v2 += 1,
            other => panic!("request {i}: unexpected body {other:?}"),
        }
    }
    (v1, v2)
}

/// Writes `contents` as the VirtualService, waits for the control plane's
/// `rejected` event for it and returns its error lines.
async fn write_rejected(canary: &mut Canary, contents: &str) -> (String, Vec<String>) {
    let mark = canary.mesh.control_plane.process.mark();
    canary.mesh.write_file(VS_FILE, contents);
    let ev = canary
        .mesh
        .control_plane
        .process
        .wait_for(
            mark,
            EVENT_TIMEOUT,
            "`rejected` event for the VS file",
            |e| e.name() == "rejected" && e.str("file").ends_with(VS_FILE),
        )
        .await;
    let errors = ev.value["errors"]
        .as_array()
        .expect("`errors` is an array")
        .iter()
        .map(|e| e.as_str().expect("errors are strings").to_owned())
        .collect();
    (ev.str("file").to_owned(), errors)
}

/// Runs `remora validate file`, asserts it exits 1 and prints every one of
/// `errors` as a line.
fn assert_validate_agrees(file: &str, errors: &[String]) {
    let out = Command::new(bin("remora"))
        .args(["validate", file])
        .output()
        .expect("run remora validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "remora validate {file} exits 1:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for e in errors {
        assert!(
            stdout.lines().any(|l| l == e),
            "validate prints the server's message {e:?}; it printed:\n{stdout}"
        );
    }
}

fn assert_error(errors: &[String], file_line: &str, rest: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.contains(file_line) && e.contains(rest)),
        "expected an error with `{file_line}` and `{rest}`; got {errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_file_is_rejected_with_its_message_and_last_good_config_keeps_serving() {
    let mut canary = Canary::start(90, 10, AppKind::InProcess).await;
    let mut client = canary.client.client(Protocol::Http1);
    assert_eq!(split(&mut client, 100).await, (90, 10));
    let good_version = canary.client.config_dump().await.expect("dump")["version"].clone();
    let client_mark = canary.client.process.mark();

    // 1. An invalid regex, in a file that would also move the split to 50/50.
    let bad_regex = yaml::reviews_canary(50, 50).replace("exact: jason", "regex: \"jason(\"");
    let line = yaml::line_of(&bad_regex, "regex:");
    let (file, errors) = write_rejected(&mut canary, &bad_regex).await;
    println!("rejected: {errors:#?}");
    assert_error(
        &errors,
        &format!("{VS_FILE}:{line}: error: "),
        "VirtualService default/reviews: spec.http[0].match[0].headers.end-user.regex: invalid regex",
    );
    assert_validate_agrees(&file, &errors);
    assert_eq!(split(&mut client, 100).await, (90, 10), "old split holds");
    let jason = client
        .get("reviews", "/", &[("end-user", "jason")])
        .await
        .expect("jason");
    assert_eq!(jason.body.trim(), "v2", "old jason route holds");

    // 2. An unknown field (a typo): named, not ignored.
    let typo = yaml::reviews_canary(50, 50).replace("weight: 50", "wieght: 50");
    let line = yaml::line_of(&typo, "wieght:");
    let (file, errors) = write_rejected(&mut canary, &typo).await;
    println!("rejected: {errors:#?}");
    assert_error(
        &errors,
        &format!("{VS_FILE}:{line}: error: "),
        "VirtualService default/reviews: spec.http[1].route[0].wieght: unknown field `wieght`",
    );
    assert_validate_agrees(&file, &errors);
    assert_eq!(split(&mut client, 100).await, (90, 10), "old split holds");
    assert_eq!(
        canary.client.config_dump().await.expect("dump")["version"],
        good_version,
        "the proxy still runs the last good version"
    );
    let applied: Vec<_> = canary
        .client
        .process
        .events_since(client_mark)
        .into_iter()
        .filter(|e| e.name() == "applied")
        .map(|e| e.value)
        .collect();
    assert!(
        applied.is_empty(),
        "a rejected file changed the proxy's config: {applied:?}"
    );

    // 3. Fixed: the change goes through.
    let cp_mark = canary.mesh.control_plane.process.mark();
    canary
        .mesh
        .write_file(VS_FILE, &yaml::reviews_canary(50, 50));
    canary
        .mesh
        .control_plane
        .process
        .wait_for(cp_mark, EVENT_TIMEOUT, "`loaded` event", |e| {
            e.name() == "loaded"
        })
        .await;
    let ev = canary
        .client
        .process
        .wait_for(client_mark, EVENT_TIMEOUT, "`applied` event", |e| {
            e.name() == "applied"
        })
        .await;
    assert_ne!(ev.value["version"], good_version);
    assert_eq!(
        split(&mut client, 100).await,
        (50, 50),
        "the fixed file applies"
    );

    // 4. A file over the size limit (4 MiB): refused unread, named, with
    // its size; validate says the same.
    let padding = "# padding\n".repeat((4 << 20) / 10 + 1);
    let huge = format!("{}{padding}", yaml::reviews_canary(10, 90));
    let (file, errors) = write_rejected(&mut canary, &huge).await;
    assert_eq!(
        errors,
        [format!(
            "{file}: error: the file is {} bytes, over the limit of 4194304 bytes (4 MiB) for \
             one config file; it was not read (split the config into several files)",
            huge.len()
        )]
    );
    assert_validate_agrees(&file, &errors);
    assert_eq!(split(&mut client, 100).await, (50, 50), "the split holds");
}
