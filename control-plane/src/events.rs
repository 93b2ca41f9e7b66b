//! Machine-readable lifecycle events on stdout, one JSON object per line
//! (`listening`, `loaded`, `rejected`, `connected`, `disconnected`, `ack`,
//! `nack`), for scripts and tests. Logs go to stderr.

use std::io::Write;

/// Prints `{"event": name, ...fields}` as one line and flushes.
pub fn emit(name: &str, fields: serde_json::Value) {
    let mut obj = serde_json::Map::new();
    obj.insert("event".into(), name.into());
    if let serde_json::Value::Object(fields) = fields {
        obj.extend(fields);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::Value::Object(obj));
    let _ = out.flush();
}
