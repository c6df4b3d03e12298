//! The agent's persistent home must not fill up with mount points: bwrap creates each mount
//! point it needs inside the home it has bound (an empty `.gitconfig` under the user's
//! read-only one, `src/project` under the project), and in an agent home, which is bound from
//! agentbox's data directory, these stay on the host after the run, one set per project.
//!
//! Before the run, the paths under the home that a later mount needs and that do not exist
//! yet are noted (they are what bwrap will create), and the mount points themselves (an
//! earlier run may have left one); after it, each one is removed if it is still what bwrap
//! left (an empty directory or file, a symlink to the same target), deepest
//! first, through `hostfs` (the home is an untrusted area: nothing followed). Anything the
//! agent put there stays. Runs of the same profile share the home, and a mount point removed
//! under a running sandbox would unmount it there: each run holds a shared lock on the home,
//! and cleans only when it can make it exclusive, that is when no other run is using it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::bwrap::{Op, Plan};
use crate::hostfs::{self, Untrusted};

/// What a run noted before it started; `finish` cleans up after it.
pub struct Leftovers {
    lock: OwnedFd,
    /// Paths bwrap will create, each with the symlink target when it makes a symlink.
    created: Vec<(PathBuf, Option<PathBuf>)>,
}

fn dest(op: &Op) -> Option<(&Path, Option<&Path>)> {
    match op {
        Op::BindAt { dest, .. }
        | Op::RoBindAt { dest, .. }
        | Op::DataFile { dest, .. }
        | Op::Tmpfs { dest, .. } => Some((dest, None)),
        Op::RoBind(p)
        | Op::Bind(p)
        | Op::Proc(p)
        | Op::Dev(p)
        | Op::EmptyFile(p)
        | Op::UnreadableFile(p) => Some((p, None)),
        Op::Symlink { target, link } => Some((link, Some(target))),
        _ => None,
    }
}

/// The paths under `agent_home` (bound at `inside`) that the mounts after it will create.
pub fn planned(plan: &Plan, agent_home: &Path) -> Vec<(PathBuf, Option<PathBuf>)> {
    let Some(at) = plan
        .steps
        .iter()
        .position(|s| matches!(&s.op, Op::BindAt { src, .. } if src == agent_home))
    else {
        return Vec::new();
    };
    let Op::BindAt { dest: inside, .. } = &plan.steps[at].op else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    // What is mounted over the home so far: a path below one of these is in that mount (a
    // mask in a toolchain shown read-only), not in the agent's home.
    let mut mounted: Vec<&Path> = Vec::new();
    for (d, target) in plan.steps[at + 1..].iter().filter_map(|s| dest(&s.op)) {
        if mounted.iter().any(|m| d != *m && d.starts_with(m)) {
            continue;
        }
        mounted.push(d);
        let Ok(rel) = d.strip_prefix(inside) else {
            continue;
        };
        let parts: Vec<_> = rel.components().collect();
        let mut p = agent_home.to_owned();
        let mut missing = false;
        for (i, c) in parts.iter().enumerate() {
            p.push(c);
            missing = missing || std::fs::symlink_metadata(&p).is_err();
            let last = i + 1 == parts.len();
            // The mount point itself, even when an earlier run left it: at a mount point,
            // nothing is of use to any run that mounts there.
            if (missing || last) && !out.iter().any(|(q, _)| q == &p) {
                out.push((p.clone(), target.filter(|_| last).map(Path::to_owned)));
            }
        }
    }
    out
}

/// Before the run: takes the shared lock on the agent's home and notes what bwrap will
/// create there. `None` (nothing cleaned later) without an agent home or when the lock is
/// not to be had at once.
pub fn before(plan: &Plan, agent_home: Option<&Path>, areas: &Untrusted) -> Option<Leftovers> {
    let home = agent_home?;
    let lock = hostfs::open_dir(home, areas).ok()?;
    flock(&lock, FlockOperation::NonBlockingLockShared).ok()?;
    Some(Leftovers {
        lock,
        created: planned(plan, home),
    })
}

impl Leftovers {
    /// After the run: removes what is still as bwrap left it, when no other run uses the home.
    pub fn finish(mut self, areas: &Untrusted) {
        if flock(&self.lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return;
        }
        self.created
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, target) in &self.created {
            if let Err(e) = hostfs::remove_if_empty(p, target.as_deref(), areas) {
                let msg = format!("agentbox: warning: cleaning the agent's home: {e:#}");
                eprintln!("{}", crate::text::terminal(&msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bwrap::Step;

    fn step(op: Op) -> Step {
        Step {
            op,
            why: String::new(),
        }
    }

    #[test]
    fn what_bwrap_will_create_under_the_agent_home() {
        let t = tempfile::tempdir().unwrap();
        let ah = t.path().join("ah");
        std::fs::create_dir_all(ah.join("src")).unwrap();
        let plan = Plan {
            bwrap: "/usr/bin/bwrap".into(),
            interactive: false,
            steps: vec![
                // Before the home's bind: not in it.
                step(Op::Bind("/h/early".into())),
                step(Op::BindAt {
                    src: ah.clone(),
                    dest: "/h".into(),
                }),
                step(Op::RoBind("/h/.gitconfig".into())),
                step(Op::Bind("/h/src/p/q".into())),
                step(Op::Symlink {
                    target: "x".into(),
                    link: "/h/l".into(),
                }),
                // A mask inside a mount over the home: in that mount, not in the home.
                step(Op::RoBind("/h/.nvm/versions".into())),
                step(Op::EmptyFile("/h/.nvm/versions/node/v1/etc/npmrc".into())),
                step(Op::RoBind("/usr".into())),
            ],
            command: Vec::new(),
            prep: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
        };
        let got = planned(&plan, &ah);
        assert_eq!(
            got,
            [
                (ah.join(".gitconfig"), None),
                // `src` exists: only what is below it.
                (ah.join("src/p"), None),
                (ah.join("src/p/q"), None),
                (ah.join("l"), Some(PathBuf::from("x"))),
                (ah.join(".nvm"), None),
                (ah.join(".nvm/versions"), None),
            ]
        );
        assert!(planned(&plan, Path::new("/other")).is_empty());
    }
}
