//! Istio's `StringMatch` (`exact`, `prefix`, `regex`) and the named maps of
//! them (`headers`, `queryParams`).

use super::cursor::{Ctx, Node, Schema};
use super::model::StringMatch;

const STRING_MATCH: Schema = Schema {
    known: &["exact", "prefix", "regex"],
    unsupported: &[],
};

/// Whether `{}` is allowed, meaning "the header or parameter is present".
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Present {
    Allowed,
    NotAllowed,
}

/// Which named map is read: header names are case-insensitive and lower-cased;
/// query parameters keep their case and, as in Istio, take no `prefix`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    Headers,
    QueryParams,
}

/// Reads one StringMatch. `Some(None)` is "present" (only when allowed);
/// `None` means an error was recorded.
pub(crate) fn parse(
    ctx: &mut Ctx,
    node: &Node<'_>,
    present: Present,
) -> Option<Option<StringMatch>> {
    parse_with(ctx, node, present, true)
}

fn parse_with(
    ctx: &mut Ctx,
    node: &Node<'_>,
    present: Present,
    prefix_allowed: bool,
) -> Option<Option<StringMatch>> {
    let errors = ctx.resource_errors();
    let m = node.map(ctx, &STRING_MATCH)?;
    let given: Vec<&str> = STRING_MATCH
        .known
        .iter()
        .copied()
        .filter(|k| m.get(k).is_some())
        .collect();
    let result = match given.as_slice() {
        [] if present == Present::Allowed => None,
        [] => {
            if ctx.resource_errors() == errors {
                ctx.error(
                    m.line(),
                    node.path(),
                    "needs exactly one of `exact`, `prefix` or `regex`",
                );
            }
            return None;
        }
        [key] => {
            let value_node = m.get(key)?;
            let value = value_node.str(ctx)?.to_owned();
            match *key {
                "exact" => Some(StringMatch::Exact(value)),
                "prefix" if !prefix_allowed => {
                    ctx.error(
                        value_node.line(),
                        value_node.path(),
                        "`prefix` is not supported for `queryParams` (as in Istio); \
                         use `exact` or `regex`",
                    );
                    return None;
                }
                "prefix" => Some(StringMatch::Prefix(value)),
                _ => {
                    if let Err(e) = regex::Regex::new(&value) {
                        ctx.error(
                            value_node.line(),
                            value_node.path(),
                            format!("invalid regex `{value}`: {}", regex_error(&e)),
                        );
                        return None;
                    }
                    if !fits_proxies(&value) {
                        ctx.warn(
                            value_node.line(),
                            value_node.path(),
                            format!(
                                "this regex compiles to more than the {} KiB a proxy accepts: \
                                 every proxy will refuse the config (NACK) and keep the one \
                                 it has; use a shorter pattern or smaller repetition counts",
                                remora_proto::REGEX_SIZE_LIMIT / 1024
                            ),
                        );
                    }
                    Some(StringMatch::Regex(value))
                }
            }
        }
        several => {
            let names: Vec<String> = several.iter().map(|k| format!("`{k}`")).collect();
            ctx.error(
                m.line(),
                node.path(),
                format!(
                    "has {}; a StringMatch takes exactly one of `exact`, `prefix` or `regex`",
                    names.join(" and ")
                ),
            );
            return None;
        }
    };
    (ctx.resource_errors() == errors).then_some(result)
}

/// Whether a proxy will compile `regex` as it does: anchored, under its size
/// limit. Not an error here, as istiod does not refuse such a regex either
/// (Envoy does); but the proxies' NACK would be the first anyone heard of it.
fn fits_proxies(regex: &str) -> bool {
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(remora_proto::REGEX_SIZE_LIMIT)
        .build()
        .is_ok()
}

/// The one-line cause of a regex error (the crate's message spans several lines).
fn regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

/// Reads `headers` or `queryParams`: name → StringMatch, `{}` meaning present.
pub(crate) fn named(
    ctx: &mut Ctx,
    node: &Node<'_>,
    names: Names,
) -> Option<Vec<(String, Option<StringMatch>)>> {
    let errors = ctx.resource_errors();
    let mut out: Vec<(String, Option<StringMatch>)> = Vec::new();
    for entry in node.entries(ctx)? {
        let name = match names {
            Names::Headers => entry.key.to_ascii_lowercase(),
            Names::QueryParams => entry.key.to_owned(),
        };
        let valid = match names {
            Names::Headers => !name.is_empty() && name.bytes().all(is_token_byte),
            Names::QueryParams => !name.is_empty(),
        };
        if !valid {
            ctx.error(
                entry.key_line,
                entry.value.path(),
                format!("`{}` is not a valid name", entry.key),
            );
            continue;
        }
        if out.iter().any(|(n, _)| *n == name) {
            ctx.error(
                entry.key_line,
                entry.value.path(),
                format!("`{name}` is given twice (header names ignore case)"),
            );
            continue;
        }
        let prefix_allowed = names == Names::Headers;
        if let Some(m) = parse_with(ctx, &entry.value, Present::Allowed, prefix_allowed) {
            out.push((name, m));
        }
    }
    (ctx.resource_errors() == errors).then_some(out)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
