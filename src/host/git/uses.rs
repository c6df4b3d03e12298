//! What a repository's configuration makes git run or read, as paths: hooks directories and
//! the scripts in them, included files, every path word of a command key (`git_keys.rs`).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::read::{Entry, with_branch_includes};
use super::{GitHost, GitRepo, Job, Refusal, absent, kind_at, normalize};
use crate::host::git_keys::{self, Use};
use crate::secrets::Kind;

/// Everything git's configuration (`read`: the entries, or `None` without git) makes git run or
/// read for the job's repository, into `repo`.
pub(super) fn apply(
    read: Result<Option<Vec<Entry>>, Refusal>,
    job: &Job,
    host: &GitHost,
    repo: &mut GitRepo,
) {
    let Job {
        common,
        config_dir,
        tops,
        siblings,
    } = job;
    let entries = match read {
        Ok(Some(e)) => e,
        Ok(None) => {
            repo.warnings.push(
                "git is not installed here, so git's configuration was not checked (hooks and \
                 config files are read-only all the same); install git before agentbox if you \
                 will run git on this project later"
                    .to_owned(),
            );
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
                hint: format!(
                    "create it empty first: touch {}",
                    crate::text::shell_quote(own_wt.as_os_str())
                ),
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
        // An empty value unsets (git's own reading): it names no path.
        let Some(value) = e.value.as_ref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let rel_base = e
            .origin
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        match k.used {
            Use::Hooks => {
                hooks_set = true;
                for dir in expand(value.as_bytes(), tops, &host.home) {
                    // A hooks path through a symlink the agent can re-point is refused.
                    check_path(&dir, &why, host, repo);
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

pub(super) fn existing(p: PathBuf) -> Option<PathBuf> {
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
pub(super) fn expand(value: &[u8], bases: &[PathBuf], home: &Path) -> Vec<PathBuf> {
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
pub(super) fn words(value: &[u8]) -> Vec<(&[u8], bool)> {
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
pub(super) fn path_like(w: &[u8]) -> bool {
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
    // husky v9 names its stub directory `_` (`<dir>/_`, `.husky/_` by default).
    let husky = dir.file_name() == Some(OsStr::new("_"));
    let mut dirs = vec![dir.to_owned()];
    if husky && let Some(parent) = dir.parent() {
        if host.writable.iter().any(|w| w == parent) {
            // Read-only, it would make the whole project read-only.
            repo.anomalies.push(Refusal {
                what: format!(
                    "{why}: husky's stubs in {} run scripts at the top of the project, which \
                     agentbox cannot make read-only",
                    dir.display()
                ),
                hint: "install husky into its own directory (npx husky .husky)".to_owned(),
            });
        } else {
            repo.path(
                parent.to_owned(),
                &format!("{why}: husky's stubs run the scripts here"),
            );
        }
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
        let Some(text) = super::read_regular(s, MAX_BYTES) else {
            continue;
        };
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
