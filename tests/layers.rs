#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, its helpers too"
)]
//! The module graph of `src/` has no cycle: data flows one way, `cli → policy → host → plan →
//! launch`, each module importing only from below. Read from the source itself (every
//! `crate::` and `super::` path, and each module's own submodules), one node per file.
//!
//! A child may use its ancestors (`super::Builder` in `bwrap/mounts.rs`): a submodule is part of
//! its parent. Every other edge counts, test modules included: a test that needs a higher layer
//! belongs to that layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Module = Vec<String>;

/// Every module of the crate (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`), with its text.
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            let mut next = prefix.to_vec();
            next.push(name);
            modules(&path, &next, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut module = prefix.to_vec();
            if stem != "mod" {
                module.push(stem.to_owned());
            }
            if module == ["lib"] || module == ["main"] {
                continue;
            }
            out.insert(module, fs::read_to_string(&path).unwrap());
        }
    }
}

/// The source without comments and string literals, which may quote paths that are not uses.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_str = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_str {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => in_str = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_str = true,
                '/' if chars.peek() == Some(&'/') => break,
                _ => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The paths named in `text` that start at `crate` or `super`, as segments (`crate::a::{b, c}`
/// gives `crate a b` and `crate a c`).
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for head in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(head) {
            let start = from + at;
            from = start + head.len();
            if start > 0
                && (bytes[start - 1].is_ascii_alphanumeric() || b"_:".contains(&bytes[start - 1]))
            {
                continue;
            }
            let mut segs = vec![head.trim_end_matches(':').to_owned()];
            let mut rest = &text[from..];
            loop {
                let id = ident(rest);
                if id.is_empty() {
                    break;
                }
                segs.push(id.to_owned());
                rest = &rest[id.len()..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            if let Some(group) = rest.strip_prefix('{') {
                // One level of `{a, b::c}`: the first two segments of each member.
                let mut depth = 1;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '{' => 1,
                            '}' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(group.len(), |(i, _)| i);
                let mut member = String::new();
                let mut depth = 0;
                let mut members = Vec::new();
                for c in group[..end].chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            members.push(std::mem::take(&mut member));
                            continue;
                        }
                        _ => {}
                    }
                    member.push(c);
                }
                members.push(member);
                for m in members {
                    let mut s = segs.clone();
                    s.extend(
                        m.split("::")
                            .map(|x| ident(x.trim()).to_owned())
                            .take_while(|x| !x.is_empty())
                            .take(2),
                    );
                    found.push(s);
                }
            } else {
                found.push(segs);
            }
        }
    }
    found
}

/// Who uses whom, between modules (ancestors excepted, see the module doc).
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let mut mods = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut mods,
    );
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (me, text) in &mods {
        let uses = edges.entry(me.clone()).or_default();
        for child in mods.keys() {
            if child.len() == me.len() + 1 && child.starts_with(me) {
                uses.insert(child.clone());
            }
        }
        for segs in paths(&code(text)) {
            let mut full: Module = Vec::new();
            let mut rest = &segs[..];
            if rest[0] == "crate" {
                rest = &rest[1..];
            } else {
                full = me.clone();
                while rest.first().is_some_and(|s| s == "super") {
                    full.pop();
                    rest = &rest[1..];
                }
            }
            full.extend(rest.iter().cloned());
            let target = (1..=full.len())
                .rev()
                .map(|k| full[..k].to_vec())
                .find(|m| mods.contains_key(m));
            if let Some(t) = target
                && t != *me
                && !me.starts_with(&t)
            {
                uses.insert(t);
            }
        }
    }
    edges
}

fn name(m: &Module) -> String {
    m.join("::")
}

/// The edges that lie on a cycle (both ends in one strongly connected component).
fn cycle_edges(g: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeSet<(String, String)> {
    // Reachability by search from each node: a few hundred nodes, fine for a test.
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<_, _> = g.keys().map(|m| (m.clone(), reach(m))).collect();
    let mut out = BTreeSet::new();
    for (a, uses) in g {
        for b in uses {
            if reaches.get(b).is_some_and(|r| r.contains(a)) {
                out.insert((name(a), name(b)));
            }
        }
    }
    out
}

#[test]
fn the_module_graph_has_no_cycle() {
    let found = cycle_edges(&graph());
    assert!(
        found.is_empty(),
        "edges on an import cycle (a module using one that uses it back, directly or not):\n{}",
        found
            .iter()
            .map(|(a, b)| format!("  {a} -> {b}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

/// The same at the top level (`net` is one node, whatever its files use): a room that is
/// low for one stage and high for another is two rooms.
#[test]
fn the_top_level_modules_have_no_cycle() {
    let mut top: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (a, uses) in graph() {
        let entry = top.entry(vec![a[0].clone()]).or_default();
        entry.extend(
            uses.into_iter()
                .filter(|b| b[0] != a[0])
                .map(|b| vec![b[0].clone()]),
        );
    }
    let found = cycle_edges(&top);
    assert!(found.is_empty(), "{found:#?}");
}

/// The pipeline, lowest first: no stage reaches a later one, directly or not.
const PIPELINE: &[&str] = &["cli", "policy", "host", "bwrap", "launch"];

/// Modules every layer may import, which import none of the pipeline.
const FLOOR: &[&str] = &["error", "fds", "inside", "sys", "text"];

#[test]
fn each_stage_imports_only_from_below() {
    let g = graph();
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<Module> = g.keys().filter(|m| m[0] == from).cloned().collect();
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let mut wrong = Vec::new();
    for (i, low) in PIPELINE.iter().enumerate() {
        let reached = reach(low);
        for high in &PIPELINE[i + 1..] {
            if reached.iter().any(|m| m[0] == *high) {
                wrong.push(format!("{low} reaches {high}"));
            }
        }
    }
    for low in FLOOR {
        for m in reach(low) {
            if PIPELINE.contains(&m[0].as_str()) {
                wrong.push(format!("{low} reaches {}", name(&m)));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The check itself: a graph with a loop is caught, one without is not.
#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Module>();
    let mut g: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    g.entry(m("cli")).or_default().insert(m("policy"));
    g.entry(m("policy")).or_default().insert(m("host"));
    g.entry(m("host")).or_default().insert(m("sys"));
    assert!(cycle_edges(&g).is_empty());
    g.entry(m("sys")).or_default().insert(m("policy"));
    assert_eq!(
        cycle_edges(&g),
        [("host", "sys"), ("policy", "host"), ("sys", "policy")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    );
    let p = paths(&code(
        "use crate::bwrap::{FdData, render::x};\nlet _ = super::super::host::probe(); // crate::no",
    ));
    assert_eq!(
        p,
        [
            vec!["crate", "bwrap", "FdData"],
            vec!["crate", "bwrap", "render", "x"],
            vec!["super", "super", "host", "probe"],
        ]
    );
}
