//! The scan of a writable root: finds secret files to mask and "runs later" files to make
//! read-only, at any depth, in parallel. It reads directories and never follows a symlink, so
//! every path it reports is free of symlinks below the (canonical) root it was given. It changes
//! nothing on the host.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Fail;
use crate::rules::{self, CACHEDIR_TAG, PRUNED_DIRS, RUNS_LATER, SECRET_EXCEPTIONS};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;

/// What a directory entry is, from its own type (a symlink is never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Sockets, fifos, devices.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub path: PathBuf,
    pub kind: Kind,
    pub why: String,
}

/// Everything a scan of one root found, each list sorted by path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub secrets: Vec<Found>,
    pub runs_later: Vec<Found>,
    /// Entries named `.git` (directories, or files pointing at a git dir elsewhere).
    pub git: Vec<Found>,
}

fn compile(glob: &str) -> Result<Glob> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| {
            Fail::hint(
                format!("bad glob {glob:?}: {e}"),
                "use a name such as '*.secret' or a relative path such as 'config/*.key'",
            )
            .into()
        })
}

/// Checks that a user-supplied glob compiles.
pub fn check_glob(glob: &str) -> Result<()> {
    if glob.is_empty() || glob.starts_with('/') {
        return Err(Fail::hint(
            format!("bad glob {glob:?}: must be a name or a path relative to the project"),
            "use a name such as '*.secret' or a relative path such as 'config/*.key'",
        )
        .into());
    }
    compile(glob).map(|_| ())
}

/// A built-in name pattern in the form the scan checks without a regex: the list in
/// `rules.rs` stays globs for people to read, and every one of them has this shape (a test
/// holds it to that), so a launch compiles nothing for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    Exact(&'static str),
    /// `*.pem`
    Suffix(&'static str),
    /// `.env.*`
    Prefix(&'static str),
}

impl Literal {
    fn of(glob: &'static str) -> Option<Literal> {
        let meta = |s: &str| s.contains(['*', '?', '[', ']', '{', '}', '\\', '/']);
        if let Some(rest) = glob.strip_prefix('*') {
            (!meta(rest)).then_some(Literal::Suffix(rest))
        } else if let Some(rest) = glob.strip_suffix('*') {
            (!meta(rest)).then_some(Literal::Prefix(rest))
        } else {
            (!meta(glob)).then_some(Literal::Exact(glob))
        }
    }

    fn matches(self, name: &[u8]) -> bool {
        match self {
            Literal::Exact(e) => name == e.as_bytes(),
            Literal::Suffix(s) => name.len() > s.len() && name.ends_with(s.as_bytes()),
            Literal::Prefix(p) => name.len() > p.len() && name.starts_with(p.as_bytes()),
        }
    }
}

/// User globs (`--hide`, `--unhide`): names (no `/`) match the entry's name, paths match the
/// path relative to the scanned root. Compiled only when there are any.
#[derive(Default)]
struct UserGlobs {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
}

impl UserGlobs {
    fn new(globs: &[String]) -> Result<UserGlobs> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut n, mut p) = (0, 0);
        for g in globs {
            if g.contains('/') {
                paths.add(compile(g.trim_end_matches('/'))?);
                p += 1;
            } else {
                names.add(compile(g)?);
                n += 1;
            }
        }
        Ok(UserGlobs {
            names: (n > 0).then(|| names.build()).transpose()?,
            paths: (p > 0).then(|| paths.build()).transpose()?,
        })
    }

    fn has_paths(&self) -> bool {
        self.paths.is_some()
    }

    fn matches(&self, rel: &Path, name: &OsStr) -> bool {
        self.names.as_ref().is_some_and(|s| s.is_match(name))
            || self.paths.as_ref().is_some_and(|s| s.is_match(rel))
    }
}

/// The secret patterns: the built-in list (unless `--no-hide-env`), `--hide`, and the
/// exceptions (templates such as `.env.example`, and `--unhide`).
pub struct Matcher {
    builtin: Vec<(Literal, &'static str)>,
    hide: UserGlobs,
    unhide: UserGlobs,
}

impl Matcher {
    pub fn new(builtin: bool, hide: &[String], unhide: &[String]) -> Result<Matcher> {
        let builtin = match builtin {
            true => rules::SECRET_PATTERNS
                .iter()
                .map(|p| {
                    let lit = Literal::of(p.glob)
                        .with_context(|| format!("built-in pattern {:?} is not literal", p.glob))?;
                    Ok((lit, p.why))
                })
                .collect::<Result<Vec<_>>>()?,
            false => Vec::new(),
        };
        Ok(Matcher {
            builtin,
            hide: UserGlobs::new(hide)?,
            unhide: UserGlobs::new(unhide)?,
        })
    }

    /// Whether matching needs the relative path (only user globs with a `/` do).
    fn needs_rel(&self) -> bool {
        self.hide.has_paths() || self.unhide.has_paths()
    }

    /// Whether `--unhide` names this entry.
    pub fn unhidden(&self, rel: &Path, name: &OsStr) -> bool {
        self.unhide.matches(rel, name)
    }

    /// Why `rel` (named `name`) is a secret, or `None`.
    pub fn secret(&self, rel: &Path, name: &OsStr) -> Option<&'static str> {
        let bytes = name.as_bytes();
        let why = match self.builtin.iter().find(|(l, _)| l.matches(bytes)) {
            Some((_, why)) => *why,
            None if self.hide.matches(rel, name) => "--hide",
            None => return None,
        };
        let template = SECRET_EXCEPTIONS.iter().any(|e| bytes == e.as_bytes());
        (!template && !self.unhide.matches(rel, name)).then_some(why)
    }
}

fn kind_of(ft: fs::FileType) -> Kind {
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

/// The reason a `RUNS_LATER` entry matches `name` inside a directory called `parent`.
fn runs_later(parent: Option<&OsStr>, name: &OsStr) -> Option<&'static str> {
    RUNS_LATER.iter().find_map(|r| {
        let hit = match r.path.split_once('/') {
            None => name == r.path,
            Some((dir, file)) => parent == Some(OsStr::new(dir)) && name == file,
        };
        hit.then_some(r.why)
    })
}

/// How many directories the scan reads on the calling thread before it hands the rest to a
/// thread pool: most projects are done by then, and starting the pool costs more than they do.
const SEQUENTIAL_DIRS: usize = 256;

/// A directory to read, and whether only secrets are looked for in it (inside the directories
/// the runs-later search skips).
type Job = (PathBuf, bool);

/// Scans `root` (canonical): sequentially, then in parallel if the tree turns out large.
pub fn scan(root: &Path, matcher: &Matcher) -> Report {
    let mut report = Report::default();
    let mut frontier: std::collections::VecDeque<Job> = [(root.to_owned(), false)].into();
    let mut read = 0;
    while let Some(job) = frontier.pop_front() {
        visit(root, job, matcher, &mut report, &mut |j| {
            frontier.push_back(j)
        });
        read += 1;
        if read >= SEQUENTIAL_DIRS {
            break;
        }
    }
    if !frontier.is_empty() {
        let out = Mutex::new(report);
        rayon::scope(|s| {
            for job in frontier {
                let (out, matcher) = (&out, matcher);
                s.spawn(move |s| walk(s, root, job, matcher, out));
            }
        });
        report = out.into_inner().unwrap_or_else(|p| p.into_inner());
    }
    report.secrets.sort();
    report.runs_later.sort();
    report.git.sort();
    report
}

/// One directory and, through the pool, everything below it.
fn walk<'s>(
    s: &rayon::Scope<'s>,
    root: &'s Path,
    job: Job,
    matcher: &'s Matcher,
    out: &'s Mutex<Report>,
) {
    let mut local = Report::default();
    visit(root, job, matcher, &mut local, &mut |j| {
        s.spawn(move |s| walk(s, root, j, matcher, out))
    });
    if local != Report::default() {
        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
        o.secrets.append(&mut local.secrets);
        o.runs_later.append(&mut local.runs_later);
        o.git.append(&mut local.git);
    }
}

/// Reads one directory: records what it finds, hands each subdirectory to `descend`.
///
/// Git's own directory, `node_modules` and the like, and cache directories (`CACHEDIR.TAG`) are
/// searched for secrets only: the runs-later files are not looked for there. They are never
/// skipped outright, because an earlier run could rename a directory holding a secret to one
/// of those names (or plant a `CACHEDIR.TAG` beside it) to hide it from the next scan.
fn visit(
    root: &Path,
    (dir, secrets_only): Job,
    matcher: &Matcher,
    out: &mut Report,
    descend: &mut dyn FnMut(Job),
) {
    // A directory we cannot list is one the agent (same uid) cannot list either.
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    let entries: Vec<fs::DirEntry> = entries.filter_map(|e| e.ok()).collect();
    let secrets_only =
        secrets_only || (dir != root && entries.iter().any(|e| e.file_name() == CACHEDIR_TAG));
    let parent = dir.file_name();
    let needs_rel = matcher.needs_rel();
    for entry in entries {
        let Ok(ft) = entry.file_type() else { continue };
        let kind = kind_of(ft);
        let name = entry.file_name();
        let found = |why: &str| Found {
            path: dir.join(&name),
            kind,
            why: why.to_owned(),
        };
        let git = name == ".git";
        if git && !secrets_only {
            out.git.push(found("git directory"));
        }
        if !secrets_only
            && !git
            && let Some(why) = runs_later(parent, &name)
        {
            out.runs_later.push(found(why));
        }
        let path;
        let rel = if needs_rel {
            path = dir.join(&name);
            path.strip_prefix(root).unwrap_or(&path)
        } else {
            Path::new(&name)
        };
        if ft.is_socket() && !matcher.unhidden(rel, &name) {
            // Read-only mounts do not stop connect(): a listening socket in the project is a
            // door to whatever host process made it.
            out.secrets
                .push(found("a UNIX socket: it would reach a host process"));
            continue;
        }
        if let Some(why) = matcher.secret(rel, &name) {
            out.secrets.push(found(why));
            continue;
        }
        if kind == Kind::Dir {
            let skip_later = git || PRUNED_DIRS.iter().any(|p| name == *p);
            descend((dir.join(&name), secrets_only || skip_later));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "x").unwrap();
    }

    fn rels(root: &Path, found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn finds_secrets_at_any_depth_and_spares_templates() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for f in [
            ".env",
            "a/b/c/.env",
            "a/.env.local",
            "a/.env.example",
            ".env.sample",
            "keys/server.pem",
            "keys/server.pub",
            "id_ed25519",
            "id_ed25519.pub",
            "infra/prod.tfvars",
            "src/main.rs",
            "node_modules/pkg/.env",
            "target/CACHEDIR.TAG",
            "target/debug/.env",
            ".ssh/config",
        ] {
            write(root, f);
        }
        let m = Matcher::new(true, &[], &[]).unwrap();
        let r = scan(root, &m);
        assert_eq!(
            rels(root, &r.secrets),
            [
                ".env",
                ".ssh",
                "a/.env.local",
                "a/b/c/.env",
                "id_ed25519",
                "infra/prod.tfvars",
                "keys/server.pem",
                // Searched for secrets too: a renamed directory must not hide one.
                "node_modules/pkg/.env",
                "target/debug/.env",
            ]
        );
        assert_eq!(r.secrets[1].kind, Kind::Dir);
    }

    #[test]
    fn hide_and_unhide() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for f in [
            ".env",
            "conf/db.secret",
            "other/db.secret",
            "x.pem",
            "y.pem",
        ] {
            write(root, f);
        }
        let hide = ["conf/*.secret".to_owned()];
        let unhide = ["x.pem".to_owned(), ".env".to_owned()];
        let r = scan(root, &Matcher::new(true, &hide, &unhide).unwrap());
        assert_eq!(rels(root, &r.secrets), ["conf/db.secret", "y.pem"]);
        let r = scan(root, &Matcher::new(false, &hide, &[]).unwrap());
        assert_eq!(rels(root, &r.secrets), ["conf/db.secret"]);
    }

    #[test]
    fn symlinks_are_reported_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("p");
        let outside = t.path().join("outside");
        write(&outside, ".env");
        fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join(".env"), root.join(".env")).unwrap();
        let r = scan(&root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(rels(&root, &r.secrets), [".env"]);
        assert_eq!(r.secrets[0].kind, Kind::Symlink);
    }

    #[test]
    fn finds_runs_later_and_git() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for f in [
            ".git/config",
            ".envrc",
            "sub/.vscode/tasks.json",
            ".claude/commands/x.md",
            ".claude/notes.md",
            "deep/er/.mcp.json",
            "sub/.git",
        ] {
            write(root, f);
        }
        let r = scan(root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(
            rels(root, &r.runs_later),
            [
                ".claude/commands",
                ".envrc",
                "deep/er/.mcp.json",
                "sub/.vscode"
            ]
        );
        assert_eq!(rels(root, &r.git), [".git", "sub/.git"]);
        assert_eq!(r.git[1].kind, Kind::File);
    }

    #[test]
    fn the_built_in_list_needs_no_regex() {
        for p in rules::SECRET_PATTERNS {
            assert!(
                Literal::of(p.glob).is_some(),
                "{} would need a compiled glob",
                p.glob
            );
        }
        assert_eq!(Literal::of("*.pem"), Some(Literal::Suffix(".pem")));
        assert_eq!(Literal::of(".env.*"), Some(Literal::Prefix(".env.")));
        assert_eq!(Literal::of("a*b"), None);
        // A bare suffix or prefix is not a match by itself.
        assert!(!Literal::Suffix(".pem").matches(b".pem"));
        assert!(!Literal::Prefix(".env.").matches(b".env."));
    }

    #[test]
    fn large_trees_go_parallel_and_find_the_same() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for i in 0..400 {
            write(root, &format!("d{i}/sub/file.rs"));
        }
        write(root, "d17/sub/.env");
        write(root, "d399/.envrc");
        let r = scan(root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(rels(root, &r.secrets), ["d17/sub/.env"]);
        assert_eq!(rels(root, &r.runs_later), ["d399/.envrc"]);
    }

    #[test]
    fn bad_globs_are_refused() {
        for g in ["", "/abs", "a["] {
            assert!(check_glob(g).is_err(), "{g:?}");
        }
        assert!(check_glob("*.x").is_ok());
    }
}
