//! Diagnostics: what the parser says about a file, and where.

use std::fmt;
use std::path::PathBuf;

use super::model::Resource;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The file cannot be used: the server keeps that file's last good version.
    Error,
    /// The file loads, but something in it does not do what it seems to.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about a config file, pointing at the offending YAML node.
///
/// Renders as
/// `{file}:{line}: error: VirtualService default/reviews: spec.http[1].route[0].weight: {message}`;
/// the line, resource and field parts are left out when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the finding is about.
    pub file: PathBuf,
    /// The 1-based line of the offending node in `file`.
    pub line: Option<usize>,
    /// The resource, as `Kind namespace/name`, when known.
    pub resource: Option<String>,
    /// The field path, such as `spec.http[1].route[0].weight`, when known.
    pub field: Option<String>,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl Diagnostic {
    /// An error about a whole file (unreadable, missing, not UTF-8).
    pub fn file_error(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            line: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    /// Whether this is an [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: ", self.severity)?;
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// What parsing one file produced.
///
/// `resources` holds every resource of the file that parsed without an
/// error; `diagnostics` holds every error and warning, in file order.
/// A file is all-or-nothing for the server: when [`FileOutcome::has_errors`]
/// is true it rejects the whole file and keeps that file's last good
/// version, so a half-valid file never changes the running config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileOutcome {
    /// The resources that parsed cleanly.
    pub resources: Vec<Resource>,
    /// Errors and warnings, in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
}

impl FileOutcome {
    /// Whether any diagnostic is an [`Severity::Error`].
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}
