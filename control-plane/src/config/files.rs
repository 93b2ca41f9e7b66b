//! Which files a list of command-line paths stands for.

use std::path::PathBuf;

use super::error::Diagnostic;

/// Expands `paths` into the YAML files to read, in order.
///
/// A directory stands for its `*.yaml` and `*.yml` files (not recursive,
/// sorted by name, hidden files skipped); a file is taken as is, whatever
/// its name. A path given twice is read once. A missing path or an
/// unreadable directory is an error.
pub fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut out: Vec<PathBuf> = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path)
            .map_err(|e| Diagnostic::file_error(path, format!("cannot read: {e}")))?;
        if !metadata.is_dir() {
            push_unique(&mut out, path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| Diagnostic::file_error(path, format!("cannot list directory: {e}")))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| Diagnostic::file_error(path, format!("cannot list directory: {e}")))?;
            let file = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_yaml = file.extension().is_some_and(|ext| {
                ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml")
            });
            if is_yaml && !name.starts_with('.') && file.is_file() {
                found.push(file);
            }
        }
        found.sort();
        for file in found {
            push_unique(&mut out, file);
        }
    }
    Ok(out)
}

fn push_unique(out: &mut Vec<PathBuf>, path: PathBuf) {
    if !out.contains(&path) {
        out.push(path);
    }
}

#[cfg(test)]
mod tests {
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
        let files =
            yaml_files(&[notes.clone(), a.clone(), dir.path().to_path_buf()]).expect("files");
        assert_eq!(files, [notes, a]);
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
}
