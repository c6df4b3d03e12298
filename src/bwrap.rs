//! From `Policy` and `HostFacts` to the bubblewrap argv: `plan()` decides every step and its
//! reason, `to_argv()` spells it in bwrap's options, `script()` prints it for `--dry-run`. All
//! three are pure: no I/O, no environment, no clock.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::broad::{too_broad, too_broad_to_show};
use crate::error::Fail;
use crate::host::HostFacts;
use crate::inside::SELF_INSIDE;
use crate::net::session::NetSession;
use crate::policy::{NetMode, Policy};

/// One bubblewrap setup operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    UnshareUser,
    UnsharePid,
    UnshareIpc,
    UnshareUts,
    UnshareCgroupTry,
    UnshareNet,
    Hostname(&'static str),
    DieWithParent,
    NewSession,
    CapDropAll,
    /// `--disable-userns`: the kernel refuses new user namespaces inside (bwrap 0.8).
    DisableUserns,
    /// A seccomp program, handed to bwrap on a file descriptor.
    Seccomp(Vec<u8>),
    /// `--uid 0 --gid 0`: the filtered-network relay sets up as uid 0, then gives the agent the
    /// user's own ids back in a nested namespace.
    Uid0,
    /// `--cap-add CAP`, after `--cap-drop ALL` (the relay drops it before the agent starts).
    CapAdd(&'static str),
    /// Bind `src` read-write at a different `dest`.
    BindAt {
        src: PathBuf,
        dest: PathBuf,
    },
    /// A read-only file holding `bytes` at `dest` (`--ro-bind-data FD`).
    DataFile {
        dest: PathBuf,
        bytes: Vec<u8>,
    },
    ClearEnv,
    /// `from_host`: the value is the host's own (the script then reads it from its environment,
    /// so a token passed with `--env NAME` is not printed by `--dry-run`).
    SetEnv {
        name: OsString,
        value: OsString,
        from_host: bool,
    },
    RoBind(PathBuf),
    Bind(PathBuf),
    /// Bind `src` read-only at a different `dest`.
    RoBindAt {
        src: PathBuf,
        dest: PathBuf,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Proc(PathBuf),
    Dev(PathBuf),
    /// `--dev-bind`: a host device node (or a directory of them) with device access (`--gpu`).
    DevBind(PathBuf),
    Tmpfs {
        dest: PathBuf,
        size: Option<u64>,
    },
    RemountRo(PathBuf),
    /// An empty, read-only file over `dest` (`--ro-bind-data FD`, FD reading /dev/null).
    EmptyFile(PathBuf),
    /// The same with mode 000 (`--perms 0000`): unreadable inside, as the file it masks is on
    /// the host, so a check such as `[ -r /etc/shadow ]` answers as it would there. The sandbox
    /// holds no capability, so not even uid 0 inside reads it.
    UnreadableFile(PathBuf),
    Chdir(PathBuf),
}

/// An operation and the reason it is there, printed by `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub op: Op,
    pub why: String,
}

/// Something done on the host before bwrap starts: what git itself would do, and the agent's
/// own home (agentbox's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prep {
    /// `mkdir` a missing `.git/hooks`: otherwise the agent could create it and plant hooks.
    CreateDir(PathBuf),
    /// `mkdir -p` (0700) the agent's home and its state directories.
    CreateHome { dir: PathBuf, subdirs: Vec<PathBuf> },
    /// `mkdir -p` (0700) one of agentbox's package caches.
    CreateCache(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub bwrap: PathBuf,
    /// On a terminal: bwrap ignores Ctrl-C and agentbox's shim inside restores it for the
    /// command (bwrap's death on Ctrl-C would take the whole sandbox down).
    pub interactive: bool,
    pub steps: Vec<Step>,
    pub command: Vec<OsString>,
    pub prep: Vec<Prep>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// What bwrap features this version has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `--size` for tmpfs (0.7.0; refused when bwrap is setuid).
    pub tmpfs_size: bool,
    /// `--disable-userns` (0.8.0).
    pub disable_userns: bool,
}

// `--add-seccomp-fd` and `--clearenv` came with 0.6.0, the oldest version agentbox accepts, so
// they need no gate.
impl Features {
    pub fn of(version: (u32, u32, u32), setuid: bool) -> Features {
        Features {
            tmpfs_size: version >= (0, 7, 0) && !setuid,
            // A setuid bwrap cannot write the sysctl this needs for a non-root user.
            disable_userns: version >= (0, 8, 0) && !setuid,
        }
    }
}

/// The oldest bwrap agentbox supports (Ubuntu 22.04 ships 0.6).
pub const MIN_BWRAP: (u32, u32, u32) = (0, 6, 0);

/// Size bounds of the writable tmpfs mounts, so the agent cannot fill the host's memory.
const TMP_SIZE: u64 = 4 << 30;
const RUN_SIZE: u64 = 64 << 20;
/// `/dev/shm`'s bound (public for the probe that tries to pass it).
pub const SHM_SIZE: u64 = 1 << 30;
/// A masked directory is read-only: it needs no room at all.
const MASK_SIZE: u64 = 4096;

/// Sorts binds so that a parent is mounted before its children (a child bind then shows
/// through; the other order would hide it).
fn depth(p: &Path) -> usize {
    p.components().count()
}

pub(crate) struct Builder {
    pub(crate) steps: Vec<Step>,
    pub(crate) warnings: Vec<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) prep: Vec<Prep>,
}

impl Builder {
    pub(crate) fn push(&mut self, op: Op, why: impl Into<String>) {
        self.steps.push(Step {
            op,
            why: why.into(),
        });
    }
}

/// Builds the sandbox, in this order (mount order is meaning: a later mount covers an earlier
/// one, so every mask comes after the bind it masks):
///
///  1. Namespaces: user, pid, ipc, uts (hostname `agentbox`), cgroup where the kernel has it,
///     and net unless the host network was asked for (the filtered network keeps its own).
///  2. Process: die with the parent, a new terminal session when stdin is not a terminal,
///     every capability dropped, nested user namespaces disabled (bwrap 0.8+, not setuid), and
///     the seccomp programs (see `seccomp.rs`). With the filtered network instead: uid 0 and
///     three capabilities for the relay, which drops them and loads the programs itself.
///  3. Environment: cleared, then the allowlist, the profile's variables, the proxy variables
///     (filtered network), the shim directory first on PATH, and each `--env`.
///  4. System, read-only: `/usr`; `/bin`, `/sbin`, `/lib*` as the same symlinks as on the host
///     (merged /usr) or as binds; `/etc`; `/opt` and `/nix/store` when present.
///  5. A fresh `/proc` for the new pid namespace and a minimal `/dev`, read-only (its tmpfs has
///     no size bound; the device nodes stay usable), with a bounded tmpfs on `/dev/shm`; when
///     started as root, `/proc/sys` and `/proc/sysrq-trigger` read-only (root owns them even
///     without capabilities); `/proc` itself read-only unless debugging or nesting is allowed
///     (the filtered network's relay does this itself, after writing its uid maps).
///  6. Empty tmpfs on `/tmp`, `/var/tmp` and `/run`; then, inside `/run`, agentbox itself (its
///     shim, the relay, the probe runner), the proxy's socket directory, token and resolver
///     (filtered network), NixOS's `current-system` link and, with the host network, the real
///     target of `/etc/resolv.conf`.
///  7. `$HOME`: an empty tmpfs, or the agent's own persistent home (agent profiles); then
///     `~/.gitconfig` and git's config files read-only, the profile's runtime paths, the
///     command's executables where they really are (read-only) with their shims, and the
///     sockets of `--ssh-agent`, `--docker` and `--port`; the toolchains in the home read-only (their
///     credential files masked) and agentbox's package caches read-write, outside the home.
///  8. The project read-write, the `--ro`/`--rw` paths, and the common git dir of a worktree
///     project, all at their real paths, parents before children.
///  9. Pins: every directory from a writable root down to each item of step 10 bound onto
///     itself, so the agent cannot rename any of them away and put a doctored copy in its
///     place (a mount point cannot be renamed; a directory above one can).
/// 10. Files the host runs later, read-only (after creating a missing `.git/hooks`, as git does):
///     git's hooks and config in every git dir a `.git` leads to, whatever git's configuration
///     (read by the host's git) makes git run or read, the runs-later names, and the scripts
///     protected files launch (`host::refs`). Steps 9 and 10
///     are emitted together in path order, so a directory comes before what is in it.
/// 11. Secrets masked: a file (or socket) becomes an empty read-only file, a directory an empty
///     read-only tmpfs; the system's own secrets (`/etc/shadow`...) too.
/// 12. The sandbox's own root read-only (a tmpfs of bwrap's; the mounts in it keep their mode).
/// 13. The working directory: the current one when it is inside the project, else the project.
/// 14. A literal `--`, then the command, through agentbox's shim (Ctrl-C back on a terminal,
///     then Landlock: writes only beneath what steps 6-11 made writable), and before it the
///     relay with the filtered network, then `--port`'s helper (`ports`).
pub fn plan(policy: &Policy, facts: &HostFacts) -> Result<Plan> {
    plan_run(policy, facts, None)
}

/// The plan for a run: [`plan`] with the filtered network's run-scoped state (its socket
/// directory and token), without which a filtered plan has no relay.
pub fn plan_run(policy: &Policy, facts: &HostFacts, net: Option<&NetSession>) -> Result<Plan> {
    if facts.bwrap.version < MIN_BWRAP {
        let (a, b, c) = facts.bwrap.version;
        return Err(Fail::hint(
            format!("bwrap {a}.{b}.{c} is too old: agentbox needs 0.6 or later"),
            "upgrade bubblewrap, or pass a newer one with --bwrap PATH",
        )
        .into());
    }
    let features = Features::of(facts.bwrap.version, facts.bwrap.setuid);
    let mut b = Builder {
        steps: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
        prep: Vec::new(),
    };
    check_broad(policy, facts, &mut b)?;
    if policy.net == NetMode::Filtered && facts.bwrap.setuid && facts.user.uid != 0 {
        return Err(Fail::hint(
            format!(
                "--net filtered needs capabilities a setuid bwrap ({}) gives only to root",
                facts.bwrap.path.display()
            ),
            "install a non-setuid bwrap (user namespaces enabled) and pass --bwrap PATH, or \
             use --net none",
        )
        .into());
    }
    if facts.bwrap.setuid {
        b.warnings.push(format!(
            "{} is setuid root: a bwrap bug becomes a root exploit, and tmpfs sizes cannot be set; \
             a non-setuid bwrap with unprivileged user namespaces is safer",
            facts.bwrap.path.display()
        ));
    }
    namespaces(policy, facts, features, &mut b);
    filters(policy, &mut b)?;
    let filtered_net = net.filter(|_| policy.net == NetMode::Filtered);
    environment(policy, facts, filtered_net, &mut b);
    if let Some(n) = filtered_net {
        b.notes.extend(crate::net::broker::describe(&n.broker));
    }
    system(policy, facts, features, &mut b);
    scratch(policy, facts, net, features, &mut b);
    home(facts, features, &mut b);
    ports::plan(&policy.ports, facts.agent.ports_socket.as_deref(), &mut b);
    binds(facts, &mut b);
    protect(facts, &mut b)?;
    mask(facts, features, &mut b);
    b.push(
        Op::RemountRo("/".into()),
        "the sandbox's own root read-only (the mounts in it keep their mode)",
    );
    check_size(&b)?;
    let command = check_command(policy, facts, &b.steps)?;
    let cwd = if facts.user.cwd.starts_with(&facts.project.dir) {
        &facts.user.cwd
    } else {
        &facts.project.dir
    };
    b.push(
        Op::Chdir(cwd.clone()),
        "start where the user is, inside the project",
    );
    if let Some(w) = command.1 {
        b.warnings.push(w);
    }
    // Notes marked "as root:" matter only to root.
    b.notes.extend(
        policy
            .notes
            .iter()
            .filter(|n| facts.user.uid == 0 || !n.contains("as root:"))
            .cloned(),
    );
    let interactive = facts.user.stdin_tty && facts.system.self_exe.is_some();
    let mut argv = command.0;
    if facts.system.self_exe.is_some() {
        argv.splice(0..0, shim(policy, facts, interactive, &mut b));
        if facts.agent.ports_socket.is_some() {
            argv.splice(0..0, ports::helper_argv(&policy.ports, interactive));
        }
    }
    if let (NetMode::Filtered, Some(net)) = (policy.net, net) {
        let relay = network::relay_argv(policy, net, interactive)?;
        argv.splice(0..0, relay);
    }
    if policy.limits.any() {
        b.notes.push(
            "--memory/--pids are enforced by agentbox (a cgroup or a systemd scope); \
             a --dry-run script runs without them"
                .to_owned(),
        );
    }
    Ok(Plan {
        bwrap: facts.bwrap.path.clone(),
        interactive,
        steps: b.steps,
        command: argv,
        prep: b.prep,
        warnings: b.warnings,
        notes: b.notes,
    })
}

/// agentbox's shim, the command's last step inside: Ctrl-C back on a terminal, and Landlock
/// limiting writes to what this plan made writable. Not with nested sandboxes: Landlock
/// forbids every mount, and a nested sandbox is made of mounts.
fn shim(policy: &Policy, facts: &HostFacts, interactive: bool, b: &mut Builder) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![SELF_INSIDE.into(), "__exec".into()];
    if interactive {
        argv.push("--tty".into());
    }
    if policy.allow.nested {
        b.notes.push(
            "--allow-nested: no Landlock (it forbids the mounts a nested sandbox makes); \
             bwrap's mounts are the only wall"
                .to_owned(),
        );
    } else if facts.system.landlock_abi < crate::landlock::MIN_ABI {
        b.notes.push(format!(
            "{} (see agentbox doctor)",
            crate::landlock::describe(facts.system.landlock_abi)
        ));
    } else {
        // Asked for only where the host has it: the shim then refuses to start the command
        // without it, so nothing inside can switch the second wall off quietly.
        argv.push("--landlock".into());
        for p in writable::write_paths(&b.steps, &facts.user.home, policy.allow.debug) {
            argv.push("--write".into());
            argv.push(p.into_os_string());
        }
    }
    argv.push("--".into());
    argv
}

mod agent;
mod command;
mod mounts;
pub(crate) mod network;
mod ports;
mod process;
mod protect;
mod render;
mod toolchain;
pub mod tree;
mod writable;

pub use crate::fds::FdData;
pub use command::{Seen, seen};
use command::{check_command, visible};
use mounts::{binds, home, scratch, system};
use process::{check_broad, environment, filters, namespaces};
use protect::{check_size, mask, protect};
use render::op_args;
pub use render::{FIRST_DATA_FD, script, shell_quote, step_words, to_argv};

#[cfg(test)]
mod tests;
