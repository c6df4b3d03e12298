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
//! change. `git config` starts no hook, fsmonitor or filter. Files that `includeIf "onbranch:"`
//! names for a branch not checked out now are read too (`git config --file F --includes`): the
//! agent can switch branches. What this cannot see: variables the user sets in a later shell
//! (`GIT_CONFIG_GLOBAL`...). Cost: one spawn, about 1.5 ms, per repository; the top one starts
//! before the scan and runs beside it, the others run in parallel.
//!
//! The config's own file is also passed as `-c include.path=...`: git ignores the local config
//! of a directory that is not (yet) a valid repository (no `objects/`), and the agent could
//! complete it later.
//!
//! When git is not installed, no configuration is read: git's own files (hooks, config) are
//! still protected, and a warning says that the configuration was not checked.
//!
//! Control files git obeys once they exist, with no stub left on the host: `.git/hooks` is
//! created when missing (git init makes it; an empty directory, not a file), then read-only.
//! `config.worktree` with `extensions.worktreeConfig` on must exist, or the run refuses with
//! `touch` as the fix (the user creates it, not agentbox); other worktrees' git dirs are then
//! read-only whole. `commondir` in a repository's own git dir is never written by git: the next
//! run refuses while one is there. `config.worktree` without the extension, `commondir` and
//! `info/attributes` created during a run are listed by `planted_control_files` for the exit
//! audit. `.git/info` itself stays writable (`git sparse-checkout` writes there, and what can be
//! planted in it only picks among drivers that the protected config defines).
//!
//! The rule for everything here: a path or file inside a writable root, or anywhere the sandbox
//! could write in an earlier run (agent homes, runtime directories), is attacker-controlled.
//! Nothing read from there may widen the sandbox, redirect a host-side write, or make the next
//! run's scan see less; what cannot be read or checked is refused (exit 125, with the fix).

mod read;
mod uses;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::hostenv::Env;
use crate::rules::GIT_RUNS_LATER;
use crate::secrets::{Found, Kind};
pub use read::{Entry, Reads, parse_list};
use uses::{apply, existing, expand};
#[cfg(test)]
use uses::{path_like, words};

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
    /// The user's own variables that change which configuration git reads (`GIT_CONFIG_GLOBAL`,
    /// `GIT_CONFIG_SYSTEM`, `GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_COUNT` with its `KEY_n`/`VALUE_n`,
    /// `GIT_CONFIG_PARAMETERS`): the git the user runs next, from this shell, reads with them.
    pub config_env: Vec<(OsString, OsString)>,
    /// The writable roots: a path in them that git would follow through a symlink is refused.
    pub writable: Vec<PathBuf>,
    pub timeout: Duration,
}

/// A `git config` call that takes longer than this is hung (an include naming a FIFO): refuse.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(3);

/// The PATH the configuration is read with: `git config` runs nothing, so nothing else needs it.
const FIXED_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl GitHost {
    pub fn find(env: &Env, home: &Path, writable: &[PathBuf], sandboxed: &[PathBuf]) -> GitHost {
        // Not a git the sandbox could have written: none in the writable roots nor in
        // `sandboxed` (agentbox's own areas, agent homes among them).
        let git = env
            .path_dirs()
            .into_iter()
            .filter(|d| d.components().all(|c| c != Component::ParentDir))
            .filter_map(|d| fs::canonicalize(d.join("git")).ok())
            .find(|g| {
                !writable.iter().chain(sandboxed).any(|w| g.starts_with(w))
                    && fs::metadata(g).is_ok_and(|m| m.is_file())
            });
        GitHost {
            git,
            home: home.to_owned(),
            xdg_config_home: env.var("XDG_CONFIG_HOME").map(OsStr::to_owned),
            config_env: env
                .vars()
                .filter(|(k, _)| is_config_var(k))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            writable: writable.to_owned(),
            timeout: GIT_TIMEOUT,
        }
    }

    fn in_writable(&self, p: &Path) -> bool {
        self.writable.iter().any(|w| p.starts_with(w))
    }
}

/// Whether the variable `name` changes which configuration git reads.
fn is_config_var(name: &OsStr) -> bool {
    let Some(n) = name.to_str() else {
        return false;
    };
    matches!(
        n,
        "GIT_CONFIG_GLOBAL"
            | "GIT_CONFIG_SYSTEM"
            | "GIT_CONFIG_NOSYSTEM"
            | "GIT_CONFIG_COUNT"
            | "GIT_CONFIG_PARAMETERS"
    ) || n.starts_with("GIT_CONFIG_KEY_")
        || n.starts_with("GIT_CONFIG_VALUE_")
}

pub fn kind_at(path: &Path) -> Option<Kind> {
    Some(Kind::of(fs::symlink_metadata(path).ok()?.file_type()))
}

/// The first `limit` bytes of a regular file; `None` for anything else. Opened non-blocking:
/// a FIFO planted where git keeps a small file (`commondir`, a hook) must not hang the launch.
pub(crate) fn read_regular(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Reads a pointer file (`gitdir: PATH` in a `.git` file, or the path in `commondir`):
/// the path, relative to `base`, canonical.
fn read_pointer(file: &Path, prefix: &[u8], base: &Path) -> Option<PathBuf> {
    let content = read_regular(file, 64 * 1024)?;
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
    let all: Vec<&Job> = jobs.iter().map(|(_, j)| j).collect();
    reads.batch(&all, host);
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
pub(super) struct Job {
    common: PathBuf,
    config_dir: PathBuf,
    tops: Vec<PathBuf>,
    siblings: Vec<PathBuf>,
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

pub(super) fn absent<const N: usize>(paths: [PathBuf; N]) -> impl Iterator<Item = PathBuf> {
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
    let text = read_regular(&gitdir.join("config"), 1 << 20)?;
    let text = String::from_utf8_lossy(&text);
    let value = text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("worktree")
            .then(|| v.trim().trim_matches('"').to_owned())
    })?;
    fs::canonicalize(gitdir.join(value)).ok()
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
