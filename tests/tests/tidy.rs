//! Source layout rules for the workspace's library and binary code: one noun (or one task) a
//! file, each under 800 lines, its contract at the top as a `//!` module doc. Test files
//! (`tests.rs`, or anything under a directory named `tests`) are exempt. Reads files only: no
//! broker binary, no cargo.

use std::fmt::Write as _;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Source trees checked, relative to the workspace root.
const ROOTS: [&str; 4] = ["broker/src", "client/src", "bench-harness/src", "wire/src"];

/// Most lines a non-test file may have.
const MAX_LINES: usize = 800;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        let path = entry.path();
        let kind = entry.file_type().unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if kind.is_dir() {
            rust_files(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `tests.rs`, or any file below a directory named `tests` (judged on the path inside the
/// source tree, so where the workspace itself lives does not matter).
fn is_test_file(in_tree: &Path) -> bool {
    in_tree.file_name().is_some_and(|n| n == "tests.rs")
        || in_tree
            .parent()
            .is_some_and(|dir| dir.components().any(|c| c == Component::Normal("tests".as_ref())))
}

#[test]
fn source_files_are_small_and_say_what_they_are() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut too_long = Vec::new();
    let mut no_doc = Vec::new();
    let mut checked = 0;

    for root in ROOTS {
        let tree = workspace.join(root);
        assert!(tree.is_dir(), "tidy: {root} is not a directory; update ROOTS in {}", file!());
        let mut files = Vec::new();
        rust_files(&tree, &mut files);
        for path in files {
            let in_tree = path.strip_prefix(&tree).expect("walked below the tree");
            if is_test_file(in_tree) {
                continue;
            }
            checked += 1;
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let lines = text.lines().count();
            let name = format!("{root}/{}", in_tree.to_string_lossy().replace('\\', "/"));
            if lines > MAX_LINES {
                too_long.push((name.clone(), lines));
            }
            if !text.starts_with("//!") {
                no_doc.push((name, lines));
            }
        }
    }
    assert!(checked > 0, "tidy: no source files found under {ROOTS:?}");

    if too_long.is_empty() && no_doc.is_empty() {
        return;
    }
    too_long.sort();
    no_doc.sort();
    let mut msg = String::from(
        "tidy: source layout rule broken.\n\
         Rule: one noun (or one task) a file, each under 800 lines, its contract at the top.\n\
         Why: a reader should learn from a file's first lines what it is for and what it \
         promises, and be able to hold the whole file in their head; a file past 800 lines is \
         doing more than one thing. Split it along its nouns and head each new file with a \
         `//!` doc stating its contract. Do not raise the limit.\n\
         Exempt: test files (`tests.rs`, anything under a `tests/` directory).\n",
    );
    if !too_long.is_empty() {
        let _ = writeln!(msg, "\nOver {MAX_LINES} lines (split it):");
        for (name, lines) in &too_long {
            let _ = writeln!(msg, "  {name}: {lines} lines");
        }
    }
    if !no_doc.is_empty() {
        let _ = writeln!(msg, "\nNo `//!` module doc on line 1 (say what the file is):");
        for (name, lines) in &no_doc {
            let _ = writeln!(msg, "  {name}: {lines} lines");
        }
    }
    panic!("{msg}");
}

#[test]
fn test_files_are_recognised() {
    assert!(is_test_file(Path::new("tests.rs")));
    assert!(is_test_file(Path::new("storage/tests.rs")));
    assert!(is_test_file(Path::new("storage/tests/mod.rs")));
    assert!(is_test_file(Path::new("storage/tests/real_disk.rs")));
    assert!(!is_test_file(Path::new("storage/log/mod.rs")));
    assert!(!is_test_file(Path::new("storage/tests_support.rs")));
    assert!(!is_test_file(Path::new("contests/a.rs")));
}

/// The broker's top-level module a file belongs to (`api/fetch.rs` → `api`, `shard.rs` →
/// `shard`); `None` for the crate roots.
fn broker_module(in_tree: &Path) -> Option<String> {
    let first = in_tree.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules a source text names through `crate::` paths, including grouped
/// imports (`use crate::{a::X, b};`).
fn crate_references(text: &str) -> Vec<String> {
    fn ident(s: &str) -> &str {
        let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
        &s[..end]
    }
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(group[start..i].trim_start()).to_owned());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(group[start..i].trim_start()).to_owned());
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest).to_owned());
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// The broker's modules import each other in one direction only: no circle such as
/// `api → shard → api`. A module that must call into a higher one takes what it needs as an
/// argument or through a lower module's trait (as `mesh::PushTarget` does), or the code that
/// calls upwards moves up (as the mesh inbox did to `peer.rs`).
#[test]
fn broker_modules_have_no_import_circles() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tree = workspace.join("broker/src");
    let mut files = Vec::new();
    rust_files(&tree, &mut files);
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for path in files {
        let in_tree = path.strip_prefix(&tree).expect("walked below the tree");
        if is_test_file(in_tree) {
            continue;
        }
        let Some(from) = broker_module(in_tree) else { continue };
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        // Unit tests at the bottom of a file may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        let targets = edges.entry(from.clone()).or_default();
        for to in crate_references(code) {
            if to != from {
                targets.insert(to);
            }
        }
    }
    assert!(edges.len() > 5, "tidy: found only {} broker modules", edges.len());
    // Depth-first search; a back edge is a circle.
    fn visit(
        node: &str,
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
        circles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            circles.push(circle.join(" → "));
            return;
        }
        if !done.insert(node.to_owned()) {
            return;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "tidy: broker modules import each other in a circle:\n  {}\n\
         Rule: each layer uses only the layers below it (see docs/ARCHITECTURE.md's map). Break \
         the circle by moving the code that calls upwards into the higher module, or by passing \
         in what it needs (a trait of the lower module, a value, a function).",
        circles.join("\n  ")
    );
}

#[test]
fn crate_references_are_found() {
    let text = "use crate::api::{self, Origin};\nuse crate::{shard::Shard, mesh::{Mesh, Route}};\nlet x = crate::clock::now_ms();";
    assert_eq!(crate_references(text), ["api", "shard", "mesh", "clock"]);
    assert_eq!(broker_module(Path::new("api/fetch.rs")).as_deref(), Some("api"));
    assert_eq!(broker_module(Path::new("shard.rs")).as_deref(), Some("shard"));
    assert_eq!(broker_module(Path::new("lib.rs")), None);
}
