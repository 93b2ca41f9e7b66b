//! Reading Istio-style YAML into Remora's validated config model.
//!
//! [`parse_file`] and [`parse_str`] read one file (any number of `---`
//! separated documents) with one hand-written walker over the YAML node
//! tree, so that every [`Diagnostic`] names the file, the 1-based line of
//! the offending node, the resource (`VirtualService default/reviews`) and
//! the field path (`spec.http[1].route[0].weight`). [`check_references`]
//! then looks across all files for duplicates and dangling subsets.
//!
//! A file is all-or-nothing: [`FileOutcome::resources`] holds what parsed
//! cleanly, but when [`FileOutcome::has_errors`] is true the server
//! rejects the whole file and keeps that file's last good version.
//!
//! Unknown fields are errors (with a "did you mean" hint), and so are Istio
//! fields Remora does not support yet: nothing in a file is silently ignored.

mod authorization_policy;
mod cursor;
mod destination_rule;
mod error;
mod files;
pub mod model;
mod parse;
mod peer_authentication;
mod references;
mod resilience;
mod selector;
mod service_entry;
mod sidecar;
mod string_match;
mod suggest;
#[cfg(test)]
mod test_support;
mod values;
mod virtual_service;

/// Istio's mesh root namespace, the default of `--root-namespace`.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Checks a namespace given on the command line (`--root-namespace`): a
/// DNS-1123 label, as `metadata.namespace` must be.
pub fn namespace_arg(name: &str) -> Result<String, String> {
    if values::is_dns1123_label(name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "`{name}` is not a valid namespace: use at most 63 lowercase letters, digits and \
             `-`, starting and ending with a letter or digit"
        ))
    }
}

pub use error::{Diagnostic, FileOutcome, Severity};
pub use files::{FileRead, MAX_CONFIG_FILE_BYTES, read_config_file, too_large, yaml_files};
pub use parse::{parse_file, parse_str};
pub use references::{check_references, qualify_host};
/// Kubernetes names (RFC 1123 labels): namespaces and service names.
pub(crate) use values::is_dns1123_label;
/// Go-style durations (`24h`, `1h30m`, `10s`), as in the YAML; also used by CLI flags.
pub(crate) use values::parse_duration;
