//! One sandbox per tree at a time. Two sandboxes on overlapping writable roots can race each
//! other: one, already running, swaps a directory for a symlink between the other's scan and
//! its bwrap's mounts, and a path-based bind (a pin, a read-only bind) then lands on whatever
//! the symlink names, the user's home included. A sandbox is attacker-controlled; agentbox's
//! launch is not, so the launch refuses to start beside another sandbox on the same tree.
//!
//! How: before the scan, every writable root takes an exclusive `flock` on the directory itself,
//! and every directory above it a shared one. Two runs conflict exactly when one's root is,
//! holds, or lies inside the other's. Nothing is written anywhere (a lock on the directory, not
//! a lock file); the kernel drops the locks when agentbox exits, however it exits, and bwrap does
//! not inherit them (close-on-exec). A directory above a root that this user cannot open is
//! skipped: a run rooted there could not have scanned it either.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rustix::fs::{FlockOperation, Mode, OFlags, flock, open};

use crate::error::Fail;
use crate::text::printable;

/// The locks of one run, held until it is dropped.
#[derive(Debug)]
pub struct RunLock {
    _dirs: Vec<OwnedFd>,
}

/// Locks `roots` (canonical writable roots) for this run.
pub fn lock(roots: &[PathBuf]) -> Result<RunLock> {
    // (path, exclusive), roots first: an exclusive lock is never downgraded by a shared one
    // taken on the same directory by this run (a --rw path inside the project).
    let mut wanted: Vec<(&Path, bool)> = roots.iter().map(|r| (r.as_path(), true)).collect();
    for r in roots {
        wanted.extend(r.ancestors().skip(1).map(|a| (a, false)));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut dirs = Vec::new();
    for (path, exclusive) in wanted {
        if !seen.insert(path) {
            continue;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = match open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(_) if !exclusive => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("opening {}", printable(path.as_os_str()))));
            }
        };
        let op = match exclusive {
            true => FlockOperation::NonBlockingLockExclusive,
            false => FlockOperation::NonBlockingLockShared,
        };
        if flock(&dir, op).is_err() {
            return Err(busy(roots, path, exclusive));
        }
        dirs.push(dir);
    }
    Ok(RunLock { _dirs: dirs })
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
        "wait for it to end, or give each agent its own checkout (git worktree add ../other)",
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
        let held = lock(std::slice::from_ref(&p)).unwrap();
        // The same tree, a tree inside it, a tree holding it: refused, with the fix.
        for other in [p.clone(), p.join("sub"), base.clone()] {
            let err = lock(std::slice::from_ref(&other)).unwrap_err();
            let (code, hint) = crate::error::classify(&err);
            assert_eq!(code, 125, "{other:?}");
            assert!(hint.unwrap().contains("git worktree"), "{other:?}");
        }
        // A sibling tree is not (the control), and one run may hold a root and a --rw path
        // inside it.
        lock(&[base.join("q")]).unwrap();
        drop(held);
        let both = lock(&[p.clone(), p.join("sub")]).unwrap();
        drop(both);
        // Released with the run.
        lock(std::slice::from_ref(&p)).unwrap();
    }
}
