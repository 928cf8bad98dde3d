//! ARCHITECTURE.md's invariants about the tree, checked on the source: the pure core has no
//! I/O dependency and reads no clock, each outside boundary has one owner, and no two modules
//! import each other. A change that breaks one fails here with the file that broke it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::sources::rust_files;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The code of a file without comments and string literals, so that a word in a doc comment
/// or a log message is not taken for a use.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source file");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                // A plain string literal: skip to its closing quote, escapes included.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' must not open a string; lifetimes pass through.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("\\") || rest.chars().nth(1) == Some('\'') {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                    out.push_str("' '");
                } else {
                    out.push('\'');
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_core_crate_depends_on_nothing_that_does_io() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("crates/core/Cargo.toml"))
        .expect("read crates/core/Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("parse crates/core/Cargo.toml");
    let deps: BTreeSet<&str> = manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().map(String::as_str).collect())
        .unwrap_or_default();
    // Plain data and text: time arithmetic, (de)serialisation, URL and percent handling.
    let allowed = ["jiff", "percent-encoding", "serde", "serde_json", "url"];
    let extra: Vec<_> = deps.iter().filter(|d| !allowed.contains(d)).collect();
    assert!(
        extra.is_empty(),
        "crates/core may not depend on {extra:?}: the core is pure (ARCHITECTURE.md)"
    );
}

#[test]
fn the_core_reads_no_clock_file_socket_or_environment() {
    let forbidden = [
        "Timestamp::now",
        "Zoned::now",
        "SystemTime",
        "Instant::now",
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "std::thread",
        "println!",
        "eprintln!",
    ];
    for file in rust_files("crates/core/src") {
        let code = code_of(&file);
        for word in forbidden {
            assert!(
                !code.contains(word),
                "{} uses {word}: the core takes `now` and does no I/O",
                relative(&file)
            );
        }
    }
}

/// Each outside boundary and the only places allowed to touch it.
#[test]
fn each_boundary_has_one_owner() {
    let owners: [(&str, &[&str]); 5] = [
        ("rusqlite::", &["src/store/"]),
        ("aws_sdk_codepipeline::", &["src/aws/"]),
        ("aws_config::", &["src/aws/"]),
        ("tokio_tungstenite::", &["src/slack/socket_mode/"]),
        // HTTP clients: Slack's, the heartbeat's GET, and the assembly that builds them.
        (
            "reqwest::",
            &[
                "src/slack/",
                "src/daemon/heartbeat",
                "src/daemon/startup.rs",
                "src/http",
            ],
        ),
    ];
    for file in rust_files("src") {
        let code = code_of(&file);
        let at = relative(&file);
        for (word, allowed) in owners {
            assert!(
                !code.contains(word) || allowed.iter().any(|a| at.starts_with(a)),
                "{at} uses {word}, which only {allowed:?} may (ARCHITECTURE.md)"
            );
        }
    }
}

/// The module a file is: `src/daemon/cycle/mod.rs` is `daemon::cycle`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(root)
        .expect("file below root")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// Module-to-module imports (`crate::a::b`, `super::c`) of the tree below `dir`, leaving out
/// a module's own ancestors and descendants (a parent declares its children).
fn imports(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(ROOT).join(dir);
    let files = rust_files(dir);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&root, f)).collect();
    let resolve = |path: &[&str]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("::"))
            .find(|m| modules.contains(m))
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&root, file);
        let code = code_of(file);
        let mut rest = code.as_str();
        while let Some(at) = rest.find(['c', 's']) {
            rest = &rest[at..];
            let base: Vec<&str> = if rest.starts_with("crate::") {
                rest = &rest["crate::".len()..];
                Vec::new()
            } else if rest.starts_with("super::") {
                rest = &rest["super::".len()..];
                let mut parent: Vec<&str> = module.split("::").collect();
                parent.pop();
                parent
            } else {
                rest = &rest[1..];
                continue;
            };
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let mut path = base;
            path.extend(rest[..end].split("::").filter(|s| !s.is_empty()));
            if let Some(target) = resolve(&path) {
                let related = target == module
                    || module.starts_with(&format!("{target}::"))
                    || target.starts_with(&format!("{module}::"));
                if !related {
                    graph.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_modules_import_each_other() {
    for dir in ["src", "crates/core/src"] {
        let graph = imports(dir);
        assert!(graph.len() > 3, "{dir}: too few imports found: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{dir}: import cycle {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        find_cycle(&graph).map(|c| c.len()),
        Some(4),
        "a -> b -> c -> a"
    );
    let acyclic = BTreeMap::from([("a".to_owned(), BTreeSet::from(["b".to_owned()]))]);
    assert_eq!(find_cycle(&acyclic), None);
}

#[test]
fn every_module_directory_uses_mod_rs() {
    // One module style: a module with children is `name/mod.rs`, never `name.rs` beside `name/`.
    for dir in ["src", "crates/core/src"] {
        for file in rust_files(dir) {
            let sibling_dir = file.with_extension("");
            assert!(
                !sibling_dir.is_dir(),
                "{} sits beside a directory of the same name: use {}/mod.rs",
                relative(&file),
                relative(&sibling_dir)
            );
        }
    }
}
