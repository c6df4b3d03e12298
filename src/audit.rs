//! The audit at exit: what the agent did to the files the host runs later. Some of it cannot be
//! prevented without leaving stub files on the host (a new `.envrc`, a new `.vscode/`, a new
//! nested git repository, a new CI workflow), some is allowed on purpose (instruction files,
//! workflows: `Guard::Audit`), and a protected item can still be swapped by renaming a directory
//! above it. None of it may go unnoticed: when the command ends, the runs-later state of every
//! writable root is compared with the state at start and the differences are printed on stderr
//! (and written as JSON with `--audit-json FILE`).
//!
//! The rule for everything here: a path or file inside a writable root, or anywhere the sandbox
//! could write in an earlier run (agent homes, runtime directories), is attacker-controlled.
//! Nothing read from there may widen the sandbox, redirect a host-side write, or make the next
//! run's scan see less; what cannot be read or checked is refused (exit 125, with the fix).
//!
//! The start state is the launch scan's findings (`HostFacts`), hashed before bwrap starts; the
//! end state is a fresh scan of the same roots plus every path known at start. Each item is
//! compared by identity (device and inode: a swap) and by a SHA-256 of its content (a file's
//! bytes, a symlink's target, a directory's names and contents, a git directory's hooks and
//! config). It reads the writable roots and writes only the JSON report; the command's exit
//! code is left alone.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::host::HostFacts;
use crate::hostfs::{self, Untrusted};
use crate::rules::GIT_RUNS_LATER;
use crate::secrets::{self, Found, Kind, Matcher};
use crate::text::{printable, printable_str};

/// At most this many entries are hashed below one directory: past it the rest is left out of
/// the hash (said in the README's limits).
const MAX_TREE: usize = 10_000;

/// At most this many bytes of a file are hashed; its size and modification time stand for the
/// rest, so a huge (or sparse) file planted in a watched directory cannot stall the exit.
const MAX_HASHED: u64 = 16 * 1024 * 1024;

/// Why a control file that appeared in a git dir is reported.
const CONTROL_WHY: &str = "git obeys it once it exists and never writes it there itself: planted?";

const GIT_WHY: &str = "a git repository: git runs its hooks and obeys its config here";

/// What happened to an item between start and exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    New,
    Changed,
    Removed,
    /// Another file or directory now stands where a protected one was (a different inode).
    Replaced,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Replaced => "replaced",
        }
    }
}

/// How an item exists: its type, identity and content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    kind: Kind,
    id: (u64, u64),
    hash: [u8; 32],
}

#[derive(Debug, Clone)]
struct Item {
    why: String,
    /// Made read-only inside: any new identity means it was swapped.
    locked: bool,
    state: Option<State>,
}

/// The runs-later state of every writable root at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    items: BTreeMap<PathBuf, Item>,
}

/// One difference, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub change: Change,
    pub path: PathBuf,
    pub why: String,
    pub dir: bool,
}

impl Snapshot {
    /// The state at start, from what the launch scan found.
    pub fn start(facts: &HostFacts) -> Snapshot {
        let mut s = Snapshot::default();
        for root in &facts.project.roots {
            let locked = root
                .runs_later
                .iter()
                .chain(&root.runs_later_targets)
                .chain(&root.referenced);
            for f in locked {
                s.add(&f.path, &f.why, true);
            }
            for f in &root.watched {
                s.add(&f.path, &f.why, false);
            }
            for g in &root.git {
                s.add(&g.dot_git, GIT_WHY, true);
                // Absent now; present at exit means planted (git never writes them there).
                for p in &g.control_absent {
                    s.add(p, CONTROL_WHY, true);
                }
            }
        }
        s
    }

    /// The state at exit: a fresh scan of `roots`, plus every path `before` knew. The scan
    /// fails closed as at launch: what it cannot read is an error, never a quiet audit.
    pub fn end(before: &Snapshot, roots: &[PathBuf], matcher: &Matcher) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        for root in roots {
            let report = secrets::scan(root, matcher)?;
            let add_all = |s: &mut Snapshot, list: &[Found], locked: bool| {
                for f in list {
                    s.add(&f.path, &f.why, locked);
                }
            };
            add_all(&mut s, &report.runs_later, true);
            add_all(&mut s, &report.watched, false);
            for g in &report.git {
                s.add(&g.path, GIT_WHY, true);
            }
        }
        for (path, item) in &before.items {
            if !s.items.contains_key(path) {
                s.add(path, &item.why, item.locked);
            }
        }
        Ok(s)
    }

    fn add(&mut self, path: &Path, why: &str, locked: bool) {
        if self.items.contains_key(path) {
            return;
        }
        let item = Item {
            why: why.to_owned(),
            locked,
            state: state(path),
        };
        self.items.insert(path.to_owned(), item);
    }
}

/// What changed from `before` to `after`, by path.
pub fn compare(before: &Snapshot, after: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    for (path, a) in &after.items {
        let b = before.items.get(path);
        let was = b.and_then(|b| b.state.as_ref());
        let change = match (was, &a.state) {
            (None, None) => None,
            (None, Some(_)) => Some(Change::New),
            (Some(_), None) => Some(Change::Removed),
            (Some(x), Some(y)) => {
                let locked = b.is_some_and(|b| b.locked);
                if x.kind != y.kind || (locked && x.id != y.id) {
                    Some(Change::Replaced)
                } else if x.hash != y.hash {
                    Some(Change::Changed)
                } else {
                    None
                }
            }
        };
        if let Some(change) = change {
            let kind = a.state.as_ref().or(was).map(|s| s.kind);
            out.push(Finding {
                change,
                path: path.clone(),
                why: b.map_or(&a.why, |b| &b.why).clone(),
                dir: kind == Some(Kind::Dir),
            });
        }
    }
    out
}

/// The report for stderr, or `None` when nothing changed.
pub fn render(findings: &[Finding], project: &Path) -> Option<String> {
    if findings.is_empty() {
        return None;
    }
    let mut s = String::from(
        "agentbox: the agent created or changed files your tools run later; review before \
         running them:\n",
    );
    let names: Vec<String> = findings.iter().map(|f| shown(f, project)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (f, name) in findings.iter().zip(&names) {
        s.push_str(&format!(
            "  {:<8} {:<width$}  ({})\n",
            f.change.word(),
            name,
            printable_str(&f.why)
        ));
    }
    Some(s)
}

/// The path as the user knows it: relative to the project when inside it, escaped.
fn shown(f: &Finding, project: &Path) -> String {
    let rel = f.path.strip_prefix(project).unwrap_or(&f.path);
    let mut s = printable(rel.as_os_str());
    if f.dir {
        s.push('/');
    }
    s
}

#[derive(Serialize)]
struct JsonReport<'a> {
    changes: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    change: Change,
    path: String,
    kind: &'static str,
    why: &'a str,
}

/// The findings as one JSON document.
pub fn json(findings: &[Finding]) -> String {
    let changes = findings
        .iter()
        .map(|f| JsonFinding {
            change: f.change,
            path: f.path.to_string_lossy().into_owned(),
            kind: if f.dir { "dir" } else { "file" },
            why: &f.why,
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&JsonReport { changes }).unwrap_or_default();
    s.push('\n');
    s
}

/// At exit: rescan, compare with `before`, print the report, write `--audit-json`.
pub fn finish(
    before: &Snapshot,
    facts: &HostFacts,
    matcher: &Matcher,
    json_file: Option<&Path>,
    areas: &Untrusted,
) -> Result<()> {
    let roots: Vec<PathBuf> = facts.project.roots.iter().map(|r| r.path.clone()).collect();
    let after = Snapshot::end(before, &roots, matcher)?;
    let findings = compare(before, &after);
    if let Some(text) = render(&findings, &facts.project.dir) {
        eprint!("{text}");
    }
    if let Some(path) = json_file {
        let path = facts.user.cwd.join(path);
        let mut f = open_report(&path, areas)?;
        f.write_all(json(&findings).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Opens the JSON report for writing through `hostfs`: the path may lie in a writable root,
/// where the agent could have planted a symlink or a hard link to another of the user's files.
fn open_report(path: &Path, areas: &Untrusted) -> Result<fs::File> {
    hostfs::open_file(path, hostfs::Write::Replace, areas)
        .context("writing the audit report (--audit-json)")
}

/// How `path` exists now, or `None`.
fn state(path: &Path) -> Option<State> {
    let m = fs::symlink_metadata(path).ok()?;
    let kind = kind_of(&m);
    let mut h = Sha256::new();
    match kind {
        Kind::Dir if path.file_name().is_some_and(|n| n == ".git") => git_hash(path, &mut h),
        Kind::Dir => tree_hash(path, &mut h, &mut 0),
        _ => leaf_hash(path, kind, &mut h),
    }
    Some(State {
        kind,
        id: (m.dev(), m.ino()),
        hash: h.finalize().into(),
    })
}

fn kind_of(m: &fs::Metadata) -> Kind {
    let ft = m.file_type();
    if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// A git directory by what git runs or obeys in it (not its objects, index or refs, which
/// every commit changes).
fn git_hash(dir: &Path, h: &mut Sha256) {
    for r in GIT_RUNS_LATER {
        let p = dir.join(r.path);
        h.update(r.path.as_bytes());
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => tree_hash(&p, h, &mut 0),
            Ok(m) => leaf_hash(&p, kind_of(&m), h),
            Err(_) => h.update(b"\0absent"),
        }
    }
}

/// A directory by its entries' names, types and contents, in name order, not following
/// symlinks, up to `MAX_TREE` entries.
fn tree_hash(dir: &Path, h: &mut Sha256, count: &mut usize) {
    let Ok(rd) = fs::read_dir(dir) else {
        h.update(b"\0unreadable");
        return;
    };
    let mut entries: Vec<(std::ffi::OsString, PathBuf)> =
        rd.flatten().map(|e| (e.file_name(), e.path())).collect();
    entries.sort();
    for (name, path) in entries {
        *count += 1;
        if *count > MAX_TREE {
            return;
        }
        h.update(name.as_bytes());
        h.update(b"\0");
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        match kind_of(&m) {
            Kind::Dir => {
                h.update(b"d");
                tree_hash(&path, h, count);
                h.update(b"\0end");
            }
            k => leaf_hash(&path, k, h),
        }
    }
}

fn leaf_hash(path: &Path, kind: Kind, h: &mut Sha256) {
    match kind {
        Kind::Symlink => {
            h.update(b"l");
            if let Ok(t) = fs::read_link(path) {
                h.update(t.as_os_str().as_bytes());
            }
        }
        Kind::File => {
            h.update(b"f");
            let opened = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path);
            let mut buf = [0u8; 64 * 1024];
            if let Ok(f) = opened {
                if let Ok(m) = f.metadata() {
                    h.update(m.len().to_le_bytes());
                    if m.len() > MAX_HASHED {
                        h.update(m.mtime().to_le_bytes());
                        h.update(m.mtime_nsec().to_le_bytes());
                    }
                }
                let mut f = f.take(MAX_HASHED);
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
        }
        _ => h.update(b"o"),
    }
    // The exec bits decide whether git or a shell runs it.
    if let Ok(m) = fs::symlink_metadata(path) {
        h.update((m.mode() & 0o7777).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(root: &Path, before: &Snapshot) -> Snapshot {
        Snapshot::end(
            before,
            &[root.to_owned()],
            &Matcher::new(true, &[], &[]).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn each_kind_of_change_is_found_and_an_ordinary_edit_is_not() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        let w = |rel: &str, body: &str| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        };
        w("AGENTS.md", "be nice");
        w("CLAUDE.md", "old");
        w(".vscode/settings.json", "{}");
        w("src/main.rs", "fn main() {}");
        w(".github/workflows/ci.yml", "on: push");
        fs::create_dir_all(root.join(".git/hooks")).unwrap();
        w(".git/config", "[core]");
        let before = snapshot(&root, &Snapshot::default());
        // Ordinary work: source edits, a build, a commit's objects.
        w("src/main.rs", "fn main() { println!() }");
        w("target/debug/app", "bin");
        w(".git/objects/ab/cdef", "obj");
        w(".git/index", "idx");
        assert_eq!(compare(&before, &snapshot(&root, &before)), []);
        // Now each kind.
        w(".envrc", "evil");
        w("CLAUDE.md", "new");
        fs::remove_file(root.join("AGENTS.md")).unwrap();
        fs::rename(root.join(".vscode"), root.join("old-vscode")).unwrap();
        w(".vscode/settings.json", "{}");
        w("lib/.git/hooks/pre-commit", "evil");
        w(".github/workflows/new.yml", "x");
        let got: Vec<(Change, String)> = compare(&before, &snapshot(&root, &before))
            .into_iter()
            .map(|f| (f.change, shown(&f, &root)))
            .collect();
        assert_eq!(
            got,
            [
                (Change::New, ".envrc".to_owned()),
                (Change::Changed, ".github/workflows/".to_owned()),
                (Change::Replaced, ".vscode/".to_owned()),
                (Change::Removed, "AGENTS.md".to_owned()),
                (Change::Changed, "CLAUDE.md".to_owned()),
                (Change::New, "lib/.git/".to_owned()),
            ]
        );
    }

    #[test]
    fn a_planted_cache_tag_does_not_hide_a_new_envrc() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        let m = Matcher::new(true, &[], &[]).unwrap();
        let before = Snapshot::end(&Snapshot::default(), std::slice::from_ref(&root), &m).unwrap();
        fs::create_dir_all(root.join("tools")).unwrap();
        fs::write(root.join("tools/CACHEDIR.TAG"), "Signature").unwrap();
        fs::write(root.join("tools/.envrc"), "evil").unwrap();
        let after = Snapshot::end(&before, std::slice::from_ref(&root), &m).unwrap();
        let got: Vec<PathBuf> = compare(&before, &after)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(got, [root.join("tools/.envrc")]);
    }

    #[test]
    fn hooks_in_the_git_dir_count_and_start_comes_from_facts_lists() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(root.join(".git/hooks")).unwrap();
        let mut s = Snapshot::default();
        s.add(&root.join(".git"), GIT_WHY, true);
        s.add(&root.join("x.sh"), "run by .mcp.json", true);
        fs::write(root.join(".git/hooks/pre-commit"), "evil").unwrap();
        let after = Snapshot::end(
            &s,
            std::slice::from_ref(&root),
            &Matcher::new(true, &[], &[]).unwrap(),
        )
        .unwrap();
        let got = compare(&s, &after);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].change, got[0].dir), (Change::Changed, true));
    }

    #[test]
    fn a_huge_sparse_file_is_hashed_in_bounded_time() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("big");
        let f = fs::File::create(&p).unwrap();
        f.set_len(1 << 40).unwrap();
        let a = state(&p).unwrap();
        // A change past the hashed part still shows, through the size.
        f.set_len((1 << 40) + 1).unwrap();
        assert_ne!(a.hash, state(&p).unwrap().hash);
    }

    #[test]
    fn report_escapes_names_and_json_has_every_finding() {
        let f = Finding {
            change: Change::New,
            path: PathBuf::from("/p/evil\x1b[2J\n.envrc"),
            why: "direnv".into(),
            dir: false,
        };
        let text = render(std::slice::from_ref(&f), Path::new("/p")).unwrap();
        assert!(
            text.contains("new      evil\\e[2J\\n.envrc  (direnv)"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(&json(&[f])).unwrap();
        assert_eq!(v["changes"][0]["change"], "new");
        assert_eq!(v["changes"][0]["kind"], "file");
        assert_eq!(render(&[], Path::new("/p")), None);
    }

    #[test]
    fn the_report_file_is_not_opened_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let link = t.path().join("report.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(open_report(&link, &Untrusted::everywhere()).is_err());
        let hard = t.path().join("hard.json");
        fs::hard_link(&victim, &hard).unwrap();
        assert!(open_report(&hard, &Untrusted::everywhere()).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        // The control: a fresh name works and an old report is overwritten.
        let ok = t.path().join("ok.json");
        fs::write(&ok, "old old old").unwrap();
        open_report(&ok, &Untrusted::everywhere())
            .unwrap()
            .write_all(b"{}")
            .unwrap();
        assert_eq!(fs::read_to_string(&ok).unwrap(), "{}");
    }
}
