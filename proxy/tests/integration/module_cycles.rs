//! No import cycle between the proxy's modules (issue 19; the rule and its
//! granularity are in docs/decisions.md, "No import cycle between the
//! proxy's modules").
//!
//! This reads `src/**/*.rs` as text: it follows the module tree from
//! `src/lib.rs` (`mod x;`), and takes every path that names the crate's own
//! modules: `crate::…`, `super::…`, `self::…`, and paths that start at a
//! child module of the file. A path is resolved to the file that defines the
//! module it names, following `use` re-exports (a name that `upstream/mod.rs`
//! re-exports from `upstream/endpoint.rs` counts as `upstream/endpoint.rs`).
//! A file's test modules (`#[cfg(test)] mod …`, `mod tests`) are left out:
//! tests may reach anywhere.
//!
//! Two graphs must be acyclic: files, and the crate's top-level modules
//! (`upstream`, `config`, `telemetry`, …, each folder taken as one). A
//! failure names each strongly connected component and one cycle in it,
//! with the line that makes each arrow.
//!
//! No parser dependency: comments, strings and char literals are stripped,
//! then identifiers and `::` are enough to read paths and `use` trees.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

#[test]
fn proxy_modules_import_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::read(&src);
    let mut report = String::new();

    let files = graph.file_edges();
    if std::env::var_os("REMORA_MODULE_GRAPH").is_some() {
        // `REMORA_MODULE_GRAPH=1 cargo test -p remora-proxy --test
        // integration module_cycles -- --nocapture`: every arrow, one a line.
        for (from, tos) in &files {
            for (to, why) in tos {
                println!("{from} -> {to}  ({why})");
            }
        }
    }
    for scc in sccs(&files) {
        report.push_str(&describe("files", &scc, &files));
    }
    let top = graph.top_level_edges();
    for scc in sccs(&top) {
        report.push_str(&describe("top-level modules", &scc, &top));
    }
    assert!(
        report.is_empty(),
        "import cycles in remora-proxy (see docs/decisions.md):\n{report}"
    );
}

/// The module reader must see the modules it is meant to check: a change
/// that made it read nothing would pass the test above vacuously.
#[test]
fn module_reader_sees_the_module_tree_and_its_imports() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::read(&src);
    let files: BTreeSet<&str> = graph.modules.values().map(|m| m.file.as_str()).collect();
    for expected in [
        "lib.rs",
        "upstream/mod.rs",
        "listener/outbound.rs",
        "config/mod.rs",
    ] {
        assert!(
            files.contains(expected),
            "{expected} not found in {files:?}"
        );
    }
    assert!(!files.iter().any(|f| f.ends_with("tests.rs")), "{files:?}");
    let edges = graph.file_edges();
    let outbound = &edges["listener/outbound.rs"];
    assert!(outbound.contains_key("error.rs"), "{outbound:?}");
}

/// The cycle finder itself: a three-file cycle is one component, spelled
/// out arrow by arrow; a file that only points into it is not part of it.
#[test]
fn a_cycle_is_reported_with_its_arrows() {
    let mut edges = Edges::new();
    for (from, to) in [
        ("a.rs", "b.rs"),
        ("b.rs", "c.rs"),
        ("c.rs", "a.rs"),
        ("d.rs", "a.rs"),
    ] {
        edges
            .entry(from.to_owned())
            .or_default()
            .insert(to.to_owned(), format!("{from}:1"));
    }
    edges.entry("a.rs".to_owned()).or_default();
    let found = sccs(&edges);
    assert_eq!(found, vec![vec!["a.rs", "b.rs", "c.rs"]]);
    let text = describe("files", &found[0], &edges);
    for arrow in ["a.rs -> b.rs", "b.rs -> c.rs", "c.rs -> a.rs"] {
        assert!(text.contains(arrow), "{text}");
    }
}

/// One arrow's evidence: the file and line of a path that makes it.
type Why = String;
/// node -> (node it depends on -> why).
type Edges = BTreeMap<String, BTreeMap<String, Why>>;

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// A token and its line.
type Token = (Tok, usize);

/// Identifiers, `::` and single punctuation, without comments, strings and
/// char literals (lifetimes are dropped too).
fn tokenize(text: &str) -> Vec<Token> {
    let s: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied().unwrap_or('\0');
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == '/' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == '*' {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(s[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' || ((c == 'b' || c == 'c') && next == '"') {
            i += if c == '"' { 1 } else { 2 };
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    i += 1;
                }
                line += usize::from(s.get(i) == Some(&'\n'));
                i += 1;
            }
            i += 1;
        } else if let Some(hashes) = raw_string_start(&s, i) {
            // r"…", r#"…"#, br#"…"#: skip to the quote and as many hashes.
            i += s[i..].iter().position(|&ch| ch == '"').unwrap_or(0) + 1;
            loop {
                if i >= s.len() {
                    break;
                }
                if s[i] == '"'
                    && s[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(s[i] == '\n');
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == '\\' {
                i += 2;
                while i < s.len() && s[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if s.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            out.push((Tok::Ident(word.trim_start_matches("r#").to_string()), line));
        } else if c.is_ascii_digit() {
            while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_' || s[i] == '.') {
                i += 1;
            }
        } else if c == ':' && next == ':' {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// `r"`, `r#"`, `br"`, `br#"` at `i`: the number of hashes.
fn raw_string_start(s: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if s[j] == 'b' || s[j] == 'c' {
        j += 1;
    }
    if s.get(j) != Some(&'r') || (i > 0 && (s[i - 1].is_alphanumeric() || s[i - 1] == '_')) {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&c| c == '#').count();
    (s.get(j + hashes) == Some(&'"')).then_some(hashes)
}

/// A module: a file, or an inline `mod x { … }` inside one.
#[derive(Debug, Default)]
struct Module {
    /// Relative to `src/`.
    file: String,
    /// Child modules declared here (files and inline).
    children: BTreeSet<String>,
    /// Names this module's top-level `use` items bring into scope, and the
    /// path they stand for (`None`: outside the crate).
    imports: BTreeMap<String, Option<Vec<String>>>,
    /// Every path to the crate's own modules found in the module, made
    /// absolute, with its line and whether it is a `pub` re-export.
    paths: Vec<(Vec<String>, usize, bool)>,
}

#[derive(Debug, Default)]
struct Graph {
    /// Keyed by the module's path from the crate root (`[]` is `lib.rs`).
    modules: BTreeMap<Vec<String>, Module>,
}

/// A path as written, before it is made absolute.
struct RawPath {
    segments: Vec<String>,
    /// The alias or last segment (`None` for a glob).
    binds: Option<String>,
    line: usize,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut graph = Graph::default();
        graph.read_file(src, Path::new("lib.rs"), Vec::new());
        graph
    }

    fn read_file(&mut self, src: &Path, rel: &Path, module: Vec<String>) {
        let text = std::fs::read_to_string(src.join(rel))
            .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        let toks = tokenize(&text);
        // Where this file's `mod x;` children live.
        let dir: PathBuf = match rel.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "mod.rs") => rel.parent().unwrap_or(Path::new("")).to_path_buf(),
            _ => rel.with_extension(""),
        };
        let file = rel.to_string_lossy().replace('\\', "/");
        let mut files_to_read = Vec::new();
        let mut raw: Vec<(Vec<String>, RawPath, bool, bool)> = Vec::new();
        // Inline modules open at a brace depth: (module path, depth).
        let mut stack: Vec<(Vec<String>, usize)> = vec![(module.clone(), 0)];
        self.modules.insert(
            module.clone(),
            Module {
                file: file.clone(),
                ..Module::default()
            },
        );
        let mut depth = 0;
        let mut cfg_test = false;
        let mut i = 0;
        while i < toks.len() {
            let current = stack.last().expect("the file's module").0.clone();
            let at_top = depth == stack.last().expect("the file's module").1;
            match &toks[i].0 {
                Tok::Punct('#')
                    if matches_seq(&toks[i + 1..], &["[", "cfg", "(", "test", ")", "]"]) =>
                {
                    cfg_test = true;
                    i += 7;
                    continue;
                }
                Tok::Punct('#') => {
                    // Another attribute: skip it, keeping a preceding cfg(test).
                    i = skip_group(&toks, i + 1, '[', ']');
                    continue;
                }
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if stack.len() > 1 && depth < stack.last().expect("inline module").1 {
                        stack.pop();
                    }
                }
                Tok::Ident(kw) if kw == "mod" => {
                    let Some((Tok::Ident(name), _)) = toks.get(i + 1) else {
                        unreachable!("mod without a name in {file}")
                    };
                    let is_test = cfg_test || name == "tests";
                    let mut child = current.clone();
                    child.push(name.clone());
                    match toks.get(i + 2).map(|t| &t.0) {
                        Some(Tok::Punct(';')) => {
                            if !is_test && current == module {
                                self.modules
                                    .get_mut(&current)
                                    .expect("current")
                                    .children
                                    .insert(name.clone());
                                let flat = dir.join(format!("{name}.rs"));
                                let rel = if src.join(&flat).exists() {
                                    flat
                                } else {
                                    dir.join(name).join("mod.rs")
                                };
                                files_to_read.push((rel, child));
                            }
                            i += 3;
                        }
                        Some(Tok::Punct('{')) if is_test => {
                            i = skip_group(&toks, i + 2, '{', '}');
                        }
                        Some(Tok::Punct('{')) => {
                            self.modules
                                .get_mut(&current)
                                .expect("current")
                                .children
                                .insert(name.clone());
                            self.modules.insert(
                                child.clone(),
                                Module {
                                    file: file.clone(),
                                    ..Module::default()
                                },
                            );
                            depth += 1;
                            stack.push((child, depth));
                            i += 3;
                        }
                        other => panic!("{file}: unexpected token after `mod {name}`: {other:?}"),
                    }
                    cfg_test = false;
                    continue;
                }
                Tok::Ident(kw) if kw == "use" => {
                    let is_pub = is_pub_before(&toks, i);
                    let mut paths = Vec::new();
                    let end = parse_use_tree(&toks, i + 1, Vec::new(), &mut paths);
                    for p in paths {
                        raw.push((current.clone(), p, at_top, is_pub));
                    }
                    cfg_test = false;
                    i = end;
                    continue;
                }
                Tok::Ident(first) if !continues_path(&toks, i) => {
                    if matches!(toks.get(i + 1).map(|t| &t.0), Some(Tok::Sep)) {
                        let mut segments = vec![first.clone()];
                        let mut j = i + 1;
                        while let (Some((Tok::Sep, _)), Some((Tok::Ident(seg), _))) =
                            (toks.get(j), toks.get(j + 1))
                        {
                            segments.push(seg.clone());
                            j += 2;
                        }
                        let line = toks[i].1;
                        raw.push((
                            current.clone(),
                            RawPath {
                                segments,
                                binds: None,
                                line,
                            },
                            false,
                            false,
                        ));
                        i = j;
                        continue;
                    }
                }
                _ => {}
            }
            // `#[cfg(test)]` applies to the next item: keep it over `pub(…)`.
            cfg_test = cfg_test
                && match &toks[i].0 {
                    Tok::Ident(s) => matches!(s.as_str(), "pub" | "crate" | "super" | "in"),
                    Tok::Punct(c) => matches!(c, '(' | ')'),
                    Tok::Sep => false,
                };
            i += 1;
        }
        // Make the paths absolute now that this file's children are known.
        for (at, p, at_top, is_pub) in raw {
            let Some(abs) = self.absolute(&at, &p.segments) else {
                if at_top && let Some(name) = p.binds {
                    let m = self.modules.get_mut(&at).expect("module");
                    m.imports.insert(name, None);
                }
                continue;
            };
            let m = self.modules.get_mut(&at).expect("module");
            if at_top && let Some(name) = p.binds {
                m.imports.insert(name, Some(abs.clone()));
            }
            m.paths.push((abs, p.line, is_pub));
        }
        for (rel, child) in files_to_read {
            self.read_file(src, &rel, child);
        }
    }

    /// `segments` as written in module `at`, from the crate root; `None` if
    /// it is not a path to this crate's modules.
    fn absolute(&self, at: &[String], segments: &[String]) -> Option<Vec<String>> {
        let mut base = at.to_vec();
        let mut rest = segments;
        match rest.first()?.as_str() {
            "crate" => {
                base.clear();
                rest = &rest[1..];
            }
            "self" => rest = &rest[1..],
            "super" => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            first
                if self
                    .modules
                    .get(at)
                    .is_some_and(|m| m.children.contains(first)) => {}
            _ => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines what `path` names, following imports.
    fn resolve(&self, path: &[String]) -> Option<String> {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let len = (0..=path.len())
                .rev()
                .find(|&n| self.modules.contains_key(&path[..n]))?;
            let module = &self.modules[&path[..len]];
            match path.get(len).and_then(|name| module.imports.get(name)) {
                Some(Some(target)) if len < path.len() => {
                    let mut next = target.clone();
                    next.extend(path[len + 1..].iter().cloned());
                    path = next;
                }
                Some(None) => return None,
                _ => return Some(module.file.clone()),
            }
        }
        None
    }

    fn file_edges(&self) -> Edges {
        let mut edges = Edges::new();
        for module in self.modules.values() {
            let from = edges.entry(module.file.clone()).or_default();
            for (path, line, is_pub) in &module.paths {
                // A re-export is followed where it is used, not counted here.
                if *is_pub {
                    continue;
                }
                if let Some(to) = self.resolve(path)
                    && to != module.file
                {
                    from.entry(to).or_insert_with(|| {
                        format!("{}:{line}: crate::{}", module.file, path.join("::"))
                    });
                }
            }
        }
        edges
    }

    fn top_level_edges(&self) -> Edges {
        let top = |file: &str| -> String {
            let first = file.split('/').next().unwrap_or(file);
            first.trim_end_matches(".rs").to_string()
        };
        let mut edges = Edges::new();
        for (from, tos) in self.file_edges() {
            let entry = edges.entry(top(&from)).or_default();
            for (to, why) in tos {
                if top(&to) != top(&from) && top(&to) != "lib" {
                    entry.entry(top(&to)).or_insert(why);
                }
            }
        }
        edges
    }
}

/// Whether the identifier at `i` is inside a path (after `::`) or is
/// `$crate`.
fn continues_path(toks: &[Token], i: usize) -> bool {
    i > 0 && matches!(toks[i - 1].0, Tok::Sep | Tok::Punct('$'))
}

fn matches_seq(toks: &[Token], seq: &[&str]) -> bool {
    seq.len() <= toks.len()
        && seq.iter().zip(toks).all(|(want, (tok, _))| match tok {
            Tok::Ident(s) => s == want,
            Tok::Punct(c) => want.len() == 1 && want.starts_with(*c),
            Tok::Sep => *want == "::",
        })
}

/// The index after the group that opens at `i` (if `toks[i]` is `open`).
fn skip_group(toks: &[Token], i: usize, open: char, close: char) -> usize {
    if toks.get(i).map(|t| &t.0) != Some(&Tok::Punct(open)) {
        return i;
    }
    let mut depth = 0;
    for (j, (tok, _)) in toks.iter().enumerate().skip(i) {
        if *tok == Tok::Punct(open) {
            depth += 1;
        } else if *tok == Tok::Punct(close) {
            depth -= 1;
            if depth == 0 {
                return j + 1;
            }
        }
    }
    toks.len()
}

/// Whether the `use` at `i` is `pub`, `pub(crate)`, `pub(super)`, …
fn is_pub_before(toks: &[Token], i: usize) -> bool {
    match toks.get(i.wrapping_sub(1)).map(|t| &t.0) {
        Some(Tok::Ident(s)) => s == "pub",
        Some(Tok::Punct(')')) => (2..=4).any(|back| {
            toks.get(i.wrapping_sub(back)).map(|t| &t.0) == Some(&Tok::Ident("pub".into()))
        }),
        _ => false,
    }
}

/// Reads a `use` tree from `i` (after `use` or after a `{`/`,`), appending
/// its leaves under `prefix`; returns the index after it (past `;` at the
/// top level).
fn parse_use_tree(
    toks: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<RawPath>,
) -> usize {
    let mut segments = prefix;
    if toks.get(i).map(|t| &t.0) == Some(&Tok::Sep) {
        i += 1;
    }
    loop {
        let Some((tok, line)) = toks.get(i) else {
            return i;
        };
        match tok {
            Tok::Ident(seg) => {
                segments.push(seg.clone());
                i += 1;
                match toks.get(i).map(|t| &t.0) {
                    Some(Tok::Sep) => i += 1,
                    Some(Tok::Ident(kw)) if kw == "as" => {
                        let alias = match toks.get(i + 1) {
                            Some((Tok::Ident(a), _)) => a.clone(),
                            _ => String::new(),
                        };
                        let segs = std::mem::take(&mut segments);
                        let binds = (alias != "_").then_some(alias);
                        out.push(RawPath {
                            segments: segs,
                            binds,
                            line: *line,
                        });
                        return finish(toks, i + 2);
                    }
                    _ => {
                        let mut segs = std::mem::take(&mut segments);
                        let mut binds = segs.last().cloned();
                        if binds.as_deref() == Some("self") {
                            segs.pop();
                            binds = segs.last().cloned();
                        }
                        out.push(RawPath {
                            segments: segs,
                            binds,
                            line: *line,
                        });
                        return finish(toks, i);
                    }
                }
            }
            Tok::Punct('*') => {
                out.push(RawPath {
                    segments: std::mem::take(&mut segments),
                    binds: None,
                    line: *line,
                });
                return finish(toks, i + 1);
            }
            Tok::Punct('{') => {
                i += 1;
                loop {
                    if toks.get(i).map(|t| &t.0) == Some(&Tok::Punct('}')) {
                        return finish(toks, i + 1);
                    }
                    i = parse_use_tree(toks, i, segments.clone(), out);
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Punct(',')) => i += 1,
                        Some(Tok::Punct('}')) => return finish(toks, i + 1),
                        _ => return i,
                    }
                }
            }
            _ => return i,
        }
    }
}

/// After a tree: past a `;` that ends the `use`, at a `,`/`}` inside a group.
fn finish(toks: &[Token], i: usize) -> usize {
    match toks.get(i).map(|t| &t.0) {
        Some(Tok::Punct(';')) => i + 1,
        _ => i,
    }
}

/// Tarjan's strongly connected components with more than one node.
fn sccs(edges: &Edges) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(st: &mut State<'a>, v: &'a str) {
        let n = st.index.len();
        st.index.insert(v, n);
        st.low.insert(v, n);
        st.stack.push(v);
        st.on_stack.insert(v);
        for w in st.edges.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !st.index.contains_key(w) {
                visit(st, w);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if st.on_stack.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on_stack.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                st.out.push(scc);
            }
        }
    }
    let mut st = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !st.index.contains_key(v.as_str()) {
            visit(&mut st, v);
        }
    }
    st.out
}

/// An SCC, every arrow inside it, and one shortest cycle through its first
/// node.
fn describe(kind: &str, scc: &[String], edges: &Edges) -> String {
    let inside: BTreeSet<&str> = scc.iter().map(String::as_str).collect();
    let start = scc[0].as_str();
    // Breadth-first from `start` back to it, inside the component.
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    let mut closing = None;
    while let Some(v) = queue.pop_front() {
        for w in edges[v]
            .keys()
            .map(String::as_str)
            .filter(|w| inside.contains(w))
        {
            if w == start {
                closing = Some(v);
                queue.clear();
                break;
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut cycle = vec![start];
    let mut v = closing.expect("a strongly connected component has a cycle");
    while v != start {
        cycle.push(v);
        v = prev[v];
    }
    cycle[1..].reverse();
    cycle.push(start);
    let mut out = format!("cycle among {} {kind}: {}\n", scc.len(), scc.join(", "));
    for pair in cycle.windows(2) {
        out.push_str(&format!(
            "  {} -> {}  ({})\n",
            pair[0], pair[1], edges[pair[0]][pair[1]]
        ));
    }
    out
}
