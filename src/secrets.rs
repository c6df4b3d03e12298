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

/// Compiled secret patterns: names (no `/`) match the entry's name, paths match the path
/// relative to the scanned root.
pub struct Matcher {
    names: GlobSet,
    name_why: Vec<String>,
    paths: GlobSet,
    path_why: Vec<String>,
    except_names: GlobSet,
    except_paths: GlobSet,
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

struct SetBuilder {
    names: (GlobSetBuilder, Vec<String>),
    paths: (GlobSetBuilder, Vec<String>),
}

impl SetBuilder {
    fn new() -> Self {
        SetBuilder {
            names: (GlobSetBuilder::new(), Vec::new()),
            paths: (GlobSetBuilder::new(), Vec::new()),
        }
    }

    fn add(&mut self, glob: &str, why: &str) -> Result<()> {
        let target = if glob.contains('/') {
            &mut self.paths
        } else {
            &mut self.names
        };
        target.0.add(compile(glob.trim_end_matches('/'))?);
        target.1.push(why.to_owned());
        Ok(())
    }

    fn build(self) -> Result<(GlobSet, Vec<String>, GlobSet, Vec<String>)> {
        Ok((
            self.names.0.build().context("building name patterns")?,
            self.names.1,
            self.paths.0.build().context("building path patterns")?,
            self.paths.1,
        ))
    }
}

impl Matcher {
    /// The built-in secret list (when `builtin` is on), plus `hide`, minus `unhide` and the
    /// template names (`.env.example`...).
    pub fn new(builtin: bool, hide: &[String], unhide: &[String]) -> Result<Matcher> {
        let mut set = SetBuilder::new();
        if builtin {
            for p in rules::SECRET_PATTERNS {
                set.add(p.glob, p.why)?;
            }
        }
        for glob in hide {
            set.add(glob, "--hide")?;
        }
        let mut except = SetBuilder::new();
        for glob in SECRET_EXCEPTIONS
            .iter()
            .copied()
            .chain(unhide.iter().map(String::as_str))
        {
            except.add(glob, "")?;
        }
        let (names, name_why, paths, path_why) = set.build()?;
        let (except_names, _, except_paths, _) = except.build()?;
        Ok(Matcher {
            names,
            name_why,
            paths,
            path_why,
            except_names,
            except_paths,
        })
    }

    /// Why `rel` (named `name`) is a secret, or `None`.
    pub fn secret(&self, rel: &Path, name: &OsStr) -> Option<&str> {
        let by_name = self.names.matches(name).first().map(|&i| &self.name_why[i]);
        let why = by_name.or_else(|| {
            if self.paths.is_empty() {
                return None;
            }
            self.paths.matches(rel).first().map(|&i| &self.path_why[i])
        })?;
        let excepted = self.except_names.is_match(name)
            || (!self.except_paths.is_empty() && self.except_paths.is_match(rel));
        (!excepted).then_some(why.as_str())
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

/// Scans `root` (canonical) in parallel.
pub fn scan(root: &Path, matcher: &Matcher) -> Report {
    let out = Mutex::new(Report::default());
    rayon::scope(|s| walk(s, root, root, matcher, &out));
    let mut report = out.into_inner().unwrap_or_else(|p| p.into_inner());
    report.secrets.sort();
    report.runs_later.sort();
    report.git.sort();
    report
}

fn walk<'s>(
    s: &rayon::Scope<'s>,
    root: &'s Path,
    dir: &Path,
    matcher: &'s Matcher,
    out: &'s Mutex<Report>,
) {
    // A directory we cannot list is one the agent (same uid) cannot list either.
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<fs::DirEntry> = entries.filter_map(|e| e.ok()).collect();
    if dir != root && entries.iter().any(|e| e.file_name() == CACHEDIR_TAG) {
        return;
    }
    let parent = dir.file_name();
    for entry in entries {
        let Ok(ft) = entry.file_type() else { continue };
        let kind = kind_of(ft);
        let name = entry.file_name();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let found = |why: &str| Found {
            path: path.clone(),
            kind,
            why: why.to_owned(),
        };
        let lock = || out.lock().unwrap_or_else(|p| p.into_inner());
        if name == ".git" {
            lock().git.push(found("git directory"));
            continue;
        }
        if let Some(why) = runs_later(parent, &name) {
            lock().runs_later.push(found(why));
        }
        if let Some(why) = matcher.secret(rel, &name) {
            lock().secrets.push(found(why));
            continue;
        }
        if kind == Kind::Dir && !PRUNED_DIRS.iter().any(|p| name == *p) {
            s.spawn(move |s| walk(s, root, &path, matcher, out));
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
                "keys/server.pem"
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
    fn bad_globs_are_refused() {
        for g in ["", "/abs", "a["] {
            assert!(check_glob(g).is_err(), "{g:?}");
        }
        assert!(check_glob("*.x").is_ok());
    }
}
