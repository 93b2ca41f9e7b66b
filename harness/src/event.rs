//! One line of a process's stdout.

use std::time::Instant;

use serde_json::Value;

/// One JSON object a process printed on stdout, with the time it was read.
#[derive(Debug, Clone)]
pub struct Event {
    /// When the harness read the line (shortly after the process wrote it).
    pub at: Instant,
    /// The JSON object as printed.
    pub value: Value,
}

impl Event {
    /// The `event` field, or `""` if absent.
    pub fn name(&self) -> &str {
        self.str("event")
    }

    /// A string field, or `""` if absent.
    pub fn str(&self, key: &str) -> &str {
        self.value[key].as_str().unwrap_or("")
    }
}
