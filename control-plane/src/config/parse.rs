//! Files and documents: YAML syntax, `apiVersion`, `kind`, `metadata`, and
//! dispatch of `spec` to the reader of each kind.

use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Marker, Scalar, YamlData};
use saphyr_parser::{Event, Parser};

use super::cursor::{Ctx, Map, Node, Schema};
use super::error::{Diagnostic, FileOutcome};
use super::model::{Kind, Meta, Resource, Spec};
use super::suggest::closest;
use super::{
    authorization_policy, destination_rule, peer_authentication, service_entry, sidecar, values,
    virtual_service,
};

/// How deep YAML may nest. Istio resources need about 10 levels.
const MAX_DEPTH: usize = 64;

const ROOT: Schema = Schema {
    known: &["apiVersion", "kind", "metadata", "spec", "status"],
    unsupported: &[],
};

const METADATA: Schema = Schema {
    known: &["name", "namespace", "labels", "annotations"],
    unsupported: &[],
};

const NETWORKING_VERSIONS: &[&str] = &[
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

const SECURITY_VERSIONS: &[&str] = &["security.istio.io/v1", "security.istio.io/v1beta1"];

const SUPPORTED_KINDS: &str = "VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, \
     Sidecar (networking.istio.io/v1, v1beta1, v1alpha3), PeerAuthentication and \
     AuthorizationPolicy (security.istio.io/v1, v1beta1)";

const KIND_NAMES: &[&str] = &[
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "WorkloadEntry",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "Sidecar",
];

/// Parses every YAML document of `text`; see [`FileOutcome`] for what a
/// caller does with errors. Never panics, whatever the input.
pub fn parse_str(file: &Path, text: &str) -> FileOutcome {
    let mut ctx = Ctx::new(file);
    let resources = documents(&mut ctx, text.strip_prefix('\u{feff}').unwrap_or(text));
    let mut diagnostics = ctx.diagnostics;
    // File order; stable, so findings on one line keep the order they were found in.
    diagnostics.sort_by_key(|d| d.line);
    FileOutcome {
        resources,
        diagnostics,
    }
}

/// Loads the YAML tree and reads each document.
fn documents(ctx: &mut Ctx, text: &str) -> Vec<Resource> {
    if let Some(marker) = too_deep(text) {
        ctx.error_at_line(
            Some(marker.line().max(1)),
            format!("YAML nested more than {MAX_DEPTH} levels deep; no Istio resource needs that"),
        );
        return Vec::new();
    }
    match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs.iter().filter_map(|doc| document(ctx, doc)).collect(),
        Err(e) => {
            ctx.error_at_line(
                Some(e.marker().line().max(1)),
                format!(
                    "invalid YAML: {} (column {})",
                    e.info(),
                    e.marker().col() + 1
                ),
            );
            Vec::new()
        }
    }
}

/// Where `text` first nests deeper than [`MAX_DEPTH`], if it does.
///
/// The tree loader recurses once per level of block nesting (only flow
/// nesting is bounded by the parser), so a hostile file such as
/// `- - - - …` could overflow the stack. The event parser does not recurse:
/// it checks the depth first. Syntax errors are left to the loader.
fn too_deep(text: &str) -> Option<Marker> {
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        match event {
            Ok((Event::MappingStart(..) | Event::SequenceStart(..), span)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(span.start);
                }
            }
            Ok((Event::MappingEnd | Event::SequenceEnd, _)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Reads and parses one file. An unreadable or non-UTF-8 file gives one error.
pub fn parse_file(path: &Path) -> FileOutcome {
    let bytes = match super::read_config_file(path, super::MAX_CONFIG_FILE_BYTES) {
        Ok(super::FileRead::Bytes(bytes)) => bytes,
        Ok(super::FileRead::TooLarge { size }) => {
            return failed(super::too_large(path, size, super::MAX_CONFIG_FILE_BYTES));
        }
        Err(e) => {
            return failed(Diagnostic::file_error(
                path,
                format!("cannot read file: {e}"),
            ));
        }
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_str(path, text),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
            let mut diagnostic = Diagnostic::file_error(
                path,
                format!(
                    "file is not valid UTF-8 (bad byte at offset {}); save it as UTF-8",
                    e.valid_up_to()
                ),
            );
            diagnostic.line = Some(line);
            failed(diagnostic)
        }
    }
}

fn failed(diagnostic: Diagnostic) -> FileOutcome {
    FileOutcome {
        resources: Vec::new(),
        diagnostics: vec![diagnostic],
    }
}

/// Parses one document; `None` for empty documents and documents with errors.
fn document(ctx: &mut Ctx, doc: &MarkedYaml<'_>) -> Option<Resource> {
    let root = Node::root(doc);
    ctx.begin_resource(display_name(doc));
    if root.is_null() {
        return None; // empty, comments only, or a bare `---`
    }
    if !root.is_mapping() {
        ctx.error(
            root.line(),
            "",
            "a document must be a mapping with `apiVersion`, `kind`, `metadata` and `spec`",
        );
        return None;
    }
    let fields = root.map(ctx, &ROOT)?;
    if let Some(line) = fields.key_line("status") {
        ctx.warn(
            line,
            "status",
            "`status` is written by the cluster; Remora ignores it",
        );
    }
    let kind = doc_kind(ctx, &fields);
    let meta = metadata(ctx, &fields);
    let kind = kind?;
    let errors = ctx.resource_errors();
    let spec_node = fields.required(ctx, "spec");
    let spec = spec_node.and_then(|n| match kind {
        Kind::VirtualService => virtual_service::parse(ctx, n).map(Spec::VirtualService),
        Kind::DestinationRule => destination_rule::parse(ctx, n).map(Spec::DestinationRule),
        Kind::ServiceEntry => service_entry::parse(ctx, n).map(Spec::ServiceEntry),
        Kind::WorkloadEntry => {
            service_entry::workload_entry(ctx, n, None).map(|(we, _)| Spec::WorkloadEntry(we))
        }
        Kind::PeerAuthentication => {
            peer_authentication::parse(ctx, n).map(Spec::PeerAuthentication)
        }
        Kind::AuthorizationPolicy => {
            authorization_policy::parse(ctx, n).map(Spec::AuthorizationPolicy)
        }
        Kind::Sidecar => sidecar::parse(ctx, n).map(Spec::Sidecar),
    });
    let (name, namespace) = meta?;
    let spec = spec?;
    if ctx.resource_errors() != errors || ctx.resource_errors() != 0 {
        return None;
    }
    Some(Resource {
        meta: Meta {
            kind,
            name,
            namespace,
            file: ctx.file().to_path_buf(),
            line: root.line(),
        },
        spec,
    })
}

/// `Kind namespace/name` read loosely before validation, so that every
/// diagnostic of the document can name its resource.
fn display_name(doc: &MarkedYaml<'_>) -> Option<String> {
    let text = |node: Option<&MarkedYaml<'_>>| match node.map(|n| &n.data) {
        Some(YamlData::Value(Scalar::String(s))) => Some(s.to_string()),
        _ => None,
    };
    let YamlData::Mapping(root) = &doc.data else {
        return None;
    };
    let kind = text(get(root, "kind"))?;
    let Some(YamlData::Mapping(meta)) = get(root, "metadata").map(|m| &m.data) else {
        return None;
    };
    let name = text(get(meta, "name"))?;
    let namespace = text(get(meta, "namespace")).unwrap_or_else(|| "default".to_owned());
    Some(format!("{kind} {namespace}/{name}"))
}

fn get<'a>(
    map: &'a saphyr::AnnotatedMapping<'a, MarkedYaml<'a>>,
    key: &str,
) -> Option<&'a MarkedYaml<'a>> {
    map.iter()
        .find(|(k, _)| matches!(&k.data, YamlData::Value(Scalar::String(s)) if s == key))
        .map(|(_, v)| v)
}

/// Checks `kind` and `apiVersion` together.
fn doc_kind(ctx: &mut Ctx, fields: &Map<'_>) -> Option<Kind> {
    let kind_node = fields.required(ctx, "kind");
    let version_node = fields.required(ctx, "apiVersion");
    let kind_name = kind_node.and_then(|n| n.non_empty_str(ctx));
    let version = version_node.and_then(|n| n.non_empty_str(ctx));
    let (kind_node, kind_name) = (kind_node?, kind_name?);
    let (kind, versions) = match kind_name {
        "VirtualService" => (Kind::VirtualService, NETWORKING_VERSIONS),
        "DestinationRule" => (Kind::DestinationRule, NETWORKING_VERSIONS),
        "ServiceEntry" => (Kind::ServiceEntry, NETWORKING_VERSIONS),
        "WorkloadEntry" => (Kind::WorkloadEntry, NETWORKING_VERSIONS),
        "PeerAuthentication" => (Kind::PeerAuthentication, SECURITY_VERSIONS),
        "AuthorizationPolicy" => (Kind::AuthorizationPolicy, SECURITY_VERSIONS),
        "Sidecar" => (Kind::Sidecar, NETWORKING_VERSIONS),
        other => {
            let hint = closest(other, KIND_NAMES.iter().copied())
                .map(|k| format!("did you mean `{k}`? "))
                .unwrap_or_default();
            ctx.error(
                kind_node.line(),
                kind_node.path(),
                format!("unsupported kind `{other}`; {hint}Remora reads {SUPPORTED_KINDS}"),
            );
            return None;
        }
    };
    let (version_node, version) = (version_node?, version?);
    if !versions.contains(&version) {
        ctx.error(
            version_node.line(),
            version_node.path(),
            format!(
                "unsupported apiVersion `{version}` for kind {kind_name}; expected one of {}",
                versions.join(", ")
            ),
        );
        return None;
    }
    Some(kind)
}

/// Reads `metadata`: the name and the namespace (`default` when absent).
fn metadata(ctx: &mut Ctx, fields: &Map<'_>) -> Option<(String, String)> {
    let meta = fields.required(ctx, "metadata")?.map(ctx, &METADATA)?;
    let name = meta
        .required(ctx, "name")
        .and_then(|n| values::object_name(ctx, n));
    let namespace = match meta.get("namespace") {
        None => Some("default"),
        Some(n) => n.non_empty_str(ctx).filter(|ns| {
            let ok = values::is_dns1123_label(ns);
            if !ok {
                ctx.error(
                    n.line(),
                    n.path(),
                    format!(
                        "`{ns}` is not a valid namespace: use at most 63 lowercase letters, \
                         digits and `-`, starting and ending with a letter or digit"
                    ),
                );
            }
            ok
        }),
    };
    // Labels and annotations are metadata: checked for shape, otherwise ignored.
    if let Some(labels) = meta.get("labels") {
        labels.string_map(ctx);
    }
    if let Some(annotations) = meta.get("annotations") {
        annotations.string_map(ctx);
    }
    Some((name?.to_owned(), namespace?.to_owned()))
}
