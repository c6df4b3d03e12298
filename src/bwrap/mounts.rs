//! The filesystem side of the plan: the system read-only, scratch tmpfs, the home, and the
//! project and other binds. Pure.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::host::SysEntry;
use crate::net::session::NetSession;
use crate::policy::{Access, NetMode, Policy};

pub(super) fn system(policy: &Policy, facts: &HostFacts, f: Features, b: &mut Builder) {
    let bound: Vec<&Path> = facts
        .system
        .paths
        .iter()
        .filter_map(|e| match e {
            SysEntry::Dir(p) => Some(p.as_path()),
            SysEntry::Symlink { .. } => None,
        })
        .collect();
    for entry in &facts.system.paths {
        match entry {
            SysEntry::Dir(p) => b.push(Op::RoBind(p.clone()), "system, read-only"),
            SysEntry::Symlink {
                path,
                target,
                canonical,
            } => {
                if bound.iter().any(|d| canonical.starts_with(d)) {
                    b.push(
                        Op::Symlink {
                            target: target.clone(),
                            link: path.clone(),
                        },
                        "the same symlink as on the host (merged /usr)",
                    );
                } else {
                    b.push(
                        Op::RoBindAt {
                            src: canonical.clone(),
                            dest: path.clone(),
                        },
                        "system, read-only (a symlink on the host)",
                    );
                }
            }
        }
    }
    b.push(
        Op::Proc("/proc".into()),
        "a /proc that shows only the sandbox's processes",
    );
    b.push(
        Op::Dev("/dev".into()),
        "a minimal /dev: null, zero, random, tty, no disks",
    );
    // Before /dev is made read-only: the mount points are made in its tmpfs.
    super::agent::gpu(facts, b);
    // bwrap's /dev is a tmpfs with no size option: read-only, nothing can fill it (the device
    // nodes and /dev/pts are mounts of their own and stay writable). Shared memory gets a
    // bounded tmpfs of its own, mounted after the remount so it stays writable.
    b.push(
        Op::RemountRo("/dev".into()),
        "/dev read-only: its tmpfs has no size bound (the devices stay usable)",
    );
    b.push(
        Op::Tmpfs {
            dest: "/dev/shm".into(),
            size: f.tmpfs_size.then_some(SHM_SIZE),
        },
        "private shared memory, size-bounded",
    );
    if facts.user.uid == 0 {
        // Started by root, the sandbox still owns root's files: with no capability at all it
        // could write /proc/sys/kernel/core_pattern (a command the host runs as root on the
        // next crash) or register a binfmt handler. Cover them read-only.
        for p in &facts.system.proc_writable_by_root {
            b.push(
                Op::RoBind(p.clone()),
                "started as root: host kernel settings read-only",
            );
        }
    }
    // Opening /proc/PID/mem for writing changes another process's memory the way ptrace
    // would; on a read-only mount the open fails (EROFS). Nested sandboxes write uid maps
    // there; the filtered network's relay does too, and remounts it read-only itself after.
    if !policy.allow.debug && !policy.allow.nested && policy.net != NetMode::Filtered {
        b.push(
            Op::RemountRo("/proc".into()),
            "/proc read-only: no writing another process's memory through /proc/PID/mem",
        );
    }
}

pub(super) fn scratch(
    policy: &Policy,
    facts: &HostFacts,
    net: Option<&NetSession>,
    f: Features,
    b: &mut Builder,
) {
    let size = |s: u64| f.tmpfs_size.then_some(s);
    for (dir, s, why) in [
        ("/tmp", TMP_SIZE, "private, empty /tmp"),
        ("/var/tmp", TMP_SIZE, "private, empty /var/tmp"),
        (
            "/run",
            RUN_SIZE,
            "empty /run: no host sockets (D-Bus, ssh-agent, docker)",
        ),
    ] {
        b.push(
            Op::Tmpfs {
                dest: dir.into(),
                size: size(s),
            },
            why,
        );
    }
    if let Some(exe) = &facts.system.self_exe {
        b.push(
            Op::RoBindAt {
                src: exe.clone(),
                dest: SELF_INSIDE.into(),
            },
            "agentbox itself, read-only (its shim: Landlock and Ctrl-C; the relay; the probe runner)",
        );
    }
    if let (NetMode::Filtered, Some(net)) = (policy.net, net) {
        super::network::files(net, facts.system.resolv_conf.as_deref(), b);
    }
    if let Some(target) = &facts.system.nixos_current_system {
        b.push(
            Op::Symlink {
                target: target.clone(),
                link: "/run/current-system".into(),
            },
            "NixOS: PATH leads through this link into /nix/store",
        );
    }
    // A target inside /etc is already there, read-only with the rest of /etc.
    if let (NetMode::Host, Some(resolv)) = (policy.net, &facts.system.resolv_conf)
        && !resolv.starts_with("/etc")
    {
        b.push(
            Op::RoBind(resolv.clone()),
            "the real /etc/resolv.conf, which is a symlink to here: name lookups work",
        );
    }
}

pub(super) fn home(facts: &HostFacts, f: Features, b: &mut Builder) {
    let tmpfs = Op::Tmpfs {
        dest: facts.user.home.clone(),
        size: f.tmpfs_size.then_some(TMP_SIZE),
    };
    agent::home(facts, tmpfs, b);
    for (src, dest) in &facts.user.git_config {
        let op = if src == dest {
            Op::RoBind(src.clone())
        } else {
            Op::RoBindAt {
                src: src.clone(),
                dest: dest.clone(),
            }
        };
        b.push(op, "your git identity and settings, read-only");
    }
    agent::runtime(facts, b);
    agent::integrations(facts, b);
    super::toolchain::mounts(facts, f.tmpfs_size, b);
}

pub(super) fn binds(facts: &HostFacts, b: &mut Builder) {
    let mut binds: Vec<(&Path, Access, String)> = vec![(
        &facts.project.dir,
        Access::ReadWrite,
        "the project, read-write".to_owned(),
    )];
    for (path, access) in &facts.project.extra {
        let flag = match access {
            Access::ReadOnly => "--ro",
            Access::ReadWrite => "--rw",
        };
        binds.push((path, *access, flag.to_owned()));
    }
    let writable: Vec<&Path> = facts
        .project
        .roots
        .iter()
        .map(|r| r.path.as_path())
        .collect();
    for repo in facts.project.roots.iter().flat_map(|r| &r.git) {
        // Only a linked worktree whose git dir names this .git file back, and never a broad
        // directory: a planted `gitdir: ..` must not make the home writable.
        let Some(common) = &repo.linked_common else {
            continue;
        };
        let project_git = repo.dot_git.parent() == Some(facts.project.dir.as_path());
        if project_git
            && !writable.iter().any(|w| common.starts_with(w))
            && too_broad(common, &facts.user.home).is_none()
        {
            binds.push((
                common,
                Access::ReadWrite,
                "the common git dir of this worktree, so git can commit".to_owned(),
            ));
        }
    }
    binds.sort_by_key(|(p, _, _)| depth(p));
    let mut seen = BTreeSet::new();
    for (path, access, why) in binds {
        if !seen.insert((path, access)) {
            continue;
        }
        let op = match access {
            Access::ReadOnly => Op::RoBind(path.to_owned()),
            Access::ReadWrite => Op::Bind(path.to_owned()),
        };
        b.push(op, why);
    }
}
