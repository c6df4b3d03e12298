//! The scan of a writable root: finds secret files to mask and "runs later" files to make
//! read-only, at any depth, in parallel. It reads directories and never follows a symlink, so
//! every path it reports is free of symlinks below the (canonical) root it was given. It changes
//! nothing on the host.
//!
//! A writable root is attacker-controlled (an earlier run wrote it), so the scan fails closed:
//! it sees every entry, or `scan` returns an error that names the place and the fix. Nothing in
//! the tree can make it look less: no marker file or directory name turns a check off.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Fail;
use crate::rules::{
    self, Check, Guard, PACKAGE_DIRS, PRUNED_DIRS, RUNS_LATER, RunsLater, SECRET_EXCEPTIONS,
    SecretPattern,
};
use std::os::unix::ffi::OsStrExt;

/// What a directory entry is, from its own type (a symlink is never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Sockets, fifos, devices.
    Other,
}

impl Kind {
    /// The kind of an entry from its own file type (as `symlink_metadata` gives it).
    pub fn of(ft: std::fs::FileType) -> Kind {
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
    /// Runs-later entries that stay writable and are only watched (`Guard::Audit`).
    pub watched: Vec<Found>,
    /// Entries named `.git` (directories, or files pointing at a git dir elsewhere).
    pub git: Vec<Found>,
    /// (device, inode) of masked files that have other names (hard links), for `scan_roots`.
    pub links: Vec<(u64, u64)>,
    /// What the walk could not read: any one refuses the launch.
    problems: Vec<walk::Problem>,
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
/// holds it to that), so a launch compiles nothing for it. Compared without regard to ASCII
/// case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    Exact(&'static str),
    /// `*.pem`
    Suffix(&'static str),
    /// `.env.*`
    Prefix(&'static str),
    /// `client_secret*.json`
    Around(&'static str, &'static str),
    /// `.kube/config`: a name inside a directory of that name.
    InDir(&'static str, &'static str),
}

impl Literal {
    fn of(glob: &'static str) -> Option<Literal> {
        let meta = |s: &str| s.contains(['*', '?', '[', ']', '{', '}', '\\', '/']);
        if let Some((dir, name)) = glob.split_once('/') {
            return (!meta(dir) && !meta(name) && !dir.is_empty() && !name.is_empty())
                .then_some(Literal::InDir(dir, name));
        }
        if let Some(rest) = glob.strip_prefix('*') {
            (!meta(rest)).then_some(Literal::Suffix(rest))
        } else if let Some(rest) = glob.strip_suffix('*') {
            (!meta(rest)).then_some(Literal::Prefix(rest))
        } else if let Some((pre, suf)) = glob.split_once('*') {
            (!meta(pre) && !meta(suf)).then_some(Literal::Around(pre, suf))
        } else {
            (!meta(glob)).then_some(Literal::Exact(glob))
        }
    }

    fn matches(self, name: &[u8], parent: Option<&[u8]>) -> bool {
        let ends = |s: &str| same(&name[name.len() - s.len()..], s.as_bytes());
        let starts = |p: &str| same(&name[..p.len()], p.as_bytes());
        match self {
            Literal::Exact(e) => same(name, e.as_bytes()),
            Literal::Suffix(s) => name.len() > s.len() && ends(s),
            Literal::Prefix(p) => name.len() > p.len() && starts(p),
            Literal::Around(p, s) => name.len() >= p.len() + s.len() && ends(s) && starts(p),
            Literal::InDir(d, n) => {
                same(name, n.as_bytes()) && parent.is_some_and(|p| same(p, d.as_bytes()))
            }
        }
    }
}

/// Whether `path` is a secret by the name of the directory that holds it (`.kube/config`):
/// renaming that directory would unmask it for the next run, so the plan pins the directory
/// for the run (a mount point cannot be renamed). Pure: names only.
pub fn named_by_its_dir(path: &Path) -> bool {
    let (Some(name), Some(parent)) = (path.file_name(), path.parent().and_then(Path::file_name))
    else {
        return false;
    };
    rules::SECRET_PATTERNS.iter().any(|p| {
        Literal::of(p.glob).is_some_and(|l| {
            matches!(l, Literal::InDir(..)) && l.matches(name.as_bytes(), Some(parent.as_bytes()))
        })
    })
}

/// `a == b` in any ASCII case, without a call to libc: the scan compares every name in the
/// tree with every candidate pattern, nearly all differ in their first byte compared, and the
/// calls were a visible share of a scan's time.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
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

/// What `--hide` matches report.
pub(super) static HIDDEN: SecretPattern = SecretPattern {
    glob: "--hide",
    why: "--hide",
    check: Check::Name,
    dirs: true,
};

/// The secret patterns: the built-in list (unless `--no-hide-env`), `--hide`, and the
/// exceptions (templates such as `.env.example`, public keys, and `--unhide`).
pub struct Matcher {
    builtin: Vec<(Literal, &'static SecretPattern)>,
    index: Option<Box<ByteIndex>>,
    exceptions: Vec<Literal>,
    hide: UserGlobs,
    unhide: UserGlobs,
}

impl Matcher {
    pub fn new(builtin: bool, hide: &[String], unhide: &[String]) -> Result<Matcher> {
        let literal = |glob: &'static str| {
            Literal::of(glob).with_context(|| format!("built-in pattern {glob:?} is not literal"))
        };
        let builtin = match builtin {
            true => rules::SECRET_PATTERNS
                .iter()
                .map(|p| Ok((literal(p.glob)?, p)))
                .collect::<Result<Vec<_>>>()?,
            false => Vec::new(),
        };
        Ok(Matcher {
            index: ByteIndex::new(&builtin),
            builtin,
            exceptions: SECRET_EXCEPTIONS
                .iter()
                .map(|e| literal(e))
                .collect::<Result<_>>()?,
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

    /// The pattern that makes `rel` (named `name`, in a directory named `parent`) a secret, if
    /// any. A pattern decided by content (`Check`) still has to be checked by the caller.
    pub fn secret(
        &self,
        rel: &Path,
        name: &OsStr,
        parent: Option<&OsStr>,
        is_dir: bool,
    ) -> Option<&'static SecretPattern> {
        let bytes = name.as_bytes();
        let hit = match self.builtin(bytes, parent.map(OsStr::as_bytes), is_dir) {
            Some(p) if !self.exceptions.iter().any(|e| e.matches(bytes, None)) => p,
            _ if self.hide.matches(rel, name) => &HIDDEN,
            _ => return None,
        };
        (!self.unhide.matches(rel, name)).then_some(hit)
    }

    /// The first built-in pattern, in list order, that `name` matches.
    fn builtin(
        &self,
        name: &[u8],
        parent: Option<&[u8]>,
        is_dir: bool,
    ) -> Option<&'static SecretPattern> {
        let (Some(index), Some(&first), Some(&last)) = (&self.index, name.first(), name.last())
        else {
            return self.builtin_linear(name, parent, is_dir);
        };
        let mut candidates = index.first[usize::from(first)] | index.last[usize::from(last)];
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if let Some(&(lit, p)) = self.builtin.get(i)
                && (p.dirs || !is_dir)
                && lit.matches(name, parent)
            {
                return Some(p);
            }
        }
        None
    }

    fn builtin_linear(
        &self,
        name: &[u8],
        parent: Option<&[u8]>,
        is_dir: bool,
    ) -> Option<&'static SecretPattern> {
        let hit = self
            .builtin
            .iter()
            .find(|(l, p)| (p.dirs || !is_dir) && l.matches(name, parent));
        hit.map(|&(_, p)| p)
    }
}

/// Which built-in patterns a name can match, as bits in list order: exact names and suffixes
/// by the name's last byte, prefixes by its first, in both ASCII cases. One lookup rules out
/// nearly every pattern for nearly every name, and a scan checks every name in the tree.
struct ByteIndex {
    first: [u128; 256],
    last: [u128; 256],
}

impl ByteIndex {
    /// `None` if there are more patterns than bits (the list is then searched in full).
    fn new(builtin: &[(Literal, &'static SecretPattern)]) -> Option<Box<ByteIndex>> {
        if builtin.len() > 128 {
            return None;
        }
        let mut index = Box::new(ByteIndex {
            first: [0; 256],
            last: [0; 256],
        });
        for (i, (lit, _)) in builtin.iter().enumerate() {
            let (table, byte) = match *lit {
                Literal::Exact(s) | Literal::Suffix(s) | Literal::InDir(_, s) => {
                    (&mut index.last, s.as_bytes().last())
                }
                Literal::Around(p, "") => (&mut index.first, p.as_bytes().first()),
                Literal::Around(_, s) => (&mut index.last, s.as_bytes().last()),
                Literal::Prefix(p) => (&mut index.first, p.as_bytes().first()),
            };
            match byte {
                Some(&b) => {
                    table[usize::from(b.to_ascii_lowercase())] |= 1 << i;
                    table[usize::from(b.to_ascii_uppercase())] |= 1 << i;
                }
                // An empty suffix or prefix (`*`): a candidate for every name.
                None => table.iter_mut().for_each(|t| *t |= 1 << i),
            }
        }
        Some(index)
    }
}

/// `RUNS_LATER` and every profile's project files, split into (directory, name, entry) once
/// per scan, not once per entry, and indexed by the name's first byte: the list is long, and
/// nearly every name in a tree starts with a byte no entry starts with.
struct RunsLaterNames {
    entries: Vec<(Option<&'static str>, &'static str, &'static RunsLater)>,
    /// For each first byte, the indices into `entries` of the names that start with it.
    by_first: Vec<Vec<u16>>,
}

impl RunsLaterNames {
    fn new() -> RunsLaterNames {
        let split = |path: &'static str| match path.split_once('/') {
            None => (None, path),
            Some((dir, file)) => (Some(dir), file),
        };
        let entries: Vec<_> = RUNS_LATER
            .iter()
            .chain(crate::profile::project_files())
            .map(|r| {
                let (dir, file) = split(r.path);
                (dir, file, r)
            })
            .collect();
        let mut by_first = vec![Vec::new(); 256];
        for (i, (_, file, _)) in entries.iter().enumerate() {
            if let (Some(&b), Ok(i)) = (file.as_bytes().first(), u16::try_from(i)) {
                by_first[usize::from(b)].push(i);
            }
        }
        RunsLaterNames { entries, by_first }
    }

    /// The entry that matches `name` inside a directory called `parent`, the first in list
    /// order.
    fn find(&self, parent: Option<&OsStr>, name: &OsStr) -> Option<&'static RunsLater> {
        let first = *name.as_bytes().first()?;
        self.by_first[usize::from(first)].iter().find_map(|&i| {
            let (dir, file, r) = self.entries[usize::from(i)];
            let hit = same(name.as_bytes(), file.as_bytes())
                && dir.is_none_or(|d| parent == Some(OsStr::new(d)));
            hit.then_some(r)
        })
    }
}

mod sniff;
mod system;
mod walk;
pub use system::{Masks, etc_secrets, linked_below};
pub use walk::{scan, scan_lenient, scan_roots};

#[cfg(test)]
mod tests;
