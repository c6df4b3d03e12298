//! Scripts that protected files launch: the `command` of an MCP server in `.mcp.json`, a hook
//! command in `.claude/settings.json`, a task in `.vscode/tasks.json`, `initializeCommand` in
//! `.devcontainer/devcontainer.json`, a lefthook or pre-commit `run`/`entry`, a script that a
//! hook script calls. A read-only `.mcp.json` is worth nothing if the `./tools/mcp.js` it starts
//! stays writable, so each such script is made read-only too.
//!
//! How a script is recognised, without knowing every tool's schema: every string in the file
//! (JSON and TOML are parsed; JSON with comments, YAML and shell scripts are read as raw text)
//! is split into words (shell rules, then on `=`, `:` and quotes), and every word that names an
//! existing regular file inside a writable root, relative to the file's own directory or to the
//! root, is protected. Over-protecting a file that merely looks like an argument costs the
//! agent a write; missing one would cost the host. Directories are not protected this way
//! (a word such as `.` or `src` would lock the whole project).
//!
//! Paths are walked component by component without following symlinks; a word that goes
//! through a symlink is protected at its canonical target, and only when that target is inside
//! a writable root (elsewhere the agent cannot change it). It reads and never writes.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::Result;

use crate::secrets::{Found, Kind};

/// At most this many files are read below one protected directory (`.idea` can be large).
const MAX_FILES: usize = 2000;
/// Bytes read from each file: commands sit in small config files.
const MAX_BYTES: u64 = 256 * 1024;
/// How far references are followed: a config file (0) names a script (1), which may run
/// another (2).
const MAX_DEPTH: usize = 2;
/// Bytes read from all files in one launch. Commands sit in small config files; more than this
/// was planted to slow every launch (word splitting is not free), and what is not read cannot
/// be checked, so the launch refuses instead.
const MAX_TOTAL_BYTES: u64 = 16 * 1024 * 1024;
/// Words longer than this are not paths anyone runs.
const MAX_WORD: usize = 4096;

/// The files that `items` (protected runs-later entries of the root at `root`) launch, as far as
/// they can be known, each with why. None of them is one of `items` or inside one.
pub fn referenced(root: &Path, items: &[Found], writable: &[PathBuf]) -> Result<Vec<Found>> {
    let mut out: Vec<Found> = Vec::new();
    let mut budget = MAX_TOTAL_BYTES;
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let covered = |p: &Path| items.iter().any(|i| p.starts_with(&i.path));
    // (file to read, depth, what it was named by)
    let mut queue: Vec<(PathBuf, usize)> = Vec::new();
    for item in items {
        match item.kind {
            Kind::File => queue.push((item.path.clone(), 0)),
            Kind::Dir => queue.extend(files_below(&item.path).into_iter().map(|f| (f, 0))),
            _ => {}
        }
    }
    while let Some((file, depth)) = queue.pop() {
        if ide_state(&file) {
            continue;
        }
        let Some(text) = read_small(&file) else {
            continue;
        };
        budget = match budget.checked_sub(text.len() as u64) {
            Some(left) => left,
            None => return Err(too_much(root, &file)),
        };
        let base = file.parent().unwrap_or(root);
        for word in words(&file, &text) {
            for target in resolve(&word, base, root, writable) {
                if target == file || covered(&target) || !seen.insert(target.clone()) {
                    continue;
                }
                let by = file.strip_prefix(root).unwrap_or(&file);
                out.push(Found {
                    why: format!("run by {}", by.display()),
                    path: target.clone(),
                    kind: Kind::File,
                });
                if depth + 1 < MAX_DEPTH {
                    queue.push((target, depth + 1));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn too_much(root: &Path, at: &Path) -> anyhow::Error {
    let rel = at.strip_prefix(root).unwrap_or(at);
    crate::error::Fail::hint(
        format!(
            "the files the host runs later hold more than {} MiB (at {}): agentbox reads them \
             for the scripts they launch, and will not start with part of them unchecked",
            MAX_TOTAL_BYTES >> 20,
            crate::text::printable(rel.as_os_str())
        ),
        format!(
            "look at what is large in {} and remove what does not belong there (planted by an \
             earlier run?)",
            crate::text::shell_quote(at.parent().unwrap_or(at).as_os_str())
        ),
    )
    .into()
}

/// JetBrains' `.idea/workspace.xml` is the IDE's state, not its config: it lists the files the
/// user has open, which would all become read-only. Its run configurations start only when the
/// user picks one.
fn ide_state(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "workspace.xml")
        && file
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == ".idea")
}

/// Regular files below `dir`, not following symlinks, at most `MAX_FILES`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
                if out.len() >= MAX_FILES {
                    return out;
                }
            }
        }
    }
    out
}

/// The first `MAX_BYTES` of a regular file, opened without following a symlink.
fn read_small(path: &Path) -> Option<String> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    f.take(MAX_BYTES).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The words of a file that could name a script.
pub fn words(path: &Path, text: &str) -> BTreeSet<String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut strings: Vec<String> = Vec::new();
    let parsed = match ext {
        "json" => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|v| json_strings(&v, &mut strings))
            .is_some(),
        "toml" => toml::from_str::<toml::Value>(text)
            .ok()
            .map(|v| toml_strings(&v, &mut strings))
            .is_some(),
        _ => false,
    };
    if !parsed {
        // JSON with comments, YAML, XML, shell: the raw text, line by line.
        strings.extend(text.lines().map(str::to_owned));
    }
    let mut out = BTreeSet::new();
    for s in &strings {
        split_into(s, 0, &mut out);
    }
    out
}

fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            json_strings(x, out);
        }),
        _ => {}
    }
}

fn toml_strings(v: &toml::Value, out: &mut Vec<String>) {
    use toml::Value;
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| toml_strings(x, out)),
        Value::Table(t) => t.iter().for_each(|(k, x)| {
            out.push(k.clone());
            toml_strings(x, out);
        }),
        _ => {}
    }
}

/// Splits `s` by shell rules (a quoted `sh -c "..."` argument is split once more) and, in any
/// case, on whitespace, quotes and the separators config syntaxes put around paths.
fn split_into(s: &str, level: usize, out: &mut BTreeSet<String>) {
    fn add(out: &mut BTreeSet<String>, w: &str) {
        let w = strip_variable(w);
        if !w.is_empty() && w.len() <= MAX_WORD && w != "." && w != ".." {
            out.insert(w.to_owned());
        }
    }
    if let Ok(words) = shell_words::split(s) {
        for w in &words {
            if level == 0 && w.contains(char::is_whitespace) {
                split_into(w, 1, out);
            }
            for part in w.split(['=', ':']) {
                add(out, part);
            }
            add(out, w);
        }
    }
    let seps = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\''
                    | '`'
                    | ','
                    | ';'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '<'
                    | '>'
                    | '|'
                    | '&'
                    | '='
                    | ':'
            )
    };
    for w in s.split(seps) {
        add(out, w);
    }
}

/// `$CLAUDE_PROJECT_DIR/x`, `${workspaceFolder}/x`, `${localWorkspaceFolder}/x`: a variable
/// that names the project, followed by a path in it. The variable is dropped, leaving the path
/// relative (`x`). Any variable is treated so: over-protecting is harmless.
fn strip_variable(w: &str) -> &str {
    match w.strip_prefix('$') {
        Some(rest) => match rest.find('/') {
            Some(i) => rest[i..].trim_start_matches('/'),
            None => "",
        },
        None => w,
    }
}

/// The files `word` can name, tried relative to `base` (the file's directory) and to `root`:
/// each an existing regular file inside a writable root, by a path free of symlinks.
pub fn resolve(word: &str, base: &Path, root: &Path, writable: &[PathBuf]) -> Vec<PathBuf> {
    let word = Path::new(word);
    let mut tries: Vec<PathBuf> = Vec::new();
    if word.is_absolute() {
        tries.push(word.to_owned());
        // `"$X"/tools/x.sh` read as raw text leaves `/tools/x.sh`.
        if let Ok(rel) = word.strip_prefix("/") {
            tries.push(root.join(rel));
        }
    } else {
        tries.push(base.join(word));
        tries.push(root.join(word));
    }
    let mut out = Vec::new();
    for t in tries {
        match walk_within(&t, writable) {
            Some(p) => out.push(p),
            // A module named the way its runtime finds it: `require('./lib')`, `node tools/mcp`
            // (a directory with an index), `python tools/mcp` (a package's __main__.py).
            None => out.extend(module_files(&t).find_map(|m| walk_within(&m, writable))),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Script extensions and entry files tried for a word that names no file itself.
const MODULE_SUFFIXES: &[&str] = &[".js", ".mjs", ".cjs", ".ts", ".py", ".sh"];
const MODULE_ENTRIES: &[&str] = &[
    "index.js",
    "index.mjs",
    "index.cjs",
    "index.ts",
    "__main__.py",
];

/// The files a runtime would load for the module `path`, in the order tried.
fn module_files(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    let with_suffix = MODULE_SUFFIXES.iter().map(move |sfx| {
        let mut s = path.as_os_str().to_owned();
        s.push(sfx);
        PathBuf::from(s)
    });
    with_suffix.chain(MODULE_ENTRIES.iter().map(move |e| path.join(e)))
}

/// `path` (absolute), with `.` and `..` taken lexically, if it ends at a regular file inside a
/// writable root. Each component is looked at without following it; where one is a symlink, the
/// answer is the canonical target, kept only if it is inside a writable root too.
fn walk_within(path: &Path, writable: &[PathBuf]) -> Option<PathBuf> {
    let mut norm = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => norm.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                norm.pop();
            }
            Component::Normal(n) => norm.push(n),
            Component::Prefix(_) => return None,
        }
    }
    let root = writable.iter().find(|w| norm.starts_with(w))?;
    let mut at = root.clone();
    let rest = norm.strip_prefix(root).ok()?.to_owned();
    let inside = |p: &Path| writable.iter().any(|w| p.starts_with(w));
    for c in rest.components() {
        at.push(c);
        let meta = fs::symlink_metadata(&at).ok()?;
        if meta.file_type().is_symlink() {
            let target = fs::canonicalize(&norm).ok()?;
            let is_file = fs::symlink_metadata(&target).ok()?.is_file();
            return (is_file && inside(&target)).then_some(target);
        }
    }
    fs::symlink_metadata(&at)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        for f in [
            "tools/mcp.js",
            "tools/other.js",
            ".claude/hooks/fmt.sh",
            ".claude/hooks/lib.sh",
            "scripts/clean.sh",
            "src/main.rs",
        ] {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "x").unwrap();
        }
        (dir, root)
    }

    fn rels(root: &Path, found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    fn item(root: &Path, rel: &str, body: &str) -> Found {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        Found {
            path: p,
            kind: Kind::File,
            why: "test".into(),
        }
    }

    #[test]
    fn mcp_and_claude_hooks_name_their_scripts() {
        let (_d, root) = tree();
        let mcp = item(
            &root,
            ".mcp.json",
            r#"{"mcpServers":{"x":{"command":"node","args":["./tools/mcp.js","--root","."]}}}"#,
        );
        let settings = item(
            &root,
            ".claude/settings.json",
            r#"{"hooks":{"PostToolUse":[{"hooks":[{"type":"command",
               "command":"\"$CLAUDE_PROJECT_DIR\"/.claude/hooks/fmt.sh"}]}]}}"#,
        );
        let w = vec![root.clone()];
        let got = referenced(&root, &[mcp, settings], &w).unwrap();
        assert_eq!(rels(&root, &got), [".claude/hooks/fmt.sh", "tools/mcp.js"]);
        assert_eq!(got[1].why, "run by .mcp.json");
    }

    #[test]
    fn yaml_toml_shell_and_jsonc_are_read() {
        let (_d, root) = tree();
        let yaml = item(
            &root,
            "lefthook.yml",
            "pre-commit:\n  commands:\n    x:\n      run: sh scripts/clean.sh {staged_files}\n",
        );
        let jsonc = item(
            &root,
            ".vscode/tasks.json",
            "// comment\n{\"tasks\":[{\"command\":\"${workspaceFolder}/tools/other.js\"}]}\n",
        );
        let w = vec![root.clone()];
        let got = referenced(&root, &[yaml, jsonc], &w).unwrap();
        assert_eq!(rels(&root, &got), ["scripts/clean.sh", "tools/other.js"]);
        // A script a referenced script runs is followed one level further.
        fs::write(root.join(".claude/hooks/fmt.sh"), "sh ./lib.sh\n").unwrap();
        let s = item(&root, "x.json", r#"{"c":".claude/hooks/fmt.sh"}"#);
        let got = referenced(&root, &[s], &w).unwrap();
        assert_eq!(
            rels(&root, &got),
            [".claude/hooks/fmt.sh", ".claude/hooks/lib.sh"]
        );
    }

    #[test]
    fn directories_outside_paths_and_symlinks_out_are_not_protected() {
        let (_d, root) = tree();
        let out = tempfile::tempdir().unwrap();
        let outside = fs::canonicalize(out.path()).unwrap().join("evil.sh");
        fs::write(&outside, "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("tools/out.sh")).unwrap();
        std::os::unix::fs::symlink(root.join("tools/mcp.js"), root.join("tools/in.sh")).unwrap();
        let cfg = item(
            &root,
            ".mcp.json",
            &format!(
                r#"{{"a":"src","b":"../../../etc/passwd","c":"tools/out.sh","d":"tools/in.sh","e":"{}"}}"#,
                outside.display()
            ),
        );
        let w = vec![root.clone()];
        let got = referenced(&root, &[cfg], &w).unwrap();
        // Only the in-root target of the in-root symlink.
        assert_eq!(rels(&root, &got), ["tools/mcp.js"]);
    }

    #[test]
    fn modules_are_found_as_their_runtime_finds_them() {
        let (_t, root) = tree();
        fs::create_dir_all(root.join("tools/srv")).unwrap();
        fs::write(root.join("tools/mcp.js"), "const l = require('./lib');\n").unwrap();
        fs::write(root.join("tools/lib.js"), "module.exports = 1;\n").unwrap();
        fs::write(root.join("tools/srv/index.js"), "1\n").unwrap();
        fs::write(root.join("tools/other.js"), "1\n").unwrap();
        let cfg = item(
            &root,
            ".mcp.json",
            r#"{"mcpServers":{"a":{"command":"node","args":["tools/mcp.js"]},
                "b":{"command":"node","args":["tools/srv"]}}}"#,
        );
        let got = referenced(&root, &[cfg], std::slice::from_ref(&root)).unwrap();
        // The control: a file nothing names stays out.
        assert_eq!(
            rels(&root, &got),
            ["tools/lib.js", "tools/mcp.js", "tools/srv/index.js"]
        );
    }

    #[test]
    fn more_than_the_budget_refuses_instead_of_reading_part() {
        let (_t, root) = tree();
        fs::create_dir_all(root.join(".vscode")).unwrap();
        // Control: a few small config files are read.
        fs::write(root.join(".vscode/tasks.json"), "{}").unwrap();
        let dir = |root: &Path| Found {
            path: root.join(".vscode"),
            kind: Kind::Dir,
            why: String::new(),
        };
        referenced(&root, &[dir(&root)], std::slice::from_ref(&root)).unwrap();
        // Planted bulk: 80 files of MAX_BYTES each, past the launch's budget.
        for i in 0..80 {
            let f = fs::File::create(root.join(format!(".vscode/junk{i}.json"))).unwrap();
            f.set_len(MAX_BYTES).unwrap();
        }
        let err = referenced(&root, &[dir(&root)], std::slice::from_ref(&root)).unwrap_err();
        let (code, hint) = crate::error::classify(&err);
        assert_eq!(code, 125);
        assert!(hint.unwrap().contains(".vscode"), "{err:#}");
    }

    #[test]
    fn the_ides_state_file_is_not_read() {
        let (_d, root) = tree();
        let ws = item(&root, ".idea/workspace.xml", r#"<file url="src/main.rs"/>"#);
        let runconf = item(
            &root,
            ".idea/runConfigurations/x.xml",
            r#"<x v="tools/mcp.js"/>"#,
        );
        let w = vec![root.clone()];
        let got = referenced(&root, &[ws, runconf], &w).unwrap();
        assert_eq!(rels(&root, &got), ["tools/mcp.js"]);
    }

    #[test]
    fn files_inside_a_protected_item_are_not_listed_again() {
        let (_d, root) = tree();
        let dir = Found {
            path: root.join(".claude/hooks"),
            kind: Kind::Dir,
            why: "x".into(),
        };
        fs::write(
            root.join(".claude/hooks/fmt.sh"),
            "./lib.sh ../../tools/mcp.js",
        )
        .unwrap();
        let w = vec![root.clone()];
        let got = referenced(&root, &[dir], &w).unwrap();
        assert_eq!(rels(&root, &got), ["tools/mcp.js"]);
    }
}
