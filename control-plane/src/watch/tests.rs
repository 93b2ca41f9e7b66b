use super::*;

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: WEIGHT
    - destination: {host: reviews, subset: v2}
      weight: 10
";

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

fn weights(resources: &[Resource]) -> Vec<u32> {
    match &resources[0].spec {
        crate::config::model::Spec::VirtualService(vs) => {
            vs.http[0].route.iter().map(|d| d.weight).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_bad_version_of_a_file_keeps_its_last_good_version() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dir = ConfigDir::new(tmp.path());
    assert_eq!(
        dir.poll(),
        Some(Vec::new()),
        "an empty dir is a valid config"
    );
    assert_eq!(dir.poll(), None, "nothing changed");

    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
    assert_eq!(weights(&dir.poll().unwrap()), [90, 10]);

    // Broken: rejected, nothing published, and reported only once.
    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "\"ninety\""));
    assert_eq!(dir.poll(), None);
    assert_eq!(dir.poll(), None);
    let kept: Vec<Resource> = dir
        .files
        .values()
        .flat_map(|f| f.accepted.clone())
        .collect();
    assert_eq!(weights(&kept), [90, 10]);

    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "50"));
    assert_eq!(weights(&dir.poll().unwrap()), [50, 10]);

    // Hidden and non-YAML files are not config.
    write(tmp.path(), "notes.txt", "not yaml: [");
    assert_eq!(dir.poll(), None);

    std::fs::remove_file(tmp.path().join("vs.yaml")).unwrap();
    assert_eq!(dir.poll(), Some(Vec::new()));
}

#[test]
fn a_rejected_file_restored_to_its_last_good_content_is_loaded_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dir = ConfigDir::new(tmp.path());
    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
    assert_eq!(weights(&dir.poll().unwrap()), [90, 10]);
    let generation = dir.generation;
    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "\"ninety\""));
    assert_eq!(dir.poll(), None);
    assert_eq!(dir.rejected_files(), 1);
    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
    assert_eq!(
        weights(&dir.poll().expect("loaded again")),
        [90, 10],
        "the restored file is loaded (and a `loaded` event emitted)"
    );
    assert_eq!(dir.generation, generation + 1);
    assert_eq!(dir.rejected_files(), 0);
    assert_eq!(dir.poll(), None, "and only once");
}

#[test]
fn an_inconsistent_set_is_not_published() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dir = ConfigDir::new(tmp.path());
    write(tmp.path(), "a.yaml", &VS.replace("WEIGHT", "90"));
    assert!(dir.poll().is_some());
    // The same VirtualService defined again in another file.
    write(tmp.path(), "b.yaml", &VS.replace("WEIGHT", "50"));
    assert_eq!(dir.poll(), None);
    std::fs::remove_file(tmp.path().join("b.yaml")).unwrap();
    assert_eq!(weights(&dir.poll().unwrap()), [90, 10]);
}

fn series(metrics: &Metrics, name: &str) -> Vec<String> {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(name))
        .map(str::to_owned)
        .collect()
}

#[test]
fn rejected_files_are_counted_and_the_version_follows_the_accepted_content() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let mut dir = ConfigDir::with_metrics(tmp.path(), metrics.clone());
    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
    assert!(dir.poll().is_some());
    let v90 = dir.version();
    assert_eq!(
        series(&metrics, "remora_config_info"),
        [format!("remora_config_info{{version=\"{v90}\"}} 1")]
    );

    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "\"ninety\""));
    assert_eq!(dir.poll(), None);
    assert_eq!(dir.poll(), None, "the same content is reported once");
    assert_eq!(dir.rejected_files(), 1);
    assert_eq!(dir.version(), v90, "the last good version is in force");
    assert_eq!(
        series(&metrics, "remora_config_files_rejected"),
        ["remora_config_files_rejected 1"]
    );
    assert_eq!(
        series(&metrics, "remora_config_errors_total"),
        ["remora_config_errors_total 1"]
    );

    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "50"));
    assert!(dir.poll().is_some());
    assert_eq!(dir.rejected_files(), 0);
    assert_ne!(dir.version(), v90);
    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
    assert!(dir.poll().is_some());
    assert_eq!(dir.version(), v90, "the version is a function of content");

    // The second definition of the same VirtualService is blamed.
    write(tmp.path(), "b.yaml", &VS.replace("WEIGHT", "50"));
    assert_eq!(dir.poll(), None);
    assert_eq!(dir.rejected_files(), 1);
    assert_eq!(
        series(&metrics, "remora_config_errors_total"),
        ["remora_config_errors_total 2"]
    );
    std::fs::remove_file(tmp.path().join("b.yaml")).unwrap();
    assert!(dir.poll().is_some());
    assert_eq!(dir.rejected_files(), 0);
    assert_eq!(
        series(&metrics, "remora_config_files_rejected"),
        ["remora_config_files_rejected 0"]
    );
    assert_eq!(
        series(&metrics, "remora_config_info"),
        [format!("remora_config_info{{version=\"{v90}\"}} 1")]
    );
}

#[test]
fn a_file_over_the_limit_is_rejected_unread_and_its_last_good_version_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let good = VS.replace("WEIGHT", "90");
    let limit = good.len() as u64 + 10;
    let mut dir = ConfigDir::with_metrics(tmp.path(), metrics.clone()).with_max_file_bytes(limit);
    write(tmp.path(), "vs.yaml", &good);
    assert_eq!(weights(&dir.poll().unwrap()), [90, 10]);

    // Valid YAML, but 11 bytes too many: not even parsed.
    write(
        tmp.path(),
        "vs.yaml",
        &format!("{}#{}\n", VS.replace("WEIGHT", "50"), "x".repeat(9)),
    );
    assert_eq!(dir.poll(), None);
    assert_eq!(dir.poll(), None, "reported once");
    assert_eq!(dir.rejected_files(), 1);
    assert_eq!(
        series(&metrics, "remora_config_errors_total"),
        ["remora_config_errors_total 1"]
    );
    let kept: Vec<Resource> = dir
        .files
        .values()
        .flat_map(|f| f.accepted.clone())
        .collect();
    assert_eq!(weights(&kept), [90, 10]);

    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "50"));
    assert_eq!(weights(&dir.poll().unwrap()), [50, 10]);
    assert_eq!(dir.rejected_files(), 0);
}

#[test]
fn a_directory_of_many_files_is_followed_file_by_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dir = ConfigDir::new(tmp.path());
    for i in 0..300 {
        let vs = VS
            .replace("name: reviews", &format!("name: r{i}"))
            .replace("hosts: [reviews]", &format!("hosts: [r{i}]"))
            .replace("WEIGHT", "90");
        write(tmp.path(), &format!("{i:03}.yaml"), &vs);
    }
    assert_eq!(dir.poll().map(|r| r.len()), Some(300));
    assert_eq!(dir.poll(), None);
    for i in (0..300).step_by(2) {
        std::fs::remove_file(tmp.path().join(format!("{i:03}.yaml"))).unwrap();
    }
    assert_eq!(dir.poll().map(|r| r.len()), Some(150));
    assert_eq!(dir.files.len(), 150);
}

#[test]
fn the_watcher_publishes_changes_and_its_thread_ends_when_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = Arc::new(Mesh::new());
    let mut config = mesh.config();
    // No runtime: the watcher is a plain thread.
    let watcher = Watcher::spawn(ConfigDir::new(tmp.path()), Arc::clone(&mesh)).unwrap();
    write(tmp.path(), "vs.yaml", &VS.replace("WEIGHT", "90"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while config.borrow_and_update().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing published");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(weights(&config.borrow()), [90, 10]);
    drop(watcher);
    assert_eq!(
        Arc::strong_count(&mesh),
        1,
        "the thread ended and let go of the mesh"
    );
}

#[test]
fn a_missing_directory_keeps_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = tmp.path().join("mesh");
    std::fs::create_dir(&sub).unwrap();
    let mut dir = ConfigDir::new(&sub);
    write(&sub, "vs.yaml", &VS.replace("WEIGHT", "90"));
    assert!(dir.poll().is_some());
    std::fs::remove_dir_all(&sub).unwrap();
    assert_eq!(dir.poll(), None);
}
