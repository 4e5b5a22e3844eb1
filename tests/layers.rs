//! The layers hold: no module of `src/` imports one that imports it back (directly or round a
//! longer circle), the coach knows nothing of serenity or the Discord adapter, and the engine's
//! manifest needs no runtime, Discord client or database.
//!
//! The graph is read from the source: every `crate::…` and `super::…` path outside comments and
//! test modules, resolved to the longest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `src/discord/handler.rs` → `discord::handler`; `src/coach/mod.rs` → `coach`; the crate root → "".
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests` block.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths like `crate::a::b` or `super::c`, as module-name segments.
fn paths(code: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            let tail = &rest[i + start.len()..];
            rest = tail;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let segments: Vec<String> = tail
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty())
                .collect();
            out.push((start == "crate::", segments));
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        // `super` is the module one up: the folder's module for a leaf file, the parent folder's
        // for a mod.rs (whose module is its folder).
        let mut parent: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
        parent.pop();
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        let mut targets = BTreeSet::new();
        for (from_root, segments) in paths(&code(&text)) {
            let base = if from_root { Vec::new() } else { parent.clone() };
            let named = (0..=segments.len()).rev().find_map(|n| {
                let mut candidate = base.clone();
                candidate.extend(segments[..n].iter().cloned());
                let candidate = candidate.join("::");
                modules.contains(&candidate).then_some(candidate)
            });
            if let Some(target) = named {
                // A module naming its own children or itself is not an import between layers.
                if target != module && !target.starts_with(&format!("{module}::")) && !target.is_empty() {
                    targets.insert(target);
                }
            }
        }
        edges.insert(module, targets);
    }
    edges
}

/// A circle through `start`, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in edges.get(&at).into_iter().flatten() {
            if next == start {
                let mut found = path.clone();
                found.push(next.clone());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_module_of_src_imports_one_that_imports_it_back() {
    let edges = graph();
    assert!(
        edges.contains_key("discord::handler") && edges.contains_key("coach"),
        "the graph was read: {edges:?}"
    );
    let circles: Vec<String> = edges
        .keys()
        .filter_map(|m| circle(&edges, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_top_level_modules_form_layers() {
    // Each top-level module (engine adapters, coach, discord, store…) with its children as one.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let head = |m: &str| m.split("::").next().unwrap_or("").to_string();
    for (module, targets) in graph() {
        let entry = top.entry(head(&module)).or_default();
        entry.extend(targets.iter().map(|t| head(t)).filter(|t| *t != head(&module)));
    }
    assert!(top["discord"].contains("coach"), "the graph was read: {top:?}");
    let circles: Vec<String> = top
        .keys()
        .filter_map(|m| circle(&top, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(circles.is_empty(), "layers import each other:\n{}", circles.join("\n"));
}

#[test]
fn the_coach_knows_nothing_of_serenity_or_the_discord_adapter() {
    let edges = graph();
    for (module, targets) in edges.iter().filter(|(m, _)| m.starts_with("coach")) {
        assert!(
            targets.iter().all(|t| !t.starts_with("discord")),
            "{module} imports {targets:?}"
        );
    }
    let mut files = Vec::new();
    rust_files(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/coach"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!code(&text).contains("serenity"), "{} names serenity", file.display());
    }
}

#[test]
fn the_discord_handler_reaches_no_sibling_but_the_bot_commands_and_conversions() {
    let edges = graph();
    let siblings: BTreeSet<&str> = edges["discord::handler"]
        .iter()
        .filter(|t| t.starts_with("discord"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        siblings,
        BTreeSet::from(["discord::bot", "discord::commands", "discord::convert"])
    );
}

#[test]
fn the_engine_crate_needs_no_runtime_discord_client_or_database() {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/engine/Cargo.toml"))
        .expect("the engine's manifest");
    let manifest: toml::Table = toml::from_str(&text).expect("the engine's manifest parses");
    let dependencies = manifest["dependencies"].as_table().expect("a [dependencies] table");
    assert!(dependencies.contains_key("jiff"), "the list was read: {dependencies:?}");
    for forbidden in ["tokio", "serenity", "sqlx", "axum", "tracing"] {
        assert!(
            !dependencies.contains_key(forbidden),
            "the engine depends on {forbidden}"
        );
    }
}
