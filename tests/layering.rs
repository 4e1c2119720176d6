//! The layering of `src/` stays a picture a newcomer can draw: no two top-level
//! modules import each other (directly or around a loop), and no two files do.
//!
//! The test reads every `crate::…`, `super::…` and `self::…` path in the source
//! (`use` lines and paths written inline), resolves each to the file that defines
//! the item — through a module's `mod.rs` re-exports (its face) to the child file
//! behind them — and looks for cycles. Unit-test modules (`#[cfg(test)] mod tests`)
//! are left out: a test may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn no_two_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = Tree::read(&src);
    let files = tree.file_graph();

    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &files {
        for to in tos {
            let (a, b) = (top_module(from), top_module(to));
            if a != b {
                modules.entry(a).or_default().insert(b);
            }
        }
    }
    if let Some(cycle) = find_cycle(&modules) {
        panic!(
            "top-level modules import each other in a loop: {}\n(edges: {})",
            cycle.join(" -> "),
            explain(&files, &cycle, top_module)
        );
    }
    if let Some(cycle) = find_cycle(&files) {
        panic!("files import each other in a loop: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_layering_test_sees_a_loop() {
    // Two files that name each other make a cycle the checker reports.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a.rs".into()).or_default().insert("b.rs".into());
    g.entry("b.rs".into()).or_default().insert("c.rs".into());
    assert!(find_cycle(&g).is_none());
    g.entry("c.rs".into()).or_default().insert("a.rs".into());
    let cycle = find_cycle(&g).expect("a loop");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
}

/// `proxy/forward.rs` → `proxy`; `lib.rs` → `lib`.
fn top_module(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_string()
}

/// Which files make each step of a module cycle, for the failure message.
fn explain(
    files: &BTreeMap<String, BTreeSet<String>>,
    cycle: &[String],
    group: fn(&str) -> String,
) -> String {
    let mut out = Vec::new();
    for pair in cycle.windows(2) {
        for (from, tos) in files {
            for to in tos {
                if group(from) == pair[0] && group(to) == pair[1] {
                    out.push(format!("{from} -> {to}"));
                }
            }
        }
    }
    out.join(", ")
}

/// A depth-first search for a cycle; the cycle's nodes, first repeated last.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in g.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, g, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in g.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(node, g, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// The source files of `src/`, as paths relative to it, with their code (unit
/// tests and comments removed).
struct Tree {
    root: PathBuf,
    code: BTreeMap<String, String>,
}

impl Tree {
    fn read(root: &Path) -> Tree {
        let mut code = BTreeMap::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).expect("src/ is readable").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path
                        .strip_prefix(root)
                        .expect("under src")
                        .to_string_lossy()
                        .replace('\\', "/");
                    let text = fs::read_to_string(&path).expect("readable source");
                    code.insert(rel, strip(&text));
                }
            }
        }
        Tree {
            root: root.to_path_buf(),
            code,
        }
    }

    /// File → files it takes items from. `mod.rs`, `lib.rs` and `main.rs` are a
    /// module's face: their own imports are not edges (they declare and re-export
    /// their children), and imports of items they re-export point at the child.
    fn file_graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (file, code) in &self.code {
            if is_face(file) {
                continue;
            }
            let module = module_of(file);
            for path in paths(code) {
                let Some(segments) = absolute(&module, &path) else {
                    continue;
                };
                if let Some(target) = self.resolve(&segments) {
                    if target != *file && !is_face(&target) {
                        g.entry(file.clone()).or_default().insert(target);
                    }
                }
            }
            g.entry(file.clone()).or_default();
        }
        g
    }

    /// The file that defines the item `segments` (from the crate root) names.
    fn resolve(&self, segments: &[String]) -> Option<String> {
        let mut dir = String::new();
        for (i, seg) in segments.iter().enumerate() {
            let file = format!("{dir}{seg}.rs");
            if self.code.contains_key(&file) {
                return Some(file);
            }
            if self.root.join(&dir).join(seg).is_dir() {
                dir = format!("{dir}{seg}/");
                continue;
            }
            // `seg` is an item of the module `dir`: defined in its face, or
            // re-exported there from a child file.
            let face = if dir.is_empty() {
                "lib.rs".to_string()
            } else {
                format!("{dir}mod.rs")
            };
            return Some(self.reexported(&dir, &face, seg).unwrap_or(face)).filter(|_| i > 0);
        }
        None
    }

    /// The child file of `dir` that the face `face` re-exports `name` from.
    fn reexported(&self, dir: &str, face: &str, name: &str) -> Option<String> {
        let code = self.code.get(face)?;
        for statement in code.split(';') {
            let s = statement.trim();
            let Some(rest) = s.strip_prefix("pub use ") else {
                continue;
            };
            for path in expand(rest.trim()) {
                if path.last().map(String::as_str) != Some(name) {
                    continue;
                }
                let mut segs: Vec<String> = path;
                if segs.first().map(String::as_str) == Some("self") {
                    segs.remove(0);
                }
                let child = segs.first()?;
                let file = format!("{dir}{child}.rs");
                if self.code.contains_key(&file) {
                    return Some(file);
                }
            }
        }
        None
    }
}

fn is_face(file: &str) -> bool {
    file.ends_with("mod.rs") || file == "lib.rs" || file == "main.rs"
}

/// The module path of a file: `proxy/forward.rs` → `[proxy, forward]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    if last != "mod.rs" && last != "lib.rs" && last != "main.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// A path as written (`crate::a::b`, `super::c`) made absolute from the crate root.
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") | Some("self") => {
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every `crate::`, `super::` and `self::` path in `code`, with `use` groups
/// (`{a, b::{c, d}}`) expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for statement in code.split(';') {
        let s = statement.trim();
        let body = s
            .strip_prefix("pub use ")
            .or_else(|| s.strip_prefix("pub(crate) use "))
            .or_else(|| s.strip_prefix("use "));
        if let Some(body) = body {
            out.extend(expand(body.trim()));
        }
    }
    // Paths written inline (`crate::downstream::BodyError::Closed`).
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // Inside a longer path (`super::super::x`: the second `super::`), or
            // part of a name: the path was taken whole from its start.
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':')
            {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            let segs: Vec<String> = code[at..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            out.push(segs);
        }
    }
    out
}

/// `a::b::{c, d::{e, f}}` → `[a,b,c]`, `[a,b,d,e]`, `[a,b,d,f]`.
fn expand(path: &str) -> Vec<Vec<String>> {
    let path = path.trim();
    match path.find('{') {
        None => {
            let p = path.split(" as ").next().unwrap_or(path);
            vec![p
                .split("::")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()]
        }
        Some(open) => {
            let prefix: Vec<String> = path[..open]
                .split("::")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
            let mut out = Vec::new();
            for part in split_top(inner) {
                for mut tail in expand(part) {
                    if tail.first().map(String::as_str) == Some("self") {
                        tail.remove(0);
                    }
                    let mut full = prefix.clone();
                    full.extend(tail);
                    out.push(full);
                }
            }
            out
        }
    }
}

/// Splits a `use` group's inside at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The code without comments, and without the unit-test module at the end.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
