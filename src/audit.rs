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
//! config, and what its state directories make git run: `GIT_PARTS`), within a budget for the
//! whole audit past which metadata stands for content. Unlike the launch scan, the exit scan
//! does not refuse what it cannot read: it names it ("not checked"), since refusing would only
//! lose the report on the rest. It reads the writable roots and writes only the JSON report;
//! the command's exit code is left alone.

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
use crate::secrets::{self, Kind, Matcher};
use crate::text::{printable, printable_str};

/// At most this many entries are hashed below one directory: past it the rest is left out of
/// the hash (said in the README's limits).
const MAX_TREE: usize = 10_000;

/// At most this many bytes of a file are hashed; its size and modification time stand for the
/// rest, so a huge (or sparse) file planted in a watched directory cannot stall the exit.
const MAX_HASHED: u64 = 16 * 1024 * 1024;

/// The whole audit (each of its two snapshots) hashes at most this many bytes and visits at most
/// this many entries: the per-file and per-item caps alone still let an earlier run plant
/// thousands of capped files or items and make the exit (or the start) take hours. Past the
/// budget an item is compared by its entries' metadata, then by its own (`State`): a change
/// still shows, at the cost of a report for a touch that changed no byte.
const BUDGET_BYTES: u64 = 64 * 1024 * 1024;
const BUDGET_ENTRIES: usize = 100_000;

/// Why a control file that appeared in a git dir is reported.
const CONTROL_WHY: &str = "git obeys it once it exists and never writes it there itself: planted?";

const GIT_WHY: &str = "a git repository: git runs its hooks and obeys its config here";

/// Inside a git directory, besides its top (`GIT_RUNS_LATER`): what git runs or obeys later
/// from places it fills as it works, each audited on its own so that the report names it.
const GIT_PARTS: &[(&str, How, &str)] = &[
    (
        "modules",
        How::Modules,
        "submodules' git dirs: `git submodule update` reuses them, with their hooks and config",
    ),
    (
        "worktrees",
        How::Worktrees,
        "linked worktrees' config and pointers: git obeys them there",
    ),
    (
        "rebase-merge",
        How::Exists,
        "an interrupted rebase: `git rebase --continue` resumes it",
    ),
    (
        "rebase-merge/git-rebase-todo",
        How::Whole,
        "git rebase --continue runs its exec lines",
    ),
    (
        "rebase-apply",
        How::Whole,
        "an interrupted git am or rebase: `--continue` applies what it holds",
    ),
    (
        "sequencer/todo",
        How::Whole,
        "git rebase --continue / cherry-pick --continue runs its exec lines",
    ),
];

/// Where the exit scan could not look: listed, since a planted file there went unseen.
const UNCHECKED_WHY: &str = "could hide planted files";

/// What happened to an item between start and exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    New,
    Changed,
    Removed,
    /// Another file or directory now stands where a protected one was (a different inode).
    Replaced,
    /// A place the exit scan could not read (a directory made unreadable).
    Unchecked,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Replaced => "replaced",
            Change::Unchecked => "not checked",
        }
    }
}

/// How an item's content is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// A file by its bytes, a symlink by its target, a directory by its whole tree.
    Whole,
    /// A git directory by what git runs or obeys at its top (not its objects, index or refs,
    /// which every commit changes).
    GitTop,
    /// A `modules/` directory: each submodule git dir's hooks and config, at any depth.
    Modules,
    /// A `worktrees/` directory: each linked worktree's `config.worktree`, `commondir`, `gitdir`.
    Worktrees,
    /// Whether it exists, and its type: a directory git fills with state as it works.
    Exists,
}

/// How an item exists: its type, identity, and three hashes of it, from cheapest to fullest.
/// Two states are compared by the fullest hash both have (`differs`), so an item that ran past
/// the budget in one snapshot only is not reported for that.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    kind: Kind,
    id: (u64, u64),
    /// Its own size, times, device, inode and mode.
    own: [u8; 32],
    /// The names and metadata of everything hashed in it; `None` past the entry budget.
    meta: Option<[u8; 32]>,
    /// The names and content of everything in it; `None` past either budget.
    content: Option<[u8; 32]>,
}

impl State {
    fn differs(&self, other: &State) -> bool {
        if let (Some(a), Some(b)) = (self.content, other.content) {
            return a != b;
        }
        if let (Some(a), Some(b)) = (self.meta, other.meta) {
            return a != b;
        }
        self.own != other.own
    }
}

#[derive(Debug, Clone)]
struct Item {
    why: String,
    /// Made read-only inside: any new identity means it was swapped.
    locked: bool,
    how: How,
    state: Option<State>,
    /// It could not be looked at (a directory above it made unreadable): not compared.
    unreadable: bool,
}

/// The runs-later state of every writable root at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    items: BTreeMap<PathBuf, Item>,
    /// Directories the exit scan could not read.
    unchecked: Vec<PathBuf>,
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
                s.add(&f.path, &f.why, true, How::Whole);
            }
            for f in &root.watched {
                s.add(&f.path, &f.why, false, How::Whole);
            }
            for g in &root.git {
                s.add_git(&g.dot_git);
                // Absent now; present at exit means planted (git never writes them there).
                for p in &g.control_absent {
                    s.add(p, CONTROL_WHY, true, How::Whole);
                }
            }
            // A referenced script loads its neighbours (`require('./lib')`, `. ./common.sh`),
            // which no word in the protected file names: their directory is watched. Not the
            // root itself, where every edit of the project would be reported.
            for f in &root.referenced {
                let Some(dir) = f.path.parent() else { continue };
                if dir != root.path && dir.starts_with(&root.path) {
                    let by = f.why.strip_prefix("run by ").unwrap_or(&f.why);
                    let why = format!("beside a script that {by} runs");
                    s.add(dir, &why, false, How::Whole);
                }
            }
        }
        s.measure();
        s
    }

    /// The state at exit: a fresh scan of `roots`, plus every path `before` knew. Unlike the
    /// launch scan this one does not fail on what it cannot read: the agent has run, and one
    /// unreadable directory must not cost the report on the rest. Those places are listed
    /// instead (`Change::Unchecked`).
    pub fn end(before: &Snapshot, roots: &[PathBuf], matcher: &Matcher) -> Snapshot {
        let mut s = Snapshot::default();
        for root in roots {
            let (report, unread) = secrets::scan_lenient(root, matcher);
            for f in &report.runs_later {
                s.add(&f.path, &f.why, true, How::Whole);
            }
            for f in &report.watched {
                s.add(&f.path, &f.why, false, How::Whole);
            }
            for g in &report.git {
                s.add_git(&g.path);
            }
            s.unchecked.extend(unread);
        }
        for (path, item) in &before.items {
            s.add(path, &item.why, item.locked, item.how);
        }
        s.measure();
        // What could not be looked at is under a "not checked" line, not reported as removed.
        let hidden: Vec<PathBuf> = s
            .items
            .iter()
            .filter(|(p, i)| i.unreadable && !s.unchecked.iter().any(|u| p.starts_with(u)))
            .filter_map(|(p, _)| p.parent().map(Path::to_owned))
            .collect();
        s.unchecked.extend(hidden);
        s.unchecked.sort();
        s.unchecked.dedup();
        s
    }

    /// A `.git` entry and the places inside it that git runs or obeys later.
    fn add_git(&mut self, dot_git: &Path) {
        self.add(dot_git, GIT_WHY, true, How::GitTop);
        for (rel, how, why) in GIT_PARTS {
            self.add(&dot_git.join(rel), why, false, *how);
        }
    }

    fn add(&mut self, path: &Path, why: &str, locked: bool, how: How) {
        self.items.entry(path.to_owned()).or_insert_with(|| Item {
            why: why.to_owned(),
            locked,
            how,
            state: None,
            unreadable: false,
        });
    }

    /// Reads every item, in path order (the same order at start and exit, so that the budget
    /// runs out at the same place when nothing changed).
    fn measure(&mut self) {
        let mut budget = Budget {
            bytes: BUDGET_BYTES,
            entries: BUDGET_ENTRIES,
        };
        for (path, item) in &mut self.items {
            match fs::symlink_metadata(path) {
                Ok(m) => item.state = Some(state(path, &m, item.how, &mut budget)),
                // Absent, or below a file (`modules/` of a `.git` file): not there.
                Err(e) => {
                    use std::io::ErrorKind::{NotADirectory, NotFound};
                    item.unreadable = !matches!(e.kind(), NotFound | NotADirectory);
                }
            }
        }
    }
}

/// What changed from `before` to `after`, by path; then the places `after` could not read.
pub fn compare(before: &Snapshot, after: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    for (path, a) in &after.items {
        let b = before.items.get(path);
        if a.unreadable {
            continue;
        }
        let was = b.and_then(|b| b.state.as_ref());
        let change = match (was, &a.state) {
            (None, None) => None,
            (None, Some(_)) => Some(Change::New),
            (Some(_), None) => Some(Change::Removed),
            (Some(x), Some(y)) => {
                let locked = b.is_some_and(|b| b.locked);
                if x.kind != y.kind || (locked && x.id != y.id) {
                    Some(Change::Replaced)
                } else if x.differs(y) {
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
    out.extend(after.unchecked.iter().map(|p| Finding {
        change: Change::Unchecked,
        path: p.clone(),
        why: UNCHECKED_WHY.to_owned(),
        dir: true,
    }));
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
    // "not checked" is longer than the usual 8: two spaces after it then.
    let words = findings.iter().map(|f| f.change.word().len()).max();
    let wide = words.map_or(8, |w| if w > 8 { w + 1 } else { 8 });
    for (f, name) in findings.iter().zip(&names) {
        s.push_str(&format!(
            "  {:<wide$} {:<width$}  ({})\n",
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
    let after = Snapshot::end(before, &roots, matcher);
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

/// What is left of the whole audit's budget (`BUDGET_BYTES`, `BUDGET_ENTRIES`).
struct Budget {
    bytes: u64,
    entries: usize,
}

/// The hashes of one item as it is read, within the budget.
struct Hashing<'a> {
    budget: &'a mut Budget,
    meta: Option<Sha256>,
    content: Option<Sha256>,
    /// Entries read below this item, for `MAX_TREE`.
    count: usize,
}

impl Hashing<'_> {
    /// Into both hashes.
    fn name(&mut self, bytes: &[u8]) {
        self.meta.iter_mut().for_each(|h| h.update(bytes));
        self.content.iter_mut().for_each(|h| h.update(bytes));
        self.meta.iter_mut().for_each(|h| h.update(b"\0"));
        self.content.iter_mut().for_each(|h| h.update(b"\0"));
    }

    /// One entry read: counted against the budget, its metadata into `meta`. False once the
    /// budget is spent (nothing more of this item is read then).
    fn entry(&mut self, m: &fs::Metadata) -> bool {
        if self.budget.entries == 0 {
            self.meta = None;
            self.content = None;
            return false;
        }
        self.budget.entries -= 1;
        // A directory's own times change whenever anything is created in it (git's lock files):
        // its names stand for it instead.
        if let Some(h) = &mut self.meta
            && !m.is_dir()
        {
            h.update(own(m));
        }
        true
    }

    fn content(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.content {
            h.update(bytes);
        }
    }
}

/// A file's or directory's own metadata: what changes when it is written, renamed over, or
/// has entries added or removed. Access times are left out: reading is no change.
fn own(m: &fs::Metadata) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in [m.size(), m.dev(), m.ino(), u64::from(m.mode())] {
        h.update(v.to_le_bytes());
    }
    for v in [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()] {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
}

/// How `path` (with metadata `m`) exists now, read as `how` says.
fn state(path: &Path, m: &fs::Metadata, how: How, budget: &mut Budget) -> State {
    let kind = Kind::of(m.file_type());
    let id = (m.dev(), m.ino());
    if how == How::Exists {
        let h: [u8; 32] = Sha256::digest([kind as u8]).into();
        return State {
            kind,
            id,
            own: h,
            meta: Some(h),
            content: Some(h),
        };
    }
    let mut w = Hashing {
        budget,
        meta: Some(Sha256::new()),
        content: Some(Sha256::new()),
        count: 0,
    };
    if w.entry(m) {
        match (kind, how) {
            (Kind::Dir, How::GitTop) => git_top(path, &mut w),
            (Kind::Dir, How::Modules) => modules(path, &mut w, 0),
            (Kind::Dir, How::Worktrees) => worktrees(path, &mut w),
            (Kind::Dir, _) => tree(path, &mut w),
            _ => leaf(path, m, kind, &mut w),
        }
    }
    State {
        kind,
        id,
        own: own(m),
        meta: w.meta.map(|h| h.finalize().into()),
        content: w.content.map(|h| h.finalize().into()),
    }
}

/// `dir/name`, a file or a whole directory, or its absence.
fn part(dir: &Path, name: &str, w: &mut Hashing<'_>) {
    let p = dir.join(name);
    w.name(name.as_bytes());
    match fs::symlink_metadata(&p) {
        Ok(m) if !w.entry(&m) => {}
        Ok(m) if m.is_dir() => tree(&p, w),
        Ok(m) => leaf(&p, &m, Kind::of(m.file_type()), w),
        Err(_) => w.name(b"\0absent"),
    }
}

/// A git directory's top: what `GIT_RUNS_LATER` names.
fn git_top(dir: &Path, w: &mut Hashing<'_>) {
    for r in GIT_RUNS_LATER {
        part(dir, r.path, w);
    }
}

/// Directories in a git dir that hold no config or hooks and change with every fetch or commit.
const GIT_BULK: &[&str] = &["objects", "refs", "logs", "lfs", "hooks"];

/// Below `modules/`: each submodule's git dir by its hooks and config, at any depth (a
/// submodule's name may hold slashes, and submodules nest: `modules/a/modules/b`). A directory
/// with a `HEAD` is a git dir; the others are steps of a name. Not the objects.
fn modules(dir: &Path, w: &mut Hashing<'_>, depth: usize) {
    // As deep as any path can be; each level is an entry of the budget anyway.
    if depth > 2048 {
        return;
    }
    let is_git = fs::symlink_metadata(dir.join("HEAD")).is_ok();
    if is_git {
        for name in ["hooks", "config", "config.worktree", "commondir"] {
            part(dir, name, w);
        }
    }
    for (name, path) in listing(dir, w) {
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        let bulk = is_git && GIT_BULK.iter().any(|b| name.as_bytes() == b.as_bytes());
        if !m.is_dir() || bulk {
            continue;
        }
        w.count += 1;
        if w.count > MAX_TREE || !w.entry(&m) {
            return;
        }
        w.name(name.as_bytes());
        modules(&path, w, depth + 1);
        w.name(b"\0end");
    }
}

/// Below `worktrees/`: each linked worktree's config and the pointers git follows.
fn worktrees(dir: &Path, w: &mut Hashing<'_>) {
    for (name, path) in listing(dir, w) {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                w.count += 1;
                if w.count > MAX_TREE || !w.entry(&m) {
                    return;
                }
                w.name(name.as_bytes());
                for part_name in ["config.worktree", "commondir", "gitdir"] {
                    part(&path, part_name, w);
                }
            }
            _ => continue,
        }
    }
}

/// The entries of `dir` in name order, or none (noted in the hashes) when it cannot be read.
fn listing(dir: &Path, w: &mut Hashing<'_>) -> Vec<(std::ffi::OsString, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        w.name(b"\0unreadable");
        return Vec::new();
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| (e.file_name(), e.path())).collect();
    entries.sort();
    entries
}

/// A directory by its entries' names, types and contents, in name order, not following
/// symlinks, up to `MAX_TREE` entries.
fn tree(dir: &Path, w: &mut Hashing<'_>) {
    for (name, path) in listing(dir, w) {
        w.count += 1;
        if w.count > MAX_TREE {
            return;
        }
        w.name(name.as_bytes());
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !w.entry(&m) {
            return;
        }
        match Kind::of(m.file_type()) {
            Kind::Dir => {
                w.content(b"d");
                tree(&path, w);
                w.name(b"\0end");
            }
            k => leaf(&path, &m, k, w),
        }
    }
}

/// A file by its bytes (within `MAX_HASHED` and the budget), a symlink by its target.
fn leaf(path: &Path, m: &fs::Metadata, kind: Kind, w: &mut Hashing<'_>) {
    match kind {
        Kind::Symlink => {
            w.content(b"l");
            if let Ok(t) = fs::read_link(path) {
                w.content(t.as_os_str().as_bytes());
            }
        }
        Kind::File => {
            w.content(b"f");
            w.content(&m.len().to_le_bytes());
            if m.len() > MAX_HASHED {
                w.content(&m.mtime().to_le_bytes());
                w.content(&m.mtime_nsec().to_le_bytes());
            }
            let want = m.len().min(MAX_HASHED);
            if want > w.budget.bytes {
                // Past the budget: this item is compared by its metadata only.
                w.budget.bytes = 0;
                w.content = None;
            }
            if w.content.is_some() {
                let opened = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(path);
                if let Ok(f) = opened {
                    let mut f = f.take(want);
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n) = f.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        w.budget.bytes = w.budget.bytes.saturating_sub(n as u64);
                        w.content(&buf[..n]);
                    }
                }
            }
        }
        _ => w.content(b"o"),
    }
    // The exec bits decide whether git or a shell runs it.
    w.content(&(m.mode() & 0o7777).to_le_bytes());
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
    }

    fn budget() -> Budget {
        Budget {
            bytes: BUDGET_BYTES,
            entries: BUDGET_ENTRIES,
        }
    }

    fn measured(p: &Path, how: How) -> State {
        state(p, &fs::symlink_metadata(p).unwrap(), how, &mut budget())
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
        let before = Snapshot::end(&Snapshot::default(), std::slice::from_ref(&root), &m);
        fs::create_dir_all(root.join("tools")).unwrap();
        fs::write(root.join("tools/CACHEDIR.TAG"), "Signature").unwrap();
        fs::write(root.join("tools/.envrc"), "evil").unwrap();
        let after = Snapshot::end(&before, std::slice::from_ref(&root), &m);
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
        s.add(&root.join(".git"), GIT_WHY, true, How::GitTop);
        s.add(&root.join("x.sh"), "run by .mcp.json", true, How::Whole);
        s.measure();
        fs::write(root.join(".git/hooks/pre-commit"), "evil").unwrap();
        let after = Snapshot::end(
            &s,
            std::slice::from_ref(&root),
            &Matcher::new(true, &[], &[]).unwrap(),
        );
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
        let a = measured(&p, How::Whole);
        // A change past the hashed part still shows, through the size.
        f.set_len((1 << 40) + 1).unwrap();
        assert!(a.differs(&measured(&p, How::Whole)));
    }

    #[test]
    fn past_the_budget_a_change_still_shows_and_no_change_stays_quiet() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("a"), "aaaa").unwrap();
        fs::write(dir.join("b"), "bbbb").unwrap();
        let m = fs::symlink_metadata(&dir).unwrap();
        let tight = |bytes, entries| {
            let mut b = Budget { bytes, entries };
            state(&dir, &m, How::Whole, &mut b)
        };
        let full = tight(BUDGET_BYTES, BUDGET_ENTRIES);
        let no_bytes = tight(0, BUDGET_ENTRIES);
        let nothing = tight(0, 0);
        assert!(full.content.is_some() && no_bytes.content.is_none() && nothing.meta.is_none());
        // Unchanged: quiet whatever each side could afford.
        for (x, y) in [(&full, &no_bytes), (&no_bytes, &nothing), (&full, &nothing)] {
            assert!(!x.differs(y) && !y.differs(x));
        }
        // A rewrite of one file, same length: seen by content and by metadata alone.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.join("b"), "BBBB").unwrap();
        assert!(full.differs(&tight(BUDGET_BYTES, BUDGET_ENTRIES)));
        assert!(no_bytes.differs(&tight(0, BUDGET_ENTRIES)));
    }

    #[test]
    fn a_huge_planted_tree_costs_at_most_the_budget() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        for i in 0..40 {
            let f = fs::File::create(root.join(format!("f{i}"))).unwrap();
            f.set_len(MAX_HASHED).unwrap();
        }
        let m = fs::symlink_metadata(&root).unwrap();
        let mut b = budget();
        let started = std::time::Instant::now();
        let s = state(&root, &m, How::Whole, &mut b);
        // 40 x 16 MiB is past the budget: the bytes stop there.
        assert!(s.content.is_none() && s.meta.is_some());
        assert!(b.bytes < MAX_HASHED, "{}", b.bytes);
        eprintln!("hashed to the budget in {:?}", started.elapsed());
    }

    #[test]
    fn an_unreadable_directory_is_named_and_the_rest_is_still_audited() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        let m = Matcher::new(true, &[], &[]).unwrap();
        let before = Snapshot::end(&Snapshot::default(), std::slice::from_ref(&root), &m);
        fs::write(root.join(".envrc"), "evil").unwrap();
        fs::create_dir_all(root.join("zz/x")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("zz"), fs::Permissions::from_mode(0o000)).unwrap();
        let after = Snapshot::end(&before, std::slice::from_ref(&root), &m);
        fs::set_permissions(root.join("zz"), fs::Permissions::from_mode(0o755)).unwrap();
        let got: Vec<(Change, PathBuf)> = compare(&before, &after)
            .into_iter()
            .map(|f| (f.change, f.path))
            .collect();
        let readable = rustix::process::geteuid().is_root();
        let mut want = vec![(Change::New, root.join(".envrc"))];
        if !readable {
            want.push((Change::Unchecked, root.join("zz")));
        }
        assert_eq!(got, want);
        let text = render(&compare(&before, &after), &root).unwrap();
        assert!(readable || text.contains("  not checked  zz/  (could hide planted files)"));
    }

    #[test]
    fn git_state_dirs_are_audited_by_name_and_ordinary_git_work_is_not() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        let w = |rel: &str, body: &str| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        };
        w(".git/HEAD", "ref: refs/heads/main");
        w(".git/config", "[core]");
        w(".git/modules/old/HEAD", "ref: refs/heads/main");
        w(".git/modules/old/config", "[core]");
        // A checkout whose `.git` is a file: nothing below it to read, nothing unchecked.
        w("old/.git", "gitdir: ../.git/modules/old");
        let before = snapshot(&root, &Snapshot::default());
        // Ordinary work, in the repository and in an existing submodule's git dir.
        w(".git/refs/stash", "abc");
        w(".git/logs/HEAD", "x");
        w(".git/modules/old/objects/ab/cd", "obj");
        w(".git/modules/old/index", "idx");
        w(".git/modules/old/FETCH_HEAD", "abc");
        assert_eq!(compare(&before, &snapshot(&root, &before)), []);
        w(".git/modules/a/b/HEAD", "ref: refs/heads/main");
        w(".git/modules/a/b/hooks/post-checkout", "evil");
        w(".git/rebase-merge/git-rebase-todo", "exec evil");
        w(".git/sequencer/todo", "exec evil");
        w(".git/worktrees/x/commondir", "../..");
        let got: Vec<(Change, String)> = compare(&before, &snapshot(&root, &before))
            .into_iter()
            .map(|f| (f.change, shown(&f, &root)))
            .collect();
        assert_eq!(
            got,
            [
                (Change::Changed, ".git/modules/".to_owned()),
                (Change::New, ".git/rebase-merge/".to_owned()),
                (Change::New, ".git/rebase-merge/git-rebase-todo".to_owned()),
                (Change::New, ".git/sequencer/todo".to_owned()),
                (Change::New, ".git/worktrees/".to_owned()),
            ]
        );
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
