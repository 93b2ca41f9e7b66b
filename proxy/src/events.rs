//! Machine-readable lifecycle events on stdout, one JSON object per line
//! (`listening`, `ready`, `applied`, `rejected`), for scripts and tests.
//! Logs go to stderr.

use std::io::Write;

/// Prints `{"event": name, key: value, ...}` and flushes.
pub fn emit(name: &str, fields: &[(&str, &str)]) {
    let mut obj = serde_json::Map::new();
    obj.insert("event".into(), name.into());
    for (k, v) in fields {
        obj.insert((*k).into(), (*v).into());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::Value::Object(obj));
    let _ = out.flush();
}
