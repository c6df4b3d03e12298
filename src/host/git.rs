//! Facts about the git repositories in a writable root: which files git will run or obey on the
//! host after the agent is gone, found the way the host's git will find them. Part of host
//! probing: reads, never writes, and runs nothing of the project's.
//!
//! How the configuration is read: by asking the host's own git, once per repository,
//! `git config --list --show-origin -z`, with `GIT_DIR` set to the repository (so discovery and
//! `safe.directory` play no part), `HOME` and `XDG_CONFIG_HOME` from the user, a fixed `PATH`,
//! no other variable (no `GIT_*` of the caller), stdin null and a timeout. That is the same
//! code the user's later `git commit` runs: system, global, local and worktree scopes, line
//! continuations, quoting, `include.path` and `includeIf` (`gitdir:`, `onbranch:`,
//! `hasconfig:`) are all evaluated by git itself, and `--show-origin` names every file that
//! contributed. A parser of our own (or gix-config) would have to track git's rules as they
//! change. `git config` starts no hook, fsmonitor or filter. What this cannot see: variables
//! the user sets in a later shell (`GIT_CONFIG_GLOBAL`...), and include files whose
//! `onbranch:` condition does not hold now (their paths are protected, not their content).
//!
//! The config's own file is also passed as `-c include.path=...`: git ignores the local config
//! of a directory that is not (yet) a valid repository (no `objects/`), and the agent could
//! complete it later.
//!
//! When git is not installed, no configuration is read: git's own files (hooks, config) are
//! still protected, and a warning says that the configuration was not checked.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::git_keys::{self, Use};
use crate::rules::GIT_RUNS_LATER;
use crate::secrets::{Found, Kind};

/// Why a repository cannot be protected, and what the user can do: agentbox refuses to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub what: String,
    pub hint: String,
}

/// A git directory found in a writable root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRepo {
    /// The `.git` entry itself.
    pub dot_git: PathBuf,
    pub dot_git_kind: Kind,
    /// The git directory the host's git uses for this checkout (canonical), whatever path led
    /// there: a `.git` directory, a symlink, a `gitdir:` file.
    pub git_dir: Option<PathBuf>,
    /// The common git dir of a linked worktree whose `.git` file checks out (its gitdir is
    /// `<common>/worktrees/<name>` and names this `.git` file back): git needs it writable.
    pub linked_common: Option<PathBuf>,
    /// Files git runs or obeys, with their kind (`None`: missing) and why.
    pub entries: Vec<(PathBuf, Option<Kind>, &'static str)>,
    /// Paths git's config points at (hooks directory, included config, commands, what hooks
    /// run): they must not be writable, and must exist where they would be.
    pub config_paths: Vec<(PathBuf, Option<Kind>, String)>,
    /// Signs of tampering, or states agentbox cannot protect: it refuses to start.
    pub anomalies: Vec<Refusal>,
    pub warnings: Vec<String>,
    /// Control files git would obey that did not exist at start and that git itself does not
    /// write (see `planted_control_files`).
    pub control_absent: Vec<PathBuf>,
}

/// How agentbox runs the host's git to read configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHost {
    /// git as the user's PATH finds it (absolute entries, outside the writable roots); `None`
    /// when git is not installed.
    pub git: Option<PathBuf>,
    pub home: PathBuf,
    pub xdg_config_home: Option<OsString>,
    /// The writable roots: a path in them that git would follow through a symlink is refused.
    pub writable: Vec<PathBuf>,
    pub timeout: Duration,
}

/// A `git config` call that takes longer than this is hung (an include naming a FIFO): refuse.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(3);

/// The PATH the configuration is read with: `git config` runs nothing, so nothing else needs it.
const FIXED_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl GitHost {
    pub fn find(home: &Path, path_var: Option<&OsStr>, writable: &[PathBuf]) -> GitHost {
        let git = path_var
            .map(|v| std::env::split_paths(v).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.is_absolute() && d.components().all(|c| c != Component::ParentDir))
            .filter_map(|d| fs::canonicalize(d.join("git")).ok())
            .find(|g| {
                !writable.iter().any(|w| g.starts_with(w))
                    && fs::metadata(g).is_ok_and(|m| m.is_file())
            });
        GitHost {
            git,
            home: home.to_owned(),
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME"),
            writable: writable.to_owned(),
            timeout: GIT_TIMEOUT,
        }
    }

    fn in_writable(&self, p: &Path) -> bool {
        self.writable.iter().any(|w| p.starts_with(w))
    }
}

pub fn kind_at(path: &Path) -> Option<Kind> {
    let ft = fs::symlink_metadata(path).ok()?.file_type();
    Some(if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    })
}

/// Reads a pointer file (`gitdir: PATH` in a `.git` file, or the path in `commondir`):
/// the path, relative to `base`, canonical.
fn read_pointer(file: &Path, prefix: &[u8], base: &Path) -> Option<PathBuf> {
    let content = fs::read(file).ok()?;
    let rest = content.strip_prefix(prefix)?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let target = Path::new(OsStr::from_bytes(line.trim_ascii()));
    fs::canonicalize(base.join(target)).ok()
}

/// Removes `.` and `..` lexically (for paths that may not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Probes every `.git` entry of one writable root. The `git config` calls run in parallel
/// (some already started by `start_early`, while the scan ran); a git directory reached twice
/// (a submodule's `.git` file and its superproject's `modules/`) has its configuration read
/// once.
pub fn probe_all(found: &[Found], host: &GitHost, mut reads: Reads) -> Vec<GitRepo> {
    /// Calls under way at once: each holds a process, two pipes and two threads.
    const BATCH: usize = 32;
    let mut repos = Vec::new();
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let (repo, js) = structure(f);
        repos.push(repo);
        jobs.extend(js.into_iter().map(|j| (i, j)));
    }
    for chunk in jobs.chunks(BATCH) {
        for (_, job) in chunk {
            reads.start(job, host);
        }
        for (i, job) in chunk {
            if let Some(read) = reads.take(&job.config_dir) {
                apply(read.finish(host), job, host, &mut repos[*i]);
            }
        }
    }
    repos
}

/// `git config` calls started before the scan, for the `.git` at the top of a writable root
/// (nearly always there, and the scan takes about as long as git does).
pub fn start_early(root: &Path, host: &GitHost) -> Reads {
    let mut reads = Reads::default();
    let dot_git = root.join(".git");
    if let Some(kind) = kind_at(&dot_git) {
        let found = Found {
            path: dot_git,
            kind,
            why: String::new(),
        };
        for job in structure(&found).1 {
            reads.start(&job, host);
        }
    }
    reads
}

/// A repository whose configuration is to be read: its common dir, the git dir to read it
/// through (a linked worktree's own, for its config.worktree), the tops of its worktrees and
/// its sibling worktrees' git dirs.
struct Job {
    common: PathBuf,
    config_dir: PathBuf,
    tops: Vec<PathBuf>,
    siblings: Vec<PathBuf>,
}

/// The `git config` calls of a probe, by the git dir they read through.
#[derive(Default)]
pub struct Reads {
    calls: std::collections::BTreeMap<PathBuf, Option<Call>>,
}

enum Call {
    Running(Running),
    Failed(Refusal),
    NoGit,
}

impl Reads {
    fn start(&mut self, job: &Job, host: &GitHost) {
        if self.calls.contains_key(&job.config_dir) {
            return;
        }
        let read = match &host.git {
            None => Call::NoGit,
            Some(git) => {
                let mut extra = vec![job.common.join("config")];
                extra.extend(existing(job.config_dir.join("config.worktree")));
                match spawn_config(git, host, &job.config_dir, &extra) {
                    Ok(r) => Call::Running(r),
                    Err(e) => Call::Failed(e),
                }
            }
        };
        self.calls.insert(job.config_dir.clone(), Some(read));
    }

    /// The call for this git dir, to the first who asks.
    fn take(&mut self, config_dir: &Path) -> Option<Call> {
        self.calls.get_mut(config_dir).and_then(Option::take)
    }
}

impl Call {
    fn finish(self, host: &GitHost) -> Result<Option<Vec<Entry>>, Refusal> {
        match self {
            Call::Running(r) => r.finish(host).map(Some),
            Call::Failed(e) => Err(e),
            Call::NoGit => Ok(None),
        }
    }
}

/// The `.git` entry's repository: its entries, and the configurations to read.
fn structure(dot_git: &Found) -> (GitRepo, Vec<Job>) {
    let mut jobs = Vec::new();
    let mut repo = GitRepo {
        dot_git: dot_git.path.clone(),
        dot_git_kind: dot_git.kind,
        git_dir: None,
        linked_common: None,
        entries: Vec::new(),
        config_paths: Vec::new(),
        anomalies: Vec::new(),
        warnings: Vec::new(),
        control_absent: Vec::new(),
    };
    let top = dot_git.path.parent().unwrap_or(Path::new("/")).to_owned();
    let gitdir = match dot_git.kind {
        Kind::Dir => dot_git.path.clone(),
        Kind::File => {
            // The file says where git's directory is: rewritten, it points git (on the host)
            // at a directory of the agent's making.
            repo.entries.push((
                dot_git.path.clone(),
                Some(Kind::File),
                "says where git's directory is",
            ));
            match read_pointer(&dot_git.path, b"gitdir:", &top) {
                Some(g) => g,
                None => return (repo, jobs),
            }
        }
        Kind::Symlink => match fs::canonicalize(&dot_git.path) {
            Ok(g) if g.is_dir() => {
                repo.warnings.push(format!(
                    "{} is a symlink to {}: git's files there are read-only, but the link \
                     itself cannot be, and the agent could point it elsewhere; a file \
                     `gitdir: {}` in its place can be protected",
                    dot_git.path.display(),
                    g.display(),
                    g.display()
                ));
                g
            }
            _ => return (repo, jobs),
        },
        Kind::Other => return (repo, jobs),
    };
    repo.git_dir = Some(gitdir.clone());
    // A repository's own git dir (not a linked worktree's): git never writes `commondir` in
    // it, and one planted there would redirect config and hooks.
    let own = dot_git.kind != Kind::File || !gitdir.join("commondir").exists();
    let common = read_pointer(&gitdir.join("commondir"), b"", &gitdir);
    if dot_git.kind != Kind::File && kind_at(&gitdir.join("commondir")).is_some() {
        repo.anomalies.push(Refusal {
            what: format!(
                "{} exists: git never writes it in a repository's own .git, and it redirects \
                 git's config and hooks elsewhere (planted by an earlier run?)",
                gitdir.join("commondir").display()
            ),
            hint: "look at it with the agent stopped, and remove it".to_owned(),
        });
    }
    let common = common.unwrap_or_else(|| gitdir.clone());
    if gitdir != common {
        let named_back = read_pointer(&gitdir.join("gitdir"), b"", &gitdir)
            .is_some_and(|p| fs::canonicalize(&dot_git.path).is_ok_and(|me| me == p));
        if gitdir.parent() == Some(&common.join("worktrees")) && named_back {
            repo.linked_common = Some(common.clone());
        }
    }
    if own {
        repo.control_absent.extend(absent([
            gitdir.join("commondir"),
            gitdir.join("info/attributes"),
        ]));
    }
    // The worktrees' own pointer and config files, for this checkout and its siblings; the
    // siblings' tops, where a relative hooks path or command also resolves.
    let mut tops = vec![top.clone()];
    let mut siblings = Vec::new();
    if let Ok(rd) = fs::read_dir(common.join("worktrees")) {
        for w in rd.flatten().map(|e| e.path()) {
            if let Some(t) = read_pointer(&w.join("gitdir"), b"", &w)
                .as_deref()
                .and_then(Path::parent)
            {
                tops.push(t.to_owned());
            }
            if w != gitdir {
                siblings.push(w);
            }
        }
    }
    if common != gitdir
        && common.file_name() == Some(OsStr::new(".git"))
        && let Some(t) = common.parent()
    {
        tops.push(t.to_owned());
    }
    tops.sort();
    tops.dedup();
    for w in siblings.iter().chain(std::iter::once(&gitdir)) {
        if *w == common {
            continue;
        }
        for (name, why) in [
            ("commondir", "says where a worktree's config and hooks are"),
            ("gitdir", "says where a worktree is"),
            ("config.worktree", "per-worktree config: commands git runs"),
        ] {
            let p = w.join(name);
            if let Some(k) = kind_at(&p) {
                repo.entries.push((p, Some(k), why));
            }
        }
    }
    // The common dir and every submodule's git dir (modules/, nested as deep as they are),
    // each with the configuration git will read for it.
    let mut dirs = vec![(common.clone(), gitdir.clone(), tops)];
    let mut seen = 0;
    while let Some((dir, config_dir, tops)) = dirs.pop() {
        seen += 1;
        if seen > 1000 {
            break;
        }
        for r in GIT_RUNS_LATER {
            let p = dir.join(r.path);
            let kind = kind_at(&p);
            if kind == Some(Kind::Symlink) && r.path == "hooks" {
                repo.anomalies.push(Refusal {
                    what: format!(
                        "{} is a symlink: git follows it and the agent could replace it",
                        p.display()
                    ),
                    hint: "make it a directory (or point core.hooksPath at the hooks)".to_owned(),
                });
            }
            repo.entries.push((p, kind, r.why));
        }
        for m in modules(&dir) {
            let sub_top = worktree_of(&m);
            dirs.push((m.clone(), m, sub_top.into_iter().collect()));
        }
        jobs.push(Job {
            common: dir,
            config_dir,
            tops,
            // Only the checkout's own repository has worktrees (submodules' are not followed).
            siblings: std::mem::take(&mut siblings),
        });
    }
    (repo, jobs)
}

impl GitRepo {
    /// Records a path git's configuration makes git read or run, as it is now.
    fn path(&mut self, p: PathBuf, why: &str) {
        if !self.config_paths.iter().any(|c| c.0 == p) {
            let kind = kind_at(&p);
            self.config_paths.push((p, kind, why.to_owned()));
        }
    }
}

fn absent<const N: usize>(paths: [PathBuf; N]) -> impl Iterator<Item = PathBuf> {
    paths.into_iter().filter(|p| kind_at(p).is_none())
}

/// The git dirs of the submodules in `dir/modules` (names may contain `/`: modules/a/b).
fn modules(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir.join("modules")) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if p.join("HEAD").is_file() {
            out.push(p);
        } else if let Ok(sub) = fs::read_dir(&p) {
            out.extend(
                sub.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("HEAD").is_file()),
            );
        }
    }
    out
}

/// A submodule git dir's work tree: the `core.worktree` line of its config, resolved against
/// it (git writes it there on `submodule absorbgitdirs` and `clone`).
fn worktree_of(gitdir: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(gitdir.join("config")).ok()?;
    let value = text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("worktree")
            .then(|| v.trim().trim_matches('"').to_owned())
    })?;
    fs::canonicalize(gitdir.join(value)).ok()
}

/// One `name=value` of `git config --list`, with the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub origin: Option<PathBuf>,
    pub key: String,
    pub value: Option<OsString>,
}

/// Everything git's configuration (`read`: the entries, or `None` without git) makes git run or
/// read for the job's repository, into `repo`.
fn apply(read: Result<Option<Vec<Entry>>, Refusal>, job: &Job, host: &GitHost, repo: &mut GitRepo) {
    let Job {
        common,
        config_dir,
        tops,
        siblings,
    } = job;
    let entries = match read {
        Ok(Some(e)) => e,
        Ok(None) => {
            repo.warnings.push(format!(
                "git is not installed here, so the configuration of {} was not checked (its \
                 hooks and config are read-only); install git before agentbox if you will run \
                 git later",
                common.display()
            ));
            return;
        }
        Err(r) => {
            repo.anomalies.push(r);
            return;
        }
    };
    let on = |k: &str| {
        entries
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(k))
            .is_some_and(|e| bool_value(e.value.as_deref()))
    };
    let worktree_config = on("extensions.worktreeconfig");
    let own_wt = config_dir.join("config.worktree");
    if worktree_config {
        if kind_at(&own_wt).is_none() {
            repo.anomalies.push(Refusal {
                what: format!(
                    "extensions.worktreeConfig is on but {} does not exist: the agent could \
                     create it with commands git on the host would run",
                    own_wt.display()
                ),
                hint: format!("create it empty first: touch {}", own_wt.display()),
            });
        }
        // Another worktree's missing config.worktree would be obeyed when the user works
        // there: its whole git dir is read-only (the agent has no business in it).
        for s in siblings {
            if kind_at(&s.join("config.worktree")).is_none() {
                repo.entries.push((
                    s.clone(),
                    Some(Kind::Dir),
                    "another worktree's git dir (worktreeConfig: a config.worktree planted \
                     there would be obeyed)",
                ));
            }
        }
    } else {
        repo.control_absent.extend(absent([own_wt]));
    }
    let entries = match with_branch_includes(entries, config_dir, host) {
        Ok(e) => e,
        Err(r) => {
            repo.anomalies.push(r);
            return;
        }
    };
    let mut hooks_set = false;
    for e in &entries {
        let why = match &e.origin {
            Some(o) => format!("{} in {}", e.key, o.display()),
            None => e.key.clone(),
        };
        // Every file that gave configuration is read again by the host's git (where it
        // really is: a global config can be a link into a dotfiles project).
        if let Some(o) = &e.origin {
            let real = fs::canonicalize(o).unwrap_or_else(|_| o.clone());
            repo.path(real, "git reads its config from here");
        }
        let Some(k) = git_keys::lookup(&e.key) else {
            continue;
        };
        let Some(value) = &e.value else { continue };
        let rel_base = e
            .origin
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        match k.used {
            Use::Hooks => {
                hooks_set = true;
                for dir in expand(value.as_bytes(), tops, &host.home) {
                    repo.path(dir.clone(), &why);
                    hook_scripts(&dir, tops, host, &why, repo);
                }
            }
            Use::Include => {
                let bases = [rel_base.to_owned()];
                for file in expand(value.as_bytes(), &bases, &host.home) {
                    check_path(&file, &why, host, repo);
                }
            }
            Use::Command => {
                for (word, forced) in words(value.as_bytes()) {
                    command_word(
                        word,
                        forced,
                        tops,
                        host,
                        &format!("{why} ({})", k.why),
                        repo,
                    );
                }
            }
        }
    }
    if !hooks_set {
        let why = format!("a hook in {}", common.join("hooks").display());
        hook_scripts(&common.join("hooks"), tops, host, &why, repo);
    }
}

/// `entries` and the entries of the files that `includeIf "onbranch:..."` names but git did
/// not read (the branch is another one now): the agent can switch branches, and git on the host
/// would then read them. Read with `git config --file F --includes`, nested up to 3 deep.
fn with_branch_includes(
    mut entries: Vec<Entry>,
    config_dir: &Path,
    host: &GitHost,
) -> Result<Vec<Entry>, Refusal> {
    let Some(git) = &host.git else {
        return Ok(entries);
    };
    let mut done: Vec<PathBuf> = Vec::new();
    for _depth in 0..3 {
        let read: Vec<&Path> = entries.iter().filter_map(|e| e.origin.as_deref()).collect();
        let unread: Vec<PathBuf> = entries
            .iter()
            .filter(|e| {
                let k = e.key.to_ascii_lowercase();
                k.starts_with("includeif.onbranch:") && k.ends_with(".path")
            })
            .filter_map(|e| {
                let base = e.origin.as_deref()?.parent()?;
                let v = e.value.as_deref()?;
                expand(v.as_bytes(), &[base.to_owned()], &host.home).pop()
            })
            .filter(|f| f.is_file() && !read.contains(&f.as_path()) && !done.contains(f))
            .collect();
        if unread.is_empty() {
            break;
        }
        for f in unread {
            let args = [
                "config",
                "--list",
                "--show-origin",
                "-z",
                "--includes",
                "--file",
            ]
            .map(OsString::from)
            .into_iter()
            .chain([f.clone().into_os_string()])
            .collect();
            entries.extend(spawn_git(git, host, config_dir, args)?.finish(host)?);
            done.push(f);
        }
    }
    Ok(entries)
}

fn existing(p: PathBuf) -> Option<PathBuf> {
    kind_at(&p).is_some().then_some(p)
}

/// git's boolean: a key with no `=` is true.
fn bool_value(v: Option<&OsStr>) -> bool {
    match v {
        None => true,
        Some(v) => {
            let v = v.to_string_lossy().to_ascii_lowercase();
            matches!(v.trim(), "true" | "yes" | "on" | "1")
        }
    }
}

/// A path value (hooks dir, include) resolved as git does: `~/` from the home, absolute as it
/// is, relative against each base.
fn expand(value: &[u8], bases: &[PathBuf], home: &Path) -> Vec<PathBuf> {
    let v = Path::new(OsStr::from_bytes(value));
    if let Ok(rest) = v.strip_prefix("~") {
        return vec![normalize(&home.join(rest))];
    }
    if v.is_absolute() {
        return vec![normalize(v)];
    }
    bases.iter().map(|b| normalize(&b.join(v))).collect()
}

/// A path git will read or run: protected where it is, and where a symlink would take it.
/// Missing, it is still recorded: `protect` refuses it inside a writable root.
fn check_path(p: &Path, why: &str, host: &GitHost, repo: &mut GitRepo) {
    match fs::canonicalize(p) {
        Ok(real) if real != *p => {
            if host.in_writable(p) {
                repo.anomalies.push(Refusal {
                    what: format!(
                        "{why} names {}, which leads through a symlink the agent could \
                         re-point",
                        p.display()
                    ),
                    hint: format!(
                        "name the real path ({}) in the config instead",
                        real.display()
                    ),
                });
            }
            repo.path(real, why);
        }
        _ => repo.path(p.to_owned(), why),
    }
}

/// The words of a command value that may be paths, each with whether it must be one (the value
/// of an option `-c key=VALUE` whose key runs something). Quotes and shell punctuation split
/// words, as does `=` (`--config=./x`).
fn words(value: &[u8]) -> Vec<(&[u8], bool)> {
    let mut out = Vec::new();
    let seps = b" \t\n;|&()<>'\"`!$,";
    for word in value.split(|b| seps.contains(b)).filter(|w| !w.is_empty()) {
        let mut parts = word.split(|&b| b == b'=');
        let first = parts.next().unwrap_or_default();
        let forced = std::str::from_utf8(first)
            .ok()
            .and_then(git_keys::lookup)
            .is_some();
        if !first.is_empty() {
            out.push((first, false));
        }
        out.extend(parts.filter(|p| !p.is_empty()).map(|p| (p, forced)));
    }
    out
}

/// Does a word look like a path (as opposed to an option, a format string, a URL)?
fn path_like(w: &[u8]) -> bool {
    w.contains(&b'/')
        && !w.starts_with(b"-")
        && w.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._/~+@-".contains(&b) || b >= 0x80)
}

/// One word of a command: an existing file is protected; a missing one that looks like a path
/// is recorded (and refused inside a writable root), since the agent could create it.
fn command_word(
    word: &[u8],
    forced: bool,
    tops: &[PathBuf],
    host: &GitHost,
    why: &str,
    repo: &mut GitRepo,
) {
    for p in expand(word, tops, &host.home) {
        match kind_at(&p) {
            Some(Kind::Dir) => {}
            Some(_) => check_path(&p, why, host, repo),
            None if forced || path_like(word) => {
                // A prefix of the path may be a symlink: canonicalize what exists.
                check_path(&p, why, host, repo);
            }
            None => {}
        }
    }
}

/// The hooks directory's scripts and what they run, as far as it can be known: the targets of
/// symlinked hooks, the files their words name, and for husky's layout (`core.hooksPath =
/// .husky/_`, whose stubs run `.husky/<hook>`) the directory above.
fn hook_scripts(dir: &Path, tops: &[PathBuf], host: &GitHost, why: &str, repo: &mut GitRepo) {
    const MAX_FILES: usize = 200;
    const MAX_BYTES: u64 = 256 * 1024;
    let husky = dir.file_name() == Some(OsStr::new("_"))
        || dir.join("h").is_file()
        || dir.join("husky.sh").is_file();
    let mut dirs = vec![dir.to_owned()];
    if husky && let Some(parent) = dir.parent() {
        repo.path(
            parent.to_owned(),
            &format!("{why}: husky's stubs run the scripts here"),
        );
        dirs.push(parent.to_owned());
    }
    let mut scripts: Vec<PathBuf> = Vec::new();
    for d in &dirs {
        let Ok(rd) = fs::read_dir(d) else { continue };
        for e in rd.flatten().take(MAX_FILES) {
            let p = e.path();
            if p.extension() == Some(OsStr::new("sample")) {
                continue;
            }
            match kind_at(&p) {
                Some(Kind::Symlink) => {
                    if let Ok(t) = fs::canonicalize(&p) {
                        repo.path(t.clone(), &format!("{why}: target of hook {}", p.display()));
                        if t.is_file() {
                            scripts.push(t);
                        }
                    }
                }
                Some(Kind::File) => scripts.push(p),
                _ => {}
            }
        }
    }
    let mut bases = tops.to_vec();
    bases.push(dir.to_owned());
    for s in scripts.iter().take(MAX_FILES) {
        let Ok(f) = fs::File::open(s) else { continue };
        let mut text = Vec::new();
        if f.take(MAX_BYTES).read_to_end(&mut text).is_err() {
            continue;
        }
        for (w, _) in words(&text) {
            for p in expand(w, &bases, &host.home) {
                if p != *s && kind_at(&p) == Some(Kind::File) && host.in_writable(&p) {
                    let why = format!("{why}: run by hook {}", s.display());
                    repo.path(p, &why);
                }
            }
        }
    }
}

/// Starts `git config --list --show-origin -z` for the repository at `git_dir`, as described
/// in the module doc, with `extra` config files included as well.
fn spawn_config(
    git: &Path,
    host: &GitHost,
    git_dir: &Path,
    extra: &[PathBuf],
) -> Result<Running, Refusal> {
    let mut args = Vec::new();
    for f in extra {
        let mut arg = OsString::from("include.path=");
        arg.push(f);
        args.extend([OsString::from("-c"), arg]);
    }
    args.extend(["config", "--list", "--show-origin", "-z"].map(OsString::from));
    spawn_git(git, host, git_dir, args)
}

/// Starts git with `args` the way the module doc says: clean environment, `GIT_DIR` explicit,
/// stdin null.
fn spawn_git(
    git: &Path,
    host: &GitHost,
    git_dir: &Path,
    args: Vec<OsString>,
) -> Result<Running, Refusal> {
    let mut cmd = Command::new(git);
    cmd.args(args)
        .env_clear()
        .env("HOME", &host.home)
        .env("PATH", FIXED_PATH)
        .env("GIT_DIR", git_dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(x) = &host.xdg_config_home {
        cmd.env("XDG_CONFIG_HOME", x);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| Refusal {
        what: format!("running {}: {e}", git.display()),
        hint: "check that git runs: git --version".to_owned(),
    })?;
    let stderr = child.stderr.take();
    let stderr = std::thread::spawn(move || drain(stderr));
    let (tx, stdout) = std::sync::mpsc::channel();
    let out = child.stdout.take();
    std::thread::spawn(move || {
        let _ = tx.send(drain(out));
    });
    Ok(Running {
        child,
        stdout,
        stderr,
        started,
        git_dir: git_dir.to_owned(),
    })
}

fn drain(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

/// A `git config` call under way: its output is read by two threads, so that a slow call
/// costs no more than its own time while the others run.
struct Running {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    started: Instant,
    git_dir: PathBuf,
}

impl Running {
    /// Its entries, or a refusal: git failed, or did not finish within the timeout from its
    /// start (it is killed then).
    fn finish(mut self, host: &GitHost) -> Result<Vec<Entry>, Refusal> {
        let git_dir = self.git_dir.display();
        let hint = format!("see what git says: GIT_DIR={git_dir} git config --list --show-origin");
        let left = host.timeout.saturating_sub(self.started.elapsed());
        let Ok(stdout) = self.stdout.recv_timeout(left) else {
            // Still ours and not reaped: the kill reaches this child and no other process.
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Err(Refusal {
                what: format!(
                    "reading the git configuration of {git_dir} took over {} s: an include may \
                     name a FIFO or a file that never ends (git on the host would hang the \
                     same way)",
                    host.timeout.as_secs_f32()
                ),
                hint: format!("look at the include.path and includeIf entries: {hint}"),
            });
        };
        let status = self.child.wait();
        let stderr = self.stderr.join().unwrap_or_default();
        match status {
            Ok(st) if st.success() => Ok(parse_list(&stdout)),
            Ok(_) => Err(Refusal {
                what: format!(
                    "git cannot read the configuration of {git_dir}: {}",
                    String::from_utf8_lossy(&stderr).trim()
                ),
                hint,
            }),
            Err(e) => Err(Refusal {
                what: format!("waiting for git: {e}"),
                hint,
            }),
        }
    }
}

/// Parses `git config --list --show-origin -z`: records of `origin NUL key [LF value] NUL`.
pub fn parse_list(out: &[u8]) -> Vec<Entry> {
    let mut fields = out.split(|&b| b == 0);
    let mut entries = Vec::new();
    while let (Some(origin), Some(kv)) = (fields.next(), fields.next()) {
        if origin.is_empty() && kv.is_empty() {
            break;
        }
        let origin = origin
            .strip_prefix(b"file:")
            .map(|p| PathBuf::from(OsString::from_vec(p.to_vec())));
        let (key, value) = match kv.iter().position(|&b| b == b'\n') {
            Some(i) => (&kv[..i], Some(OsString::from_vec(kv[i + 1..].to_vec()))),
            None => (kv, None),
        };
        entries.push(Entry {
            origin,
            key: String::from_utf8_lossy(key).into_owned(),
            value,
        });
    }
    entries
}

/// Control files git obeys that were absent when the run started and that git itself does not
/// write there: present now, the agent planted them. For the exit audit (report them; the next
/// run refuses the `commondir` one).
pub fn planted_control_files(repo: &GitRepo) -> Vec<PathBuf> {
    repo.control_absent
        .iter()
        .filter(|p| kind_at(p).is_some())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
