//! The toolchains' part of the plan (`host::toolchain`): what of them is shown read-only and
//! where, the credential files in there masked, agentbox's own package caches bound writable
//! outside the home, and the variables and PATH entries the launchers need. Pure.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Builder, MASK_SIZE, Op, Prep};
use crate::host::HostFacts;
use crate::secrets::Kind;

/// Step 7's toolchain part: read-only binds, then the masks over them, then the caches.
pub fn mounts(facts: &HostFacts, tmpfs_size: bool, b: &mut Builder) {
    let tools = &facts.tools;
    b.notes.extend(tools.notes.iter().cloned());
    for (src, dest, why) in &tools.shown {
        let op = match src == dest {
            true => Op::RoBind(src.clone()),
            false => Op::RoBindAt {
                src: src.clone(),
                dest: dest.clone(),
            },
        };
        b.push(op, why.clone());
    }
    for (path, kind, why) in &tools.masked {
        match kind {
            Kind::Dir => {
                b.push(
                    Op::Tmpfs {
                        dest: path.clone(),
                        size: tmpfs_size.then_some(MASK_SIZE),
                    },
                    why.clone(),
                );
                b.push(Op::RemountRo(path.clone()), why.clone());
            }
            // A link in a read-only toolchain leads somewhere the sandbox shows on its own
            // terms (or not at all): masking it would mask its target.
            Kind::Symlink => {}
            Kind::File | Kind::Other => b.push(Op::EmptyFile(path.clone()), why.clone()),
        }
    }
    for c in &tools.caches {
        b.prep.push(Prep::CreateCache(c.host.clone()));
        b.push(
            Op::BindAt {
                src: c.host.clone(),
                dest: c.inside.clone(),
            },
            format!(
                "agentbox's {} cache ({}): writable, kept between runs, never your own",
                c.name, c.about
            ),
        );
    }
}

/// The variables: each toolchain's, then each cache's (they point the tools away from the
/// host's caches, which are not shown).
pub fn env(facts: &HostFacts) -> Vec<(OsString, OsString, &'static str)> {
    let mut v = facts.tools.env.clone();
    for c in &facts.tools.caches {
        for (name, dir) in &c.vars {
            v.push((
                name.clone(),
                dir.clone().into_os_string(),
                "agentbox's cache for this tool, kept between runs; never the host's own",
            ));
        }
    }
    v
}

/// PATH from `base`, with the toolchains' directories the host's PATH lacks appended, then
/// where the caches' tools install programs. Last: nothing there shadows a command found
/// earlier.
pub fn path(facts: &HostFacts, base: OsString) -> Option<OsString> {
    let caches = facts.tools.caches.iter().flat_map(|c| c.path.iter());
    let more: Vec<PathBuf> = facts.tools.path.iter().chain(caches).cloned().collect();
    if more.is_empty() {
        return None;
    }
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&base).collect();
    dirs.extend(more);
    std::env::join_paths(dirs).ok()
}
