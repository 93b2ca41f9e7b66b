//! A typed cursor over the YAML node tree that records diagnostics.
//!
//! Every accessor either returns the value in the shape asked for, or
//! records an error naming the node's line and field path and returns
//! `None`. Callers carry on with the next field, so one pass reports every
//! problem in a document.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::error::{Diagnostic, Severity};
use super::suggest::closest;

/// Collects the diagnostics of one file and knows which resource is being read.
pub(crate) struct Ctx {
    file: PathBuf,
    resource: Option<String>,
    errors_in_resource: usize,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Ctx {
    pub(crate) fn new(file: &Path) -> Self {
        Ctx {
            file: file.to_path_buf(),
            resource: None,
            errors_in_resource: 0,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Starts a new resource: later diagnostics name it, and its error count restarts.
    pub(crate) fn begin_resource(&mut self, resource: Option<String>) {
        self.resource = resource;
        self.errors_in_resource = 0;
    }

    /// Errors recorded since the last [`Ctx::begin_resource`].
    pub(crate) fn resource_errors(&self) -> usize {
        self.errors_in_resource
    }

    pub(crate) fn error(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, Some(line), field, message.into());
    }

    pub(crate) fn warn(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, Some(line), field, message.into());
    }

    /// An error with no node to point at (the YAML did not even parse).
    pub(crate) fn error_at_line(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.push(Severity::Error, line, "", message.into());
    }

    fn push(&mut self, severity: Severity, line: Option<usize>, field: &str, message: String) {
        if severity == Severity::Error {
            self.errors_in_resource += 1;
        }
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            resource: self.resource.clone(),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message,
        });
    }
}

/// The fields an object may have.
pub(crate) struct Schema {
    /// Fields Remora reads.
    pub(crate) known: &'static [&'static str],
    /// Istio fields Remora does not support yet: an error, not "unknown".
    pub(crate) unsupported: &'static [&'static str],
}

/// A YAML node and the field path that leads to it.
#[derive(Clone)]
pub(crate) struct Node<'a> {
    yaml: &'a MarkedYaml<'a>,
    path: String,
    /// The line of the key that names this node, or of the node itself for
    /// list items and the root: where a reader looks for the field.
    line: usize,
}

impl<'a> Node<'a> {
    pub(crate) fn root(yaml: &'a MarkedYaml<'a>) -> Self {
        Node {
            yaml,
            path: String::new(),
            line: yaml.span.start.line().max(1),
        }
    }

    /// The 1-based line of the node (of its key, for a mapping's value).
    pub(crate) fn line(&self) -> usize {
        self.line
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The path of a field of this node.
    pub(crate) fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn child(&self, key: &str, key_line: usize, yaml: &'a MarkedYaml<'a>) -> Node<'a> {
        Node {
            yaml,
            path: self.field_path(key),
            line: key_line,
        }
    }

    /// True for `~`, `null`, an empty value, or an empty document.
    pub(crate) fn is_null(&self) -> bool {
        matches!(self.yaml.data, YamlData::Value(Scalar::Null))
    }

    pub(crate) fn is_mapping(&self) -> bool {
        matches!(self.yaml.data, YamlData::Mapping(_))
    }

    fn type_error(&self, ctx: &mut Ctx, expected: &str) {
        ctx.error(
            self.line(),
            &self.path,
            format!("must be {expected}, got {}", describe(self.yaml)),
        );
    }

    pub(crate) fn str(&self, ctx: &mut Ctx) -> Option<&'a str> {
        match &self.yaml.data {
            YamlData::Value(Scalar::String(s)) => Some(s),
            YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_) | Scalar::Boolean(_)) => {
                ctx.error(
                    self.line(),
                    &self.path,
                    format!(
                        "must be a string, got {} (quote it to make it a string)",
                        describe(self.yaml)
                    ),
                );
                None
            }
            _ => {
                self.type_error(ctx, "a string");
                None
            }
        }
    }

    /// A non-empty string.
    pub(crate) fn non_empty_str(&self, ctx: &mut Ctx) -> Option<&'a str> {
        let s = self.str(ctx)?;
        if s.is_empty() {
            ctx.error(self.line(), &self.path, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub(crate) fn int(&self, ctx: &mut Ctx) -> Option<i64> {
        match &self.yaml.data {
            YamlData::Value(Scalar::Integer(i)) => Some(*i),
            YamlData::Value(Scalar::String(s)) if s.trim().parse::<i64>().is_ok() => {
                ctx.error(
                    self.line(),
                    &self.path,
                    format!("must be an integer, got string {s:?} (remove the quotes)"),
                );
                None
            }
            _ => {
                self.type_error(ctx, "an integer");
                None
            }
        }
    }

    /// An integer within `range`.
    pub(crate) fn int_in(&self, ctx: &mut Ctx, range: RangeInclusive<i64>) -> Option<i64> {
        let value = self.int(ctx)?;
        if !range.contains(&value) {
            ctx.error(
                self.line(),
                &self.path,
                format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        Some(value)
    }

    /// A non-negative integer that fits a `u32`.
    pub(crate) fn u32(&self, ctx: &mut Ctx) -> Option<u32> {
        let value = self.int_in(ctx, 0..=i64::from(u32::MAX))?;
        u32::try_from(value).ok()
    }

    /// A port number, 1..=65535.
    pub(crate) fn port(&self, ctx: &mut Ctx) -> Option<u16> {
        let value = self.int_in(ctx, 1..=65535)?;
        u16::try_from(value).ok()
    }

    /// A number (integer or float).
    pub(crate) fn number(&self, ctx: &mut Ctx) -> Option<f64> {
        match &self.yaml.data {
            #[allow(clippy::cast_precision_loss)] // percentages: small integers, exact in f64
            YamlData::Value(Scalar::Integer(i)) => Some(*i as f64),
            YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.into_inner()),
            _ => {
                self.type_error(ctx, "a number");
                None
            }
        }
    }

    pub(crate) fn bool(&self, ctx: &mut Ctx) -> Option<bool> {
        match &self.yaml.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.type_error(ctx, "a boolean (true or false)");
                None
            }
        }
    }

    /// The items of a list, each with its `path[i]`.
    pub(crate) fn seq(&self, ctx: &mut Ctx) -> Option<Vec<Node<'a>>> {
        match &self.yaml.data {
            YamlData::Sequence(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, yaml)| Node {
                        yaml,
                        path: format!("{}[{i}]", self.path),
                        line: yaml.span.start.line().max(1),
                    })
                    .collect(),
            ),
            _ => {
                self.type_error(ctx, "a list");
                None
            }
        }
    }

    /// A list with at least one item.
    pub(crate) fn non_empty_seq(&self, ctx: &mut Ctx) -> Option<Vec<Node<'a>>> {
        let items = self.seq(ctx)?;
        if items.is_empty() {
            ctx.error(self.line(), &self.path, "must have at least one entry");
            return None;
        }
        Some(items)
    }

    /// The entries of a free-form mapping (`labels`, `headers`, ...), in
    /// file order. Keys must be strings.
    pub(crate) fn entries(&self, ctx: &mut Ctx) -> Option<Vec<Entry<'a>>> {
        let YamlData::Mapping(map) = &self.yaml.data else {
            self.type_error(ctx, "a mapping");
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        let mut bad_key = false;
        for (key, value) in map {
            let key_line = key.span.start.line().max(1);
            match &key.data {
                YamlData::Value(Scalar::String(name)) => entries.push(Entry {
                    key: name,
                    key_line,
                    value: self.child(name, key_line, value),
                }),
                _ => {
                    ctx.error(
                        key_line,
                        &self.path,
                        format!("field names must be strings, got {}", describe(key)),
                    );
                    bad_key = true;
                }
            }
        }
        (!bad_key).then_some(entries)
    }

    /// The entries of a mapping keyed by port number (`portLevelMtls`), in
    /// file order. Keys are integers (or decimal strings, as JSON has them)
    /// in 1..=65535, each at most once; each value's path is `path.<port>`.
    pub(crate) fn port_entries(&self, ctx: &mut Ctx) -> Option<Vec<(u16, Node<'a>)>> {
        let YamlData::Mapping(map) = &self.yaml.data else {
            self.type_error(ctx, "a mapping of port numbers");
            return None;
        };
        let mut out: Vec<(u16, Node<'a>)> = Vec::with_capacity(map.len());
        let mut ok = true;
        for (key, value) in map {
            let key_line = key.span.start.line().max(1);
            let number = match &key.data {
                YamlData::Value(Scalar::Integer(i)) => Some(*i),
                YamlData::Value(Scalar::String(s)) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            let port = number
                .and_then(|n| u16::try_from(n).ok())
                .filter(|p| *p != 0);
            let Some(port) = port else {
                ctx.error(
                    key_line,
                    &self.path,
                    format!(
                        "keys must be port numbers between 1 and 65535, got {}",
                        describe(key)
                    ),
                );
                ok = false;
                continue;
            };
            let child = self.child(&port.to_string(), key_line, value);
            if let Some((_, first)) = out.iter().find(|(p, _)| *p == port) {
                ctx.error(
                    key_line,
                    child.path(),
                    format!(
                        "port {port} is given twice (first at line {})",
                        first.line()
                    ),
                );
                ok = false;
                continue;
            }
            out.push((port, child));
        }
        ok.then_some(out)
    }

    /// A mapping with a fixed set of fields. Unknown fields and fields
    /// Remora does not support yet are reported; the rest are returned.
    pub(crate) fn map(&self, ctx: &mut Ctx, schema: &Schema) -> Option<Map<'a>> {
        let entries = self.entries(ctx)?;
        let mut fields = Vec::with_capacity(entries.len());
        for entry in entries {
            let path = self.field_path(entry.key);
            if schema.known.contains(&entry.key) {
                fields.push(entry);
            } else if schema.unsupported.contains(&entry.key) {
                ctx.error(
                    entry.key_line,
                    &path,
                    format!("`{}` is not supported by Remora yet", entry.key),
                );
            } else {
                let candidates = schema.known.iter().chain(schema.unsupported);
                let hint = match closest(entry.key, candidates.copied()) {
                    Some(name) => format!("; did you mean `{name}`?"),
                    None => format!("; expected one of {}", list(schema.known)),
                };
                ctx.error(
                    entry.key_line,
                    &path,
                    format!("unknown field `{}`{hint}", entry.key),
                );
            }
        }
        Some(Map {
            node: self.clone(),
            fields,
        })
    }

    /// A mapping of strings to strings, such as `labels`.
    pub(crate) fn string_map(&self, ctx: &mut Ctx) -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut ok = true;
        for entry in self.entries(ctx)? {
            match entry.value.str(ctx) {
                Some(value) => {
                    out.insert(entry.key.to_owned(), value.to_owned());
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// One `key: value` of a mapping.
pub(crate) struct Entry<'a> {
    pub(crate) key: &'a str,
    pub(crate) key_line: usize,
    pub(crate) value: Node<'a>,
}

/// The accepted fields of a mapping read through a [`Schema`].
pub(crate) struct Map<'a> {
    node: Node<'a>,
    fields: Vec<Entry<'a>>,
}

impl<'a> Map<'a> {
    pub(crate) fn line(&self) -> usize {
        self.node.line()
    }

    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.fields.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// The line of `key` itself, if present.
    pub(crate) fn key_line(&self, key: &str) -> Option<usize> {
        self.fields
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.key_line)
    }

    /// The value of `key`; an error when it is missing.
    pub(crate) fn required(&self, ctx: &mut Ctx, key: &str) -> Option<&Node<'a>> {
        let value = self.get(key);
        if value.is_none() {
            ctx.error(
                self.line(),
                &self.node.field_path(key),
                format!("missing required field `{key}`"),
            );
        }
        value
    }
}

/// `a`, `b`, `c` for messages.
pub(crate) fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a value reads in a type error: `string "10"`, `integer 10`, `a list`.
fn describe(yaml: &MarkedYaml<'_>) -> String {
    match &yaml.data {
        YamlData::Value(Scalar::String(s)) => format!("string {s:?}"),
        YamlData::Value(Scalar::Integer(i)) => format!("integer {i}"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("number {}", f.into_inner()),
        YamlData::Value(Scalar::Boolean(b)) => format!("boolean {b}"),
        YamlData::Value(Scalar::Null) => "nothing (null)".to_owned(),
        YamlData::Sequence(_) => "a list".to_owned(),
        YamlData::Mapping(_) => "a mapping".to_owned(),
        YamlData::Tagged(tag, _) => format!("a value tagged `{tag}`"),
        YamlData::Representation(s, _, _) => format!("{s:?}"),
        YamlData::Alias(_) | YamlData::BadValue => {
            "an invalid value (a YAML tag it does not match, or an unknown alias)".to_owned()
        }
    }
}

/// `Option<Option<T>>` where the inner `None` means "present but invalid".
pub(crate) trait TransposeNone<T> {
    /// `None` (absent) → `Some(None)`; `Some(Some(v))` → `Some(Some(v))`;
    /// `Some(None)` (invalid) → `None`.
    fn transpose_none(self) -> Option<Option<T>>;
}

impl<T> TransposeNone<T> for Option<Option<T>> {
    fn transpose_none(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(Some(v)) => Some(Some(v)),
            Some(None) => None,
        }
    }
}
