//! The scan of a writable root: finds secret files to mask and "runs later" files to make
//! read-only, at any depth, in parallel. It reads directories and never follows a symlink, so
//! every path it reports is free of symlinks below the (canonical) root it was given. It changes
//! nothing on the host.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Fail;
use crate::rules::{
    self, CACHEDIR_TAG, Guard, PRUNED_DIRS, RUNS_LATER, RunsLater, SECRET_EXCEPTIONS,
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
    /// Directories below the root marked as caches (`CACHEDIR.TAG`), where runs-later files
    /// were not looked for.
    pub caches: Vec<PathBuf>,
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
            Literal::Exact(e) => same(name, e.as_bytes()),
            Literal::Suffix(s) => {
                name.len() > s.len() && same(&name[name.len() - s.len()..], s.as_bytes())
            }
            Literal::Prefix(p) => name.len() > p.len() && same(&name[..p.len()], p.as_bytes()),
        }
    }
}

/// `a == b` without a call to libc's `memcmp`: the scan compares every name in the tree with
/// every pattern, nearly all differ in their first byte compared, and the calls were a visible
/// share of a scan's time.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
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
    index: Option<Box<ByteIndex>>,
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
            index: ByteIndex::new(&builtin),
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
        let why = match self.builtin(bytes) {
            Some(why) => why,
            None if self.hide.matches(rel, name) => "--hide",
            None => return None,
        };
        let template = SECRET_EXCEPTIONS.iter().any(|e| bytes == e.as_bytes());
        (!template && !self.unhide.matches(rel, name)).then_some(why)
    }

    /// The first built-in pattern, in list order, that `name` matches.
    fn builtin(&self, name: &[u8]) -> Option<&'static str> {
        let (Some(index), Some(&first), Some(&last)) = (&self.index, name.first(), name.last())
        else {
            return self.builtin_linear(name);
        };
        let mut candidates = index.first[usize::from(first)] | index.last[usize::from(last)];
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if let Some(&(lit, why)) = self.builtin.get(i)
                && lit.matches(name)
            {
                return Some(why);
            }
        }
        None
    }

    fn builtin_linear(&self, name: &[u8]) -> Option<&'static str> {
        let hit = self.builtin.iter().find(|(l, _)| l.matches(name));
        hit.map(|&(_, why)| why)
    }
}

/// Which built-in patterns a name can match, as bits in list order: exact names and suffixes
/// by the name's last byte, prefixes by its first. One lookup rules out nearly every pattern
/// for nearly every name, and a scan checks every name in the tree.
struct ByteIndex {
    first: [u64; 256],
    last: [u64; 256],
}

impl ByteIndex {
    /// `None` if there are more patterns than bits (the list is then searched in full).
    fn new(builtin: &[(Literal, &'static str)]) -> Option<Box<ByteIndex>> {
        if builtin.len() > 64 {
            return None;
        }
        let mut index = Box::new(ByteIndex {
            first: [0; 256],
            last: [0; 256],
        });
        for (i, (lit, _)) in builtin.iter().enumerate() {
            let (table, byte) = match *lit {
                Literal::Exact(s) | Literal::Suffix(s) => (&mut index.last, s.as_bytes().last()),
                Literal::Prefix(p) => (&mut index.first, p.as_bytes().first()),
            };
            match byte {
                Some(&b) => table[usize::from(b)] |= 1 << i,
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

mod walk;
pub use walk::scan;

#[cfg(test)]
mod tests;
