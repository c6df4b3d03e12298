//! From `Policy` and `HostFacts` to the bubblewrap argv: `plan()` decides every step and its
//! reason, `to_argv()` spells it in bwrap's options, `script()` prints it for `--dry-run`. All
//! three are pure: no I/O, no environment, no clock.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, Fail};
use crate::host::{Candidate, HostFacts, SysEntry};
use crate::policy::{Access, EnvPass, NetMode, Policy};
use crate::rules::{ENV_ALLOWED_PREFIXES, ENV_ALLOWLIST, PINNED_PARENTS};
use crate::seccomp;
use crate::secrets::{Found, Kind};

/// Where `agentbox test` finds agentbox itself inside the sandbox.
pub const SELF_INSIDE: &str = "/run/agentbox/agentbox";

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
    Tmpfs {
        dest: PathBuf,
        size: Option<u64>,
    },
    RemountRo(PathBuf),
    /// An empty, read-only file over `dest` (`--ro-bind-data FD`, FD reading /dev/null).
    EmptyFile(PathBuf),
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
/// A masked directory is read-only: it needs no room at all.
const MASK_SIZE: u64 = 4096;

/// Why a project (or `--rw`) path is too broad to hand to the agent, if it is.
pub fn too_broad(path: &Path, home: &Path) -> Option<&'static str> {
    const SYSTEM: &[&str] = &[
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/nix",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/snap",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/var",
        "/var/tmp",
        "/home",
        "/usr/local",
    ];
    const NEVER_INSIDE: &[&str] = &["/proc", "/sys", "/dev", "/boot"];
    if path == Path::new("/") {
        Some("it is the root of the filesystem")
    } else if path == home {
        Some("it is your home directory, with your keys and shell startup files")
    } else if home.starts_with(path) {
        Some("it contains your home directory")
    } else if SYSTEM.iter().any(|s| path == Path::new(s)) {
        Some("it is a system directory")
    } else if NEVER_INSIDE.iter().any(|s| path.starts_with(s)) {
        Some("it is inside a kernel or boot filesystem")
    } else {
        None
    }
}

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
///     and net unless the host network was asked for.
///  2. Process: die with the parent, a new terminal session when stdin is not a terminal,
///     every capability dropped, nested user namespaces disabled (bwrap 0.8+), and the seccomp
///     programs (see `seccomp.rs`).
///  3. Environment: cleared, then the allowlist and each `--env`.
///  4. System, read-only: `/usr`; `/bin`, `/sbin`, `/lib*` as the same symlinks as on the host
///     (merged /usr) or as binds; `/etc`; `/opt` and `/nix/store` when present.
///  5. A fresh `/proc` for the new pid namespace and a minimal `/dev`; when started as root,
///     `/proc/sys` and `/proc/sysrq-trigger` read-only (root owns them even without
///     capabilities).
///  6. Empty tmpfs on `/tmp`, `/var/tmp` and `/run`; then, inside `/run`, NixOS's
///     `current-system` link and, with the host network, the real target of `/etc/resolv.conf`.
///  7. `$HOME`: an empty tmpfs, then `~/.gitconfig` and `~/.config/git` read-only.
///  8. The project read-write, the `--ro`/`--rw` paths, and the common git dir of a worktree
///     project, all at their real paths, parents before children.
///  9. Pins: `.git` and `.claude` directories bound onto themselves, so the agent cannot rename
///     them away and put a fresh copy in their place.
/// 10. Files the host runs later, read-only (after creating a missing `.git/hooks`, as git does).
/// 11. Secrets masked: a file becomes an empty read-only file, a directory an empty read-only
///     tmpfs; the system's own secrets (`/etc/shadow`...) too.
/// 12. The sandbox's own root read-only (a tmpfs of bwrap's; the mounts in it keep their mode).
/// 13. The working directory: the current one when it is inside the project, else the project.
/// 14. A literal `--`, then the command.
pub fn plan(policy: &Policy, facts: &HostFacts) -> Result<Plan> {
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
    if policy.net == NetMode::Filtered && facts.bwrap.setuid && facts.uid != 0 {
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
    environment(policy, facts, &mut b);
    system(facts, &mut b);
    scratch(policy, facts, features, &mut b);
    home(facts, features, &mut b);
    binds(facts, &mut b);
    protect(facts, &mut b)?;
    mask(facts, features, &mut b);
    b.push(
        Op::RemountRo("/".into()),
        "the sandbox's own root read-only (the mounts in it keep their mode)",
    );
    check_size(&b)?;
    let command = check_command(policy, facts, &b.steps)?;
    let cwd = if facts.cwd.starts_with(&facts.project) {
        &facts.cwd
    } else {
        &facts.project
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
            .filter(|n| facts.uid == 0 || !n.contains("as root:"))
            .cloned(),
    );
    let interactive = facts.stdin_tty && facts.self_exe.is_some();
    let mut argv = command.0;
    if let (NetMode::Filtered, Some(net)) = (policy.net, &facts.net) {
        let relay = crate::net::plan::relay_argv(policy, net, interactive)?;
        argv.splice(0..0, relay);
    } else if interactive {
        let shim = [SELF_INSIDE, "__exec", "--"].map(OsString::from);
        argv.splice(0..0, shim);
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

fn check_broad(policy: &Policy, facts: &HostFacts, b: &mut Builder) -> Result<()> {
    let writable = std::iter::once(("project", &facts.project)).chain(
        facts
            .extra
            .iter()
            .filter(|e| e.1 == Access::ReadWrite)
            .map(|e| ("--rw path", &e.0)),
    );
    for (what, path) in writable {
        let Some(why) = too_broad(path, &facts.home) else {
            continue;
        };
        let message = format!("refusing {what} {}: {why}", path.display());
        if !policy.allow_broad_project {
            return Err(Fail::hint(
                message,
                "cd into the project directory, or pass --project DIR \
                 (--allow-broad-project overrides this check)",
            )
            .into());
        }
        b.warnings.push(format!(
            "{message}; going ahead because of --allow-broad-project"
        ));
    }
    Ok(())
}

fn namespaces(policy: &Policy, facts: &HostFacts, f: Features, b: &mut Builder) {
    b.push(
        Op::UnshareUser,
        "own user namespace: no privileges over the host",
    );
    b.push(
        Op::UnsharePid,
        "own pid namespace: host processes are invisible",
    );
    b.push(
        Op::UnshareIpc,
        "own IPC namespace: no host shared memory or semaphores",
    );
    b.push(Op::UnshareUts, "own hostname");
    b.push(
        Op::Hostname("agentbox"),
        "a hostname that says where you are",
    );
    b.push(
        Op::UnshareCgroupTry,
        "own cgroup view where the kernel supports it",
    );
    match policy.net {
        NetMode::None => b.push(
            Op::UnshareNet,
            "own empty network namespace: no network, no host abstract sockets",
        ),
        NetMode::Host => b.notes.push(
            "the host network is shared (--allow-net): the agent can reach any host".to_owned(),
        ),
        NetMode::Filtered => b.push(
            Op::UnshareNet,
            "own network namespace: the only way out is agentbox's proxy, by allowlist",
        ),
    }
    b.push(
        Op::DieWithParent,
        "the sandbox dies when agentbox's parent does",
    );
    // --new-session stops TIOCSTI typing into the parent terminal, but it also detaches the
    // terminal, so a full-screen program never hears of a window resize. On a terminal the
    // seccomp filter refuses TIOCSTI instead.
    if !facts.stdin_tty {
        b.push(
            Op::NewSession,
            "no terminal: a new session, so nothing can type into a parent terminal",
        );
    }
    b.push(Op::CapDropAll, "no capabilities, even when started as root");
    if policy.net == NetMode::Filtered {
        crate::net::plan::privileges(b);
        return;
    }
    if f.disable_userns && !policy.allow.nested {
        b.push(
            Op::DisableUserns,
            "no nested user namespaces, enforced by the kernel as well as by seccomp",
        );
    }
}

fn filters(policy: &Policy, b: &mut Builder) -> Result<()> {
    if policy.allow.debug {
        b.notes.push(
            "--allow-debug: ptrace, process_vm_readv/writev and perf_event_open are allowed; \
             the agent can read and change the memory of any process in the sandbox"
                .to_owned(),
        );
    }
    if policy.allow.nested {
        b.notes.push(
            "--allow-nested: user namespaces and mounts are allowed inside; more of the \
             kernel is reachable, and a kernel bug there is a way out"
                .to_owned(),
        );
    }
    if policy.net == NetMode::Filtered {
        // agentbox's relay loads the programs itself, after its network setup.
        return Ok(());
    }
    for p in seccomp::programs(policy.allow)? {
        b.push(Op::Seccomp(p.bytes), format!("seccomp: {}", p.why));
    }
    Ok(())
}

fn environment(policy: &Policy, facts: &HostFacts, b: &mut Builder) {
    b.push(
        Op::ClearEnv,
        "start from an empty environment: tokens stay outside",
    );
    let mut vars: Vec<(Op, &str)> = Vec::new();
    let mut set = |name: OsString, value: OsString, from_host: bool, why: &'static str| {
        let op = Op::SetEnv {
            name,
            value,
            from_host,
        };
        let same = |o: &Op| matches!((o, &op), (Op::SetEnv { name: a, .. }, Op::SetEnv { name: b, .. }) if a == b);
        match vars.iter_mut().find(|v| same(&v.0)) {
            Some(v) => *v = (op, why),
            None => vars.push((op, why)),
        }
    };
    for name in ENV_ALLOWLIST {
        if let Some(v) = facts.var(OsStr::new(name)) {
            set(
                name.into(),
                v.to_owned(),
                true,
                "allowlisted: terminal, locale or identity",
            );
        }
    }
    let mut locale: Vec<_> = facts
        .env
        .iter()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            ENV_ALLOWED_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect();
    locale.sort();
    for (k, v) in locale {
        set(k.clone(), v.clone(), true, "allowlisted: locale");
    }
    set(
        "HOME".into(),
        facts.home.clone().into_os_string(),
        false,
        "the (empty) home, at its real path",
    );
    if facts.var(OsStr::new("PATH")).is_none() {
        set(
            "PATH".into(),
            "/usr/local/bin:/usr/bin:/bin".into(),
            false,
            "the host has no PATH: a standard one",
        );
    }
    if agent::needs_shims(facts) {
        let mut path = OsString::from(agent::SHIM_DIR);
        if let Some(host) = facts.var(OsStr::new("PATH")) {
            path.push(":");
            path.push(host);
        }
        set(
            "PATH".into(),
            path,
            false,
            "the shim directory first: the agent's executables, where the sandbox shows them",
        );
    }
    if facts.ssh_agent.is_some() {
        set(
            "SSH_AUTH_SOCK".into(),
            agent::SSH_AGENT_INSIDE.into(),
            false,
            "--ssh-agent",
        );
    }
    if let Some(sock) = &facts.docker {
        let mut v = OsString::from("unix://");
        v.push(sock);
        set("DOCKER_HOST".into(), v, false, "--docker");
    }
    if policy.net == NetMode::Filtered {
        for (name, value, why) in crate::net::plan::proxy_env(&policy.filter.rules) {
            set(name.into(), value.into(), false, why);
        }
    }
    for pass in &policy.env {
        match pass {
            EnvPass::Inherit(name) => match facts.var(name) {
                Some(v) => set(name.clone(), v.to_owned(), true, "--env"),
                None => b.warnings.push(format!(
                    "--env {}: not set on the host, so not set inside",
                    name.to_string_lossy()
                )),
            },
            EnvPass::Set(name, value) => set(name.clone(), value.clone(), false, "--env"),
            EnvPass::IfSet(name) => {
                if let Some(v) = facts.var(name) {
                    set(
                        name.clone(),
                        v.to_owned(),
                        true,
                        "the profile's key or endpoint",
                    );
                }
            }
        }
    }
    for (op, why) in vars {
        b.push(op, why);
    }
}

fn system(facts: &HostFacts, b: &mut Builder) {
    let bound: Vec<&Path> = facts
        .system
        .iter()
        .filter_map(|e| match e {
            SysEntry::Dir(p) => Some(p.as_path()),
            SysEntry::Symlink { .. } => None,
        })
        .collect();
    for entry in &facts.system {
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
    if facts.uid == 0 {
        // Started by root, the sandbox still owns root's files: with no capability at all it
        // could write /proc/sys/kernel/core_pattern (a command the host runs as root on the
        // next crash) or register a binfmt handler. Cover them read-only.
        for p in &facts.proc_writable_by_root {
            b.push(
                Op::RoBind(p.clone()),
                "started as root: host kernel settings read-only",
            );
        }
    }
}

fn scratch(policy: &Policy, facts: &HostFacts, f: Features, b: &mut Builder) {
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
    if let Some(exe) = &facts.self_exe {
        b.push(
            Op::RoBindAt {
                src: exe.clone(),
                dest: SELF_INSIDE.into(),
            },
            "agentbox itself, read-only (the probe runner, or the Ctrl-C shim on a terminal)",
        );
    }
    if let (NetMode::Filtered, Some(net)) = (policy.net, &facts.net) {
        crate::net::plan::files(net, facts.resolv_conf.as_deref(), b);
    }
    if let Some(target) = &facts.nixos_current_system {
        b.push(
            Op::Symlink {
                target: target.clone(),
                link: "/run/current-system".into(),
            },
            "NixOS: PATH leads through this link into /nix/store",
        );
    }
    if let (NetMode::Host, Some(resolv)) = (policy.net, &facts.resolv_conf)
        && !resolv.starts_with("/etc")
    {
        b.push(
            Op::RoBind(resolv.clone()),
            "the real /etc/resolv.conf, which is a symlink to here: name lookups work",
        );
    }
}

fn home(facts: &HostFacts, f: Features, b: &mut Builder) {
    let tmpfs = Op::Tmpfs {
        dest: facts.home.clone(),
        size: f.tmpfs_size.then_some(TMP_SIZE),
    };
    agent::home(facts, tmpfs, b);
    for (src, dest) in &facts.git_config {
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
}

fn binds(facts: &HostFacts, b: &mut Builder) {
    let mut binds: Vec<(&Path, Access, String)> = vec![(
        &facts.project,
        Access::ReadWrite,
        "the project, read-write".to_owned(),
    )];
    for (path, access) in &facts.extra {
        let flag = match access {
            Access::ReadOnly => "--ro",
            Access::ReadWrite => "--rw",
        };
        binds.push((path, *access, flag.to_owned()));
    }
    let writable: Vec<&Path> = facts.roots.iter().map(|r| r.path.as_path()).collect();
    for repo in facts.roots.iter().flat_map(|r| &r.git) {
        // Only a linked worktree whose git dir names this .git file back, and never a broad
        // directory: a planted `gitdir: ..` must not make the home writable.
        let Some(common) = &repo.linked_common else {
            continue;
        };
        let project_git = repo.dot_git.parent() == Some(facts.project.as_path());
        if project_git
            && !writable.iter().any(|w| common.starts_with(w))
            && too_broad(common, &facts.home).is_none()
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

/// bwrap refuses more than 9000 arguments (`MAX_ARGS`); each mask takes three. Say so, with
/// the fix, instead of letting bwrap fail with its own exit status.
fn check_size(b: &Builder) -> Result<()> {
    const BWRAP_MAX_ARGS: usize = 9000;
    const MARGIN: usize = 500; // the command's own arguments and agentbox's later additions
    let count: usize = b.steps.iter().map(|s| op_args(&s.op, 0).0.len()).sum();
    if count + MARGIN > BWRAP_MAX_ARGS {
        let masks = b
            .steps
            .iter()
            .filter(|s| matches!(s.op, Op::EmptyFile(_)))
            .count();
        return Err(Fail::hint(
            format!(
                "the sandbox needs {count} bwrap arguments ({masks} masked files), more than \
                 bwrap accepts"
            ),
            "--unhide the test fixtures that are not secrets, e.g. --unhide 'testdata/*.pem'",
        )
        .into());
    }
    Ok(())
}

/// Is `path` inside a writable root (where the agent could change it)?
fn in_writable(facts: &HostFacts, steps: &[Step], path: &Path) -> bool {
    facts.roots.iter().any(|r| path.starts_with(&r.path))
        || steps
            .iter()
            .any(|s| matches!(&s.op, Op::Bind(p) if path.starts_with(p)))
}

fn protect(facts: &HostFacts, b: &mut Builder) -> Result<()> {
    let mut ro: Vec<(PathBuf, String)> = Vec::new();
    let mut create: Vec<PathBuf> = Vec::new();
    let mut pins: BTreeSet<PathBuf> = BTreeSet::new();
    let mut symlinks: Vec<&Path> = Vec::new();
    for root in &facts.roots {
        for f in root.runs_later.iter().chain(&root.runs_later_targets) {
            match f.kind {
                Kind::Symlink => symlinks.push(&f.path),
                _ => ro.push((f.path.clone(), f.why.clone())),
            }
        }
        for repo in &root.git {
            if let Some(a) = repo.anomalies.first() {
                return Err(Fail::hint(
                    format!("refusing to start: {a}"),
                    "look at it with the agent stopped, and fix or remove it",
                )
                .into());
            }
            if repo.dot_git_kind == Kind::Dir {
                pins.insert(repo.dot_git.clone());
            }
            for (path, kind, why) in &repo.entries {
                match kind {
                    Some(Kind::Symlink) => symlinks.push(path),
                    Some(_) => ro.push((path.clone(), (*why).to_owned())),
                    None if path.ends_with("hooks") => {
                        create.push(path.clone());
                        ro.push((path.clone(), format!("{why} (created empty, as git does)")));
                    }
                    None => {}
                }
            }
            for (path, why) in &repo.config_paths {
                if !in_writable(facts, &b.steps, path) {
                    continue;
                }
                if !path.exists() {
                    return Err(Fail::hint(
                        format!(
                            "refusing to start: {why} names {}, which does not exist: the \
                             agent could create it, and git on the host would obey it",
                            path.display()
                        ),
                        format!("create it first (mkdir -p or touch {})", path.display()),
                    )
                    .into());
                }
                ro.push((path.clone(), format!("named by {why}")));
            }
        }
    }
    ro.retain(|(p, _)| in_writable(facts, &b.steps, p));
    // Only what agentbox protects is created, and only inside a writable root.
    create.retain(|p| in_writable(facts, &b.steps, p));
    b.prep.extend(create.into_iter().map(Prep::CreateDir));
    for (p, _) in &ro {
        for parent in p.ancestors().skip(1) {
            let named = parent
                .file_name()
                .is_some_and(|n| PINNED_PARENTS.iter().any(|x| n == *x));
            if named && in_writable(facts, &b.steps, parent) {
                pins.insert(parent.to_owned());
            }
        }
    }
    for p in pins {
        b.push(
            Op::Bind(p),
            "pinned (a mount point): cannot be renamed away and replaced",
        );
    }
    ro.sort();
    ro.dedup_by(|a, b| a.0 == b.0);
    for (p, why) in ro {
        b.push(Op::RoBind(p), format!("read-only: {why}"));
    }
    for link in symlinks {
        b.warnings.push(format!(
            "{} is a symlink: it is not followed, but it cannot be made read-only either; \
             replace it with a regular file or directory",
            link.display()
        ));
    }
    Ok(())
}

fn mask(facts: &HostFacts, f: Features, b: &mut Builder) {
    let mut masked: Vec<&Found> = Vec::new();
    for root in &facts.roots {
        for s in &root.secrets {
            // A symlinked secret was resolved to its target: mask that only where the sandbox
            // would show it; elsewhere it dangles inside.
            if visible(&b.steps, &s.path) {
                masked.push(s);
            }
        }
    }
    masked.sort_by(|a, b| a.path.cmp(&b.path));
    masked.dedup_by(|a, b| a.path == b.path || a.path.starts_with(&b.path));
    for s in &masked {
        let why = format!("masked: {}", s.why);
        match s.kind {
            Kind::Dir => {
                b.push(
                    Op::Tmpfs {
                        dest: s.path.clone(),
                        size: f.tmpfs_size.then_some(MASK_SIZE),
                    },
                    why,
                );
                b.push(Op::RemountRo(s.path.clone()), "masked directory: read-only");
            }
            _ => b.push(Op::EmptyFile(s.path.clone()), why),
        }
    }
    if !masked.is_empty() {
        let names: Vec<String> = masked
            .iter()
            .take(5)
            .map(|s| {
                s.path
                    .strip_prefix(&facts.project)
                    .unwrap_or(&s.path)
                    .display()
                    .to_string()
            })
            .collect();
        let more = masked.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        b.notes.push(format!(
            "masking {} secret path(s): {}{more} (--unhide GLOB shows one, --dry-run lists all)",
            masked.len(),
            names.join(", ")
        ));
    }
    for p in &facts.system_secrets {
        b.push(
            Op::EmptyFile(p.clone()),
            "masked: password hashes and host keys, readable by uid 0",
        );
    }
}

/// How a host path appears inside, by replaying the mount steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Visible,
    Masked,
    Absent,
}

/// What the sandbox shows at `path`, judged from the steps (the last mount covering it wins).
pub fn seen(steps: &[Step], path: &Path) -> Seen {
    seen_depth(steps, path, 0)
}

fn seen_depth(steps: &[Step], path: &Path, depth: u8) -> Seen {
    for step in steps.iter().rev() {
        match &step.op {
            Op::RoBind(d)
            | Op::Bind(d)
            | Op::RoBindAt { dest: d, .. }
            | Op::BindAt { dest: d, .. }
            | Op::DataFile { dest: d, .. }
                if path.starts_with(d) =>
            {
                return Seen::Visible;
            }
            Op::Tmpfs { dest, .. } | Op::Proc(dest) | Op::Dev(dest) if path.starts_with(dest) => {
                return if path == dest {
                    Seen::Visible
                } else {
                    Seen::Absent
                };
            }
            Op::EmptyFile(d) if path.starts_with(d) => return Seen::Masked,
            Op::Symlink { target, link } if path.starts_with(link) && depth < 8 => {
                let base = link.parent().unwrap_or(Path::new("/"));
                let rest = path.strip_prefix(link).unwrap_or(Path::new(""));
                let resolved = base.join(target).join(rest);
                return seen_depth(steps, &normalize(&resolved), depth + 1);
            }
            _ => {}
        }
    }
    Seen::Absent
}

fn visible(steps: &[Step], path: &Path) -> bool {
    seen(steps, path) == Seen::Visible
}

/// Removes `.` and `..` lexically (symlink targets like `usr/bin` joined onto `/`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Resolves the command as the sandbox's execvp will (first visible executable on PATH), and
/// says so before launching when the host would have run something else.
fn check_command(
    policy: &Policy,
    facts: &HostFacts,
    steps: &[Step],
) -> Result<(Vec<OsString>, Option<String>)> {
    let name = policy.command[0].to_string_lossy().into_owned();
    // Exposed through the shim directory (the profile's executables).
    if agent::needs_shims(facts)
        && facts
            .exposed
            .first()
            .is_some_and(|e| e.name == policy.command[0])
    {
        return Ok((policy.command.clone(), None));
    }
    let usable = |c: &Candidate| visible(steps, &c.path) && visible(steps, &c.canonical);
    let first_exec = facts.command.iter().find(|c| c.executable);
    let inside = facts.command.iter().find(|c| c.executable && usable(c));
    let hint_for = |c: &Candidate| {
        let mut dirs = vec![c.path.parent().unwrap_or(&c.path).to_owned()];
        let target_dir = c.canonical.parent().unwrap_or(&c.canonical).to_owned();
        if !dirs.contains(&target_dir) {
            dirs.push(target_dir);
        }
        dirs.iter()
            .map(|d| format!("--ro {}", shell_quote(d.as_os_str())))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (first_exec, inside) {
        (_, Some(run)) => {
            let warn = first_exec.filter(|f| f.path != run.path).map(|f| {
                format!(
                    "on the host `{name}` is {}, which the sandbox cannot see; inside it runs {} \
                     (add {} to run the host's)",
                    f.path.display(),
                    run.path.display(),
                    hint_for(f)
                )
            });
            Ok((policy.command.clone(), warn))
        }
        (Some(host), None) => Err(Fail::with_code(
            EXIT_NOT_FOUND,
            format!(
                "`{name}` is {}, which the sandbox cannot see (the home is empty inside)",
                if host.path == host.canonical {
                    host.path.display().to_string()
                } else {
                    format!("{} -> {}", host.path.display(), host.canonical.display())
                }
            ),
            Some(format!("agentbox run {} -- {name} ...", hint_for(host))),
        )
        .into()),
        (None, None) if !facts.command.is_empty() => Err(Fail::with_code(
            EXIT_NOT_EXECUTABLE,
            format!("`{name}` is not executable"),
            Some(format!(
                "chmod +x {}",
                shell_quote(facts.command[0].path.as_os_str())
            )),
        )
        .into()),
        (None, None) => Err(Fail::with_code(
            EXIT_NOT_FOUND,
            format!("`{name}`: command not found"),
            Some("check the name, or that its directory is on PATH".to_owned()),
        )
        .into()),
    }
}

/// What bwrap reads from a data fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdData<'a> {
    /// Nothing (an empty masked file).
    Empty,
    /// These bytes (a seccomp program).
    Bytes(&'a [u8]),
}

/// bwrap's argv for the plan (without the program name), and what each data fd it reads must
/// hold: the steps that need one read fds 3, 4, ... in order.
pub fn to_argv(plan: &Plan) -> (Vec<OsString>, Vec<FdData<'_>>) {
    let mut argv: Vec<OsString> = Vec::new();
    let mut fds = Vec::new();
    for step in &plan.steps {
        let (opts, fd) = op_args(&step.op, FIRST_DATA_FD + fds.len() as i32);
        fds.extend(fd);
        argv.extend(opts);
    }
    argv.push("--".into());
    argv.extend(plan.command.iter().cloned());
    (argv, fds)
}

/// The first fd number `EmptyFile` steps read.
pub const FIRST_DATA_FD: i32 = 3;

/// One step as the words `--dry-run` prints (data fds shown as `FD`), for `-v`.
pub fn step_words(op: &Op) -> Vec<String> {
    let (args, data) = op_args(op, 0);
    args.iter()
        .map(|a| shell_quote(a))
        .map(|w| {
            if data.is_some() && w == "0" {
                "FD".to_owned()
            } else {
                w
            }
        })
        .collect()
}

/// The options for one op, and what the data fd `fd` must hold when it reads one.
fn op_args(op: &Op, fd: i32) -> (Vec<OsString>, Option<FdData<'_>>) {
    let p = |s: &Path| s.as_os_str().to_owned();
    let o = |s: &str| OsString::from(s);
    let v = match op {
        Op::UnshareUser => vec![o("--unshare-user")],
        Op::UnsharePid => vec![o("--unshare-pid")],
        Op::UnshareIpc => vec![o("--unshare-ipc")],
        Op::UnshareUts => vec![o("--unshare-uts")],
        Op::UnshareCgroupTry => vec![o("--unshare-cgroup-try")],
        Op::UnshareNet => vec![o("--unshare-net")],
        Op::Hostname(h) => vec![o("--hostname"), o(h)],
        Op::DieWithParent => vec![o("--die-with-parent")],
        Op::NewSession => vec![o("--new-session")],
        Op::CapDropAll => vec![o("--cap-drop"), o("ALL")],
        Op::DisableUserns => vec![o("--disable-userns")],
        Op::Uid0 => vec![o("--uid"), o("0"), o("--gid"), o("0")],
        Op::CapAdd(cap) => vec![o("--cap-add"), o(cap)],
        Op::BindAt { src, dest } => vec![o("--bind"), p(src), p(dest)],
        Op::DataFile { dest, bytes } => {
            let args = vec![o("--ro-bind-data"), o(&fd.to_string()), p(dest)];
            return (args, Some(FdData::Bytes(bytes)));
        }
        Op::Seccomp(bytes) => {
            let args = vec![o("--add-seccomp-fd"), o(&fd.to_string())];
            return (args, Some(FdData::Bytes(bytes)));
        }
        Op::ClearEnv => vec![o("--clearenv")],
        Op::SetEnv { name, value, .. } => vec![o("--setenv"), name.clone(), value.clone()],
        Op::RoBind(d) => vec![o("--ro-bind"), p(d), p(d)],
        Op::Bind(d) => vec![o("--bind"), p(d), p(d)],
        Op::RoBindAt { src, dest } => vec![o("--ro-bind"), p(src), p(dest)],
        Op::Symlink { target, link } => vec![o("--symlink"), p(target), p(link)],
        Op::Proc(d) => vec![o("--proc"), p(d)],
        Op::Dev(d) => vec![o("--dev"), p(d)],
        Op::Tmpfs { dest, size } => {
            let mut v = Vec::new();
            if let Some(s) = size {
                v.extend([o("--size"), o(&s.to_string())]);
            }
            v.extend([o("--tmpfs"), p(dest)]);
            v
        }
        Op::RemountRo(d) => vec![o("--remount-ro"), p(d)],
        Op::EmptyFile(d) => {
            let args = vec![o("--ro-bind-data"), o(&fd.to_string()), p(d)];
            return (args, Some(FdData::Empty));
        }
        Op::Chdir(d) => vec![o("--chdir"), p(d)],
    };
    (v, None)
}

/// Quotes for a POSIX-ish shell; bytes that are not UTF-8 or not printable use bash's `$'...'`.
pub fn shell_quote(s: &OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    match s.to_str() {
        Some(t) if !t.chars().any(char::is_control) => shell_words::quote(t).into_owned(),
        _ => {
            let mut out = String::from("$'");
            for &byte in s.as_bytes() {
                match byte {
                    b'\'' | b'\\' => {
                        out.push('\\');
                        out.push(byte as char);
                    }
                    0x20..=0x7e => out.push(byte as char),
                    _ => out.push_str(&format!("\\x{byte:02x}")),
                }
            }
            out.push('\'');
            out
        }
    }
}

fn is_shell_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The plan as a bash script a user can read, save and run without agentbox.
pub fn script(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("#!/usr/bin/env bash\n");
    // `env -i`: bwrap's own pid 1 inside keeps the environment bwrap started with, readable in
    // /proc/1/environ; --clearenv cleans only the command's.
    out.push_str("# The sandbox `agentbox run` would start, as a bwrap command.\n");
    out.push_str("# Each option carries its reason. Run this file with bash to start it.\n");
    out.push_str("set -euo pipefail\n");
    for w in &plan.warnings {
        out.push_str(&format!("# warning: {}\n", w.replace('\n', " ")));
    }
    for prep in &plan.prep {
        match prep {
            Prep::CreateDir(d) => out.push_str(&format!(
                "mkdir -p -- {}  # as git does: else the agent could create it with hooks\n",
                shell_quote(d.as_os_str())
            )),
            Prep::CreateHome { dir, subdirs } => {
                let all: Vec<String> = std::iter::once(dir)
                    .chain(subdirs)
                    .map(|d| shell_quote(d.as_os_str()))
                    .collect();
                out.push_str(&format!(
                    "mkdir -p -m 700 -- {}  # the agent's own home\n",
                    all.join(" ")
                ));
            }
        }
    }
    out.push_str("args=(\n");
    let mut fd = FIRST_DATA_FD;
    let mut redirects = Vec::new();
    for step in &plan.steps {
        let (opts, data) = op_args(&step.op, fd);
        match data {
            Some(FdData::Empty) => redirects.push(format!("{fd}</dev/null")),
            Some(FdData::Bytes(bytes)) => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                redirects.push(format!("{fd}< <(base64 -d <<<'{b64}')"));
            }
            None => {}
        }
        fd += i32::from(data.is_some());
        let mut words: Vec<String> = opts.iter().map(|w| shell_quote(w)).collect();
        if let Op::SetEnv {
            name,
            from_host: true,
            ..
        } = &step.op
            && let Some(n) = name.to_str().filter(|n| is_shell_name(n))
        {
            words[2] = format!("\"${{{n}-}}\"");
        }
        let why = step.why.replace('\n', " ");
        out.push_str(&format!("  {}  # {}\n", words.join(" "), why));
    }
    out.push_str(")\n");
    for n in &plan.notes {
        out.push_str(&format!("# note: {}\n", n.replace('\n', " ")));
    }
    if plan.interactive {
        out.push_str(
            "trap '' INT QUIT  # Ctrl-C is for the agent: bwrap ignores it, the shim restores it\n",
        );
    }
    let cmd: Vec<String> = plan.command.iter().map(|w| shell_quote(w)).collect();
    let mut line = format!(
        "exec env -i {} \"${{args[@]}}\" -- {}",
        shell_quote(plan.bwrap.as_os_str()),
        cmd.join(" ")
    );
    for r in redirects {
        line.push_str(" \\\n  ");
        line.push_str(&r);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

mod agent;
pub mod tree;

#[cfg(test)]
mod tests;
