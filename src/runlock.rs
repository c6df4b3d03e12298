//! One sandbox per tree at a time. Two sandboxes on overlapping writable roots can race each
//! other: one, already running, swaps a directory for a symlink between the other's scan and
//! its bwrap's mounts, and a path-based bind (a pin, a read-only bind) then lands on whatever
//! the symlink names, the user's home included. A sandbox is attacker-controlled; agentbox's
//! launch is not, so the launch refuses to start beside another sandbox on the same tree.
//!
//! How: before the scan, every writable root takes an exclusive `flock`, and every directory
//! above it a shared one, on lock files named by the directory's device and inode in the user's
//! private runtime directory (0700, through `hostfs`): never on the directories themselves,
//! which any local user (or a sandbox shown them read-only) could lock to block every run. Two
//! runs conflict exactly when one's root is, holds, or lies inside the other's. The kernel drops
//! the locks when agentbox exits, however it exits, and bwrap does not inherit them
//! (close-on-exec). A directory above a root that cannot be stat'ed is skipped: a run rooted
//! there could not have scanned it either. The lock files stay (a few bytes of names in a
//! runtime directory): removing a lock file that another run may be opening would let two runs
//! lock two different files.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rustix::fs::{FlockOperation, flock};

use crate::error::Fail;
use crate::hostfs::{self, Untrusted};
use crate::text::printable;

/// The locks of one run, held until it is dropped.
#[derive(Debug)]
pub struct RunLock {
    _files: Vec<File>,
    /// The roots locked exclusively, as given.
    pub roots: Vec<PathBuf>,
}

/// Locks `roots` (canonical writable roots) for this run, with lock files in `runtime`.
pub fn lock(roots: &[PathBuf], runtime: &Path) -> Result<RunLock> {
    let areas = Untrusted::new([runtime.to_owned()]);
    let dir = runtime.join("locks");
    hostfs::create_dir_all(&dir, 0o700, &areas)?;
    // (path, exclusive), roots first: an exclusive lock is never downgraded by a shared one
    // taken on the same directory by this run (a --rw path inside the project).
    let mut wanted: Vec<(&Path, bool)> = roots.iter().map(|r| (r.as_path(), true)).collect();
    for r in roots {
        wanted.extend(r.ancestors().skip(1).map(|a| (a, false)));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    for (path, exclusive) in wanted {
        let Ok(meta) = std::fs::metadata(path) else {
            if exclusive {
                anyhow::bail!("reading {}", printable(path.as_os_str()));
            }
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let name = format!("{:x}-{:x}", meta.dev(), meta.ino());
        let file = hostfs::open_file(&dir.join(name), hostfs::Write::Append, &areas)?;
        let op = match exclusive {
            true => FlockOperation::NonBlockingLockExclusive,
            false => FlockOperation::NonBlockingLockShared,
        };
        if flock(&file, op).is_err() {
            return Err(busy(roots, path, exclusive));
        }
        files.push(file);
    }
    Ok(RunLock {
        _files: files,
        roots: roots.to_vec(),
    })
}

fn busy(roots: &[PathBuf], at: &Path, root: bool) -> anyhow::Error {
    let mine = roots
        .iter()
        .map(|r| printable(r.as_os_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let where_ = match root {
        true => format!("in {}", printable(at.as_os_str())),
        false => format!("on {} (which holds {mine})", printable(at.as_os_str())),
    };
    Fail::hint(
        format!(
            "another agentbox sandbox is running {where_}, or inside it: two sandboxes on one \
             tree can race each other's protections"
        ),
        "wait for it to end, or give each agent its own clone (git clone . ../other; a git \
         worktree shares its git directory, so it is the same tree)",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_trees_conflict_and_disjoint_ones_do_not() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        for d in ["p/sub", "q"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let p = base.join("p");
        let rt = base.join("run");
        let held = lock(std::slice::from_ref(&p), &rt).unwrap();
        // The same tree, a tree inside it, a tree holding it: refused, with the fix.
        for other in [p.clone(), p.join("sub"), base.clone()] {
            let err = lock(std::slice::from_ref(&other), &rt).unwrap_err();
            let (code, hint) = crate::error::classify(&err);
            assert_eq!(code, 125, "{other:?}");
            assert!(hint.unwrap().contains("git clone"), "{other:?}");
        }
        // A sibling tree is not (the control), and one run may hold a root and a --rw path
        // inside it.
        lock(&[base.join("q")], &rt).unwrap();
        drop(held);
        let both = lock(&[p.clone(), p.join("sub")], &rt).unwrap();
        drop(both);
        // Released with the run.
        lock(std::slice::from_ref(&p), &rt).unwrap();
    }
}
