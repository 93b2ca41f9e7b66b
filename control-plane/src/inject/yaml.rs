//! Small helpers over saphyr's [`Yaml`] tree: building nodes, reaching into
//! mappings with errors that name the field, and writing documents out.

use std::borrow::Cow;

use saphyr::{Mapping, Scalar, ScalarStyle, Yaml, YamlEmitter};

/// A problem at one field of a document: the path (`spec.template.spec`)
/// and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldError {
    /// Dotted path from the document's root, with `[i]` for list items.
    pub(super) field: String,
    /// What is wrong.
    pub(super) message: String,
}

impl FieldError {
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A string scalar.
pub(super) fn string<'a>(value: impl Into<String>) -> Yaml<'a> {
    Yaml::Value(Scalar::String(Cow::Owned(value.into())))
}

/// An integer scalar.
pub(super) fn int<'a>(value: i64) -> Yaml<'a> {
    Yaml::Value(Scalar::Integer(value))
}

/// A boolean scalar.
pub(super) fn boolean<'a>(value: bool) -> Yaml<'a> {
    Yaml::Value(Scalar::Boolean(value))
}

/// A mapping with these entries, in this order.
pub(super) fn map<'a>(entries: impl IntoIterator<Item = (&'static str, Yaml<'a>)>) -> Yaml<'a> {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(string(k), v);
    }
    Yaml::Mapping(m)
}

/// A sequence of these items.
pub(super) fn seq<'a>(items: impl IntoIterator<Item = Yaml<'a>>) -> Yaml<'a> {
    Yaml::Sequence(items.into_iter().collect())
}

/// A sequence of strings.
pub(super) fn strings<'a, S: Into<String>>(items: impl IntoIterator<Item = S>) -> Yaml<'a> {
    seq(items.into_iter().map(string))
}

/// What kind of node this is, for error messages.
pub(super) fn describe(node: &Yaml<'_>) -> &'static str {
    match node {
        Yaml::Mapping(_) => "a mapping",
        Yaml::Sequence(_) => "a list",
        Yaml::Value(Scalar::String(_)) => "a string",
        Yaml::Value(Scalar::Integer(_)) => "a number",
        Yaml::Value(Scalar::FloatingPoint(_)) => "a number",
        Yaml::Value(Scalar::Boolean(_)) => "a boolean",
        Yaml::Value(Scalar::Null) => "null",
        _ => "an unsupported node",
    }
}

/// Joins a path and a key: `spec` + `template` = `spec.template`.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The value of `key` in `node` when `node` is a mapping.
pub(super) fn get<'n, 'a>(node: &'n Yaml<'a>, key: &str) -> Option<&'n Yaml<'a>> {
    node.as_mapping_get(key)
}

/// The string at `key`, `None` when absent or null; an error naming the
/// field when it is there but not a string.
pub(super) fn get_str<'n>(
    node: &'n Yaml<'_>,
    key: &str,
    path: &str,
) -> Result<Option<&'n str>, FieldError> {
    match get(node, key) {
        None | Some(Yaml::Value(Scalar::Null)) => Ok(None),
        Some(Yaml::Value(Scalar::String(s))) => Ok(Some(s.as_ref())),
        Some(other) => Err(FieldError::new(
            join(path, key),
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

/// The mapping at `key` of `node`, made (empty) when absent or null; an
/// error naming the field when it is something else.
pub(super) fn mapping_mut<'n, 'a>(
    node: &'n mut Yaml<'a>,
    key: &str,
    path: &str,
) -> Result<&'n mut Mapping<'a>, FieldError> {
    match slot_mut(node, key, path, || Yaml::Mapping(Mapping::new()))? {
        Yaml::Mapping(inner) => Ok(inner),
        other => Err(FieldError::new(
            join(path, key),
            format!("expected a mapping, found {}", describe(other)),
        )),
    }
}

/// The list at `key` of `node`, made (empty) when absent or null.
pub(super) fn sequence_mut<'n, 'a>(
    node: &'n mut Yaml<'a>,
    key: &str,
    path: &str,
) -> Result<&'n mut Vec<Yaml<'a>>, FieldError> {
    match slot_mut(node, key, path, || Yaml::Sequence(Vec::new()))? {
        Yaml::Sequence(inner) => Ok(inner),
        other => Err(FieldError::new(
            join(path, key),
            format!("expected a list, found {}", describe(other)),
        )),
    }
}

/// The value at `key` of the mapping `node`, set to `empty()` when absent or
/// null; an error naming `path` when `node` is no mapping.
fn slot_mut<'n, 'a>(
    node: &'n mut Yaml<'a>,
    key: &str,
    path: &str,
    empty: impl FnOnce() -> Yaml<'a>,
) -> Result<&'n mut Yaml<'a>, FieldError> {
    let Yaml::Mapping(m) = node else {
        return Err(FieldError::new(
            path,
            format!("expected a mapping, found {}", describe(node)),
        ));
    };
    let slot = m.entry(string(key)).or_insert(Yaml::Value(Scalar::Null));
    if matches!(slot, Yaml::Value(Scalar::Null)) {
        *slot = empty();
    }
    Ok(slot)
}

/// The node at `key`, which must be a mapping (an error naming the field if
/// it is absent or anything else).
pub(super) fn require_mapping<'n, 'a>(
    node: &'n mut Yaml<'a>,
    key: &str,
    path: &str,
) -> Result<&'n mut Yaml<'a>, FieldError> {
    let field = join(path, key);
    match node.as_mapping_get_mut(key) {
        Some(inner @ Yaml::Mapping(_)) => Ok(inner),
        Some(other) => {
            let found = describe(other);
            Err(FieldError::new(
                field,
                format!("expected a mapping, found {found}"),
            ))
        }
        None => Err(FieldError::new(field, "is missing")),
    }
}

/// Checks that nothing in the tree is a node the writer cannot write back
/// as read (a tag, an unresolved alias), so that output never silently
/// loses part of the input.
pub(super) fn check_writable(node: &Yaml<'_>, path: &str) -> Result<(), FieldError> {
    match node {
        Yaml::Mapping(m) => {
            for (k, v) in m {
                let key = match k {
                    Yaml::Value(Scalar::String(s)) => s.to_string(),
                    Yaml::Value(_) => format!("{k:?}"),
                    _ => {
                        return Err(FieldError::new(
                            path,
                            "a key that is not a scalar is not supported",
                        ));
                    }
                };
                check_writable(v, &join(path, &key))?;
            }
            Ok(())
        }
        Yaml::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                check_writable(item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Yaml::Value(_) => Ok(()),
        Yaml::Tagged(tag, _) => Err(FieldError::new(
            path,
            format!("the tag {tag} is not supported; write the plain value"),
        )),
        _ => Err(FieldError::new(path, "this node cannot be read")),
    }
}

/// Writes the documents as one multi-document YAML stream, each starting
/// with `---`, multi-line strings as literal blocks, and every string that
/// a YAML 1.1 reader could take for something else quoted
/// ([`quote_ambiguous`]).
pub(super) fn write_documents(docs: &[Yaml<'_>]) -> Result<String, saphyr::EmitError> {
    let mut out = String::new();
    for doc in docs {
        let mut doc = doc.clone();
        quote_ambiguous(&mut doc);
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline(true);
        emitter.dump(&doc)?;
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Marks for double quotes every string scalar (keys too) that the emitter
/// would write plain but that a YAML 1.1 reader (Kubernetes' and Compose
/// v1's YAML libraries) resolves to another type: dates (`2024-01-01`),
/// binary and underscored numbers (`0b101`, `1_000`) and `y`/`n`. The
/// emitter already quotes YAML 1.2's booleans, nulls and numbers and 1.1's
/// `yes`/`on`/`off`. Rather than list 1.1's every form, any string that
/// starts like a number is quoted: a quoted string is a string to every
/// reader.
fn quote_ambiguous(node: &mut Yaml<'_>) {
    match node {
        Yaml::Mapping(m) => {
            let entries = std::mem::take(m);
            for (mut k, mut v) in entries {
                quote_ambiguous(&mut k);
                quote_ambiguous(&mut v);
                m.insert(k, v);
            }
        }
        Yaml::Sequence(items) => items.iter_mut().for_each(quote_ambiguous),
        Yaml::Value(Scalar::String(s)) if ambiguous_in_yaml_1_1(s) => {
            let text = std::mem::take(s);
            *node = Yaml::Representation(text, ScalarStyle::DoubleQuoted, None);
        }
        _ => {}
    }
}

/// Whether `s`, written plain, could be read as a non-string by a YAML 1.1
/// reader although the emitter would write it plain; only strings that
/// need no escaping between double quotes qualify (the emitter quotes and
/// escapes the others itself).
fn ambiguous_in_yaml_1_1(s: &str) -> bool {
    let plain_safe = s.chars().all(|c| !c.is_control() && c != '"' && c != '\\');
    let starts_like_a_number = matches!(
        s.as_bytes(),
        [b'0'..=b'9', ..] | [b'+' | b'-' | b'.', b'0'..=b'9', ..]
    );
    plain_safe && (starts_like_a_number || matches!(s, "y" | "Y" | "n" | "N"))
}
