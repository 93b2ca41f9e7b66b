use super::*;

#[test]
fn directory_expands_to_sorted_visible_yaml_files_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in [
        "b.yaml",
        "a.yml",
        "c.YAML",
        ".hidden.yaml",
        "notes.txt",
        "d.json",
    ] {
        std::fs::write(dir.path().join(name), "").expect("write");
    }
    std::fs::create_dir(dir.path().join("nested.yaml")).expect("mkdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("sub/e.yaml"), "").expect("write");

    let files = yaml_files(&[dir.path().to_path_buf()]).expect("files");
    let names: Vec<_> = files
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["a.yml", "b.yaml", "c.YAML"]);
}

#[test]
fn file_is_taken_as_is_and_duplicates_are_read_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notes = dir.path().join("notes.txt");
    let a = dir.path().join("a.yaml");
    std::fs::write(&notes, "").expect("write");
    std::fs::write(&a, "").expect("write");
    let files = yaml_files(&[notes.clone(), a.clone(), dir.path().to_path_buf()]).expect("files");
    assert_eq!(files, [notes, a]);
}

#[test]
fn a_file_over_the_limit_is_not_read_and_the_error_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, vec![b'#'; 1001]).expect("write");
    assert_eq!(
        read_config_file(&path, 1000).expect("read"),
        FileRead::TooLarge { size: 1001 }
    );
    assert_eq!(
        read_config_file(&path, 1001).expect("read"),
        FileRead::Bytes(vec![b'#'; 1001])
    );
    let text = too_large(&path, 1001, 1000).to_string();
    assert!(
        text.starts_with(&format!(
            "{}: error: the file is 1001 bytes",
            path.display()
        )) && text.contains("limit of 1000 bytes"),
        "{text}"
    );
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let err = yaml_files(std::slice::from_ref(&missing)).expect_err("missing");
    assert_eq!(err.file, missing);
    assert!(
        err.to_string()
            .starts_with(&format!("{}: error: cannot read:", missing.display()))
    );
}
