//! `HostFacts::probe`: the one place that looks at the host for planning (environment, $HOME,
//! PATH, the filesystem, bwrap). It reads and never writes. Everything it returns is plain data
//! that `bwrap::plan` turns into the argv without further I/O.
//!
//! The rule for everything here: a path or file inside a writable root, or anywhere the sandbox
//! could write in an earlier run (agent homes, runtime directories), is attacker-controlled.
//! Nothing read from there may widen the sandbox, redirect a host-side write, or make the next
//! run's scan see less; what cannot be read or checked is refused (exit 125, with the fix).

pub mod agent;
pub mod bwrap;
pub mod git;
pub mod git_keys;
pub mod refs;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::error::Fail;
use crate::policy::{Access, Policy};
use crate::rules::SYSTEM_SECRETS;
use crate::secrets::{self, Found, Kind};
pub use bwrap::Bwrap;
pub use git::GitRepo;
use git::kind_at;

/// System paths considered for the read-only root, in mount order.
pub const SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/nix/store",
];

/// How a system path exists on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysEntry {
    Dir(PathBuf),
    /// A symlink: where it is, what it says, and where it ends (canonical).
    Symlink {
        path: PathBuf,
        target: PathBuf,
        canonical: PathBuf,
    },
}

/// A writable root (the project or a `--rw` path) and what its scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub path: PathBuf,
    /// Secrets to mask. Symlinked secrets are already resolved to their (canonical) targets.
    pub secrets: Vec<Found>,
    /// Runs-later entries, as found (a symlink stays a symlink: it cannot be made read-only).
    pub runs_later: Vec<Found>,
    /// The canonical targets of symlinked runs-later entries.
    pub runs_later_targets: Vec<Found>,
    /// Runs-later entries left writable and reported at exit when changed (`Guard::Audit`).
    pub watched: Vec<Found>,
    /// Scripts that the protected entries launch (`refs`): made read-only too.
    pub referenced: Vec<Found>,
    pub git: Vec<git::GitRepo>,
}

/// Where agentbox keeps per-run directories: `$XDG_RUNTIME_DIR/agentbox`, or
/// `/tmp/agentbox-UID`.
pub fn runtime_base(uid: u32) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() && d.is_dir() => d.join("agentbox"),
        _ => PathBuf::from(format!("/tmp/agentbox-{uid}")),
    }
}

/// A place on PATH where the command exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub canonical: PathBuf,
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The effective uid agentbox runs as.
    pub uid: u32,
    /// Its effective gid (given back to the agent by the filtered network's relay).
    pub gid: u32,
    /// Kernel settings under /proc that root owns, as far as this kernel has them.
    pub proc_writable_by_root: Vec<PathBuf>,
    pub home: PathBuf,
    pub cwd: PathBuf,
    pub project: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    pub system: Vec<SysEntry>,
    /// `/run/current-system` on NixOS, where PATH points.
    pub nixos_current_system: Option<PathBuf>,
    /// The canonical target of `/etc/resolv.conf` when it is a symlink.
    pub resolv_conf: Option<PathBuf>,
    /// (source, destination) of the user's git configuration.
    pub git_config: Vec<(PathBuf, PathBuf)>,
    /// `--ro` and `--rw` paths, canonical, in the order given.
    pub extra: Vec<(PathBuf, Access)>,
    /// The project first, then each `--rw` path.
    pub roots: Vec<Root>,
    /// System files masked unreadable (password hashes, host keys; as root, every file of
    /// /etc that others may not read, and private keys there).
    pub system_secrets: Vec<PathBuf>,
    /// System directories masked (as root: those of /etc that others may not read).
    pub system_secret_dirs: Vec<PathBuf>,
    /// Where the command exists on the host, in PATH order.
    pub command: Vec<Candidate>,
    pub bwrap: Bwrap,
    /// Whether stdin is a terminal (decides between `--new-session` and the TIOCSTI filter).
    pub stdin_tty: bool,
    /// The agent's own persistent home, and the state directories to have in it.
    pub agent_home: Option<PathBuf>,
    pub agent_state_dirs: Vec<PathBuf>,
    /// The profile's runtime paths from the real home (canonical, existing).
    pub runtime: Vec<PathBuf>,
    /// What the command needs to start (itself, its interpreter), when a profile is in force.
    pub exposed: Vec<agent::Exposed>,
    pub ssh_agent: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub docker: Option<PathBuf>,
    /// agentbox's own executable (canonical), bound inside: the shim that applies Landlock and
    /// gives Ctrl-C back to the agent, the relay, and `agentbox test`'s probe runner.
    pub self_exe: Option<PathBuf>,
    /// The kernel's Landlock ABI version (0: none).
    pub landlock_abi: u32,
}

impl HostFacts {
    pub fn probe(policy: &Policy) -> Result<HostFacts> {
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let home_raw = std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(dirs::home_dir)
            .context("cannot tell the home directory: HOME is not set")?;
        let home = canonical(&home_raw, "home directory")?;
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let cwd = canonical(&cwd, "current directory")?;
        let project_raw = policy.project.clone().unwrap_or_else(|| cwd.clone());
        let project = canonical(&project_raw, "project directory")?;
        if !project.is_dir() {
            bail!(Fail::hint(
                format!("project {} is not a directory", project.display()),
                "--project DIR names the directory the agent may write",
            ));
        }
        let extra = policy
            .extra
            .iter()
            .map(|e| Ok((canonical(&e.path, "path given to --ro/--rw")?, e.access)))
            .collect::<Result<Vec<_>>>()?;
        // Before the scan below: a project such as $HOME is refused without walking it first.
        crate::broad::refuse_broad(policy.allow_broad_project, &project, &extra, &home)?;
        let matcher = secrets::Matcher::new(policy.hide_secrets, &policy.hide, &policy.unhide)?;
        let writable: Vec<&Path> = std::iter::once(project.as_path())
            .chain(
                extra
                    .iter()
                    .filter(|e| e.1 == Access::ReadWrite)
                    .map(|e| e.0.as_path()),
            )
            .collect();
        let path_var = std::env::var_os("PATH");
        let writable_roots: Vec<PathBuf> = writable.iter().map(|p| p.to_path_buf()).collect();
        let git_host = git::GitHost::find(&home, path_var.as_deref(), &writable_roots);
        let me = fs::metadata("/proc/self").context("reading /proc/self")?;
        let uid = std::os::unix::fs::MetadataExt::uid(&me);
        let system_secrets = system_secrets(SYSTEM_SECRETS.iter().map(Path::new), uid == 0);
        // A hard link in a writable root to a masked system file (root can make one to
        // /etc/shadow) is that file by another name: the scan masks it too.
        let linked: Vec<(u64, u64)> = system_secrets
            .files
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .filter(|m| std::os::unix::fs::MetadataExt::nlink(m) > 1)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            })
            .collect();
        // git reads the top repositories' configuration while the scan runs.
        let early: Vec<git::Reads> = writable
            .iter()
            .map(|r| git::start_early(r, &git_host))
            .collect();
        let reports = secrets::scan_roots(&writable, &matcher, &linked)?;
        let mut roots: Vec<Root> = writable
            .iter()
            .zip(reports)
            .zip(early)
            .map(|((r, report), early)| probe_root(r, report, &git_host, early))
            .collect();
        let all: Vec<PathBuf> = writable.iter().map(|p| p.to_path_buf()).collect();
        for r in &mut roots {
            let items: Vec<Found> = r
                .runs_later
                .iter()
                .chain(&r.runs_later_targets)
                .filter(|f| f.kind != Kind::Symlink)
                .cloned()
                .collect();
            r.referenced = refs::referenced(&r.path, &items, &all);
        }
        let xdg_config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"));
        // Git's settings, file by file: the XDG directory can also hold `credentials`
        // (credential-store's token file), which must stay outside.
        let xdg_git = xdg_config.join("git");
        let inside_git = home.join(".config/git");
        let git_config = [
            (home.join(".gitconfig"), home.join(".gitconfig")),
            (xdg_git.join("config"), inside_git.join("config")),
            (xdg_git.join("ignore"), inside_git.join("ignore")),
            (xdg_git.join("attributes"), inside_git.join("attributes")),
        ]
        .into_iter()
        .filter_map(|(src, dest)| Some((fs::canonicalize(src).ok()?, dest)))
        .collect();
        let bwrap = Bwrap::probe(
            policy.bwrap.as_deref(),
            path_var.as_deref(),
            &writable_roots,
        )?;
        let stdin_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
        let gid = std::os::unix::fs::MetadataExt::gid(&me);
        // Always: agentbox's shim is the command's last step inside (Landlock, Ctrl-C).
        let self_exe = Some(
            std::env::current_exe()
                .and_then(fs::canonicalize)
                .context("finding agentbox's own executable")?,
        );
        let agent_home = policy
            .agent_home
            .then(|| agent::home_dir(&home, &policy.profile.name));
        let agent_state_dirs = match &agent_home {
            Some(h) => policy
                .profile
                .state
                .iter()
                .filter(|s| s.ends_with('/'))
                .map(|s| h.join(s.trim_end_matches('/')))
                .collect(),
            None => Vec::new(),
        };
        let exposed = match policy.profile.name.is_empty() || policy.bind_self {
            true => Vec::new(),
            false => agent::runtime_of(&policy.command[0], path_var.as_deref()),
        };
        let ssh_agent = policy.ssh_agent.then(agent::ssh_agent_socket).transpose()?;
        let known_hosts = fs::canonicalize(home.join(".ssh/known_hosts"))
            .ok()
            .filter(|_| policy.ssh_agent);
        Ok(HostFacts {
            runtime: agent::runtime_paths(&home, &policy.profile.runtime),
            agent_home,
            agent_state_dirs,
            exposed,
            ssh_agent,
            known_hosts,
            docker: policy.docker.then(agent::docker_socket).transpose()?,
            uid,
            gid,
            proc_writable_by_root: ["/proc/sys", "/proc/sysrq-trigger"]
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect(),
            stdin_tty,
            self_exe,
            landlock_abi: crate::landlock::abi(),
            command: if policy.bind_self && policy.command[0] == crate::inside::SELF_INSIDE {
                // agentbox itself, bound inside by the plan.
                let inside = PathBuf::from(crate::inside::SELF_INSIDE);
                vec![Candidate {
                    canonical: inside.clone(),
                    path: inside,
                    executable: true,
                }]
            } else {
                find_command(&policy.command[0], path_var.as_deref(), &cwd)
            },
            system: SYSTEM_PATHS.iter().filter_map(|p| sys_entry(p)).collect(),
            nixos_current_system: fs::read_link("/run/current-system").ok(),
            resolv_conf: fs::symlink_metadata("/etc/resolv.conf")
                .is_ok_and(|m| m.file_type().is_symlink())
                .then(|| fs::canonicalize("/etc/resolv.conf").ok())
                .flatten(),
            system_secrets: system_secrets.files,
            system_secret_dirs: system_secrets.dirs,
            home,
            cwd,
            project,
            env,
            git_config,
            extra,
            roots,
            bwrap,
        })
    }

    /// The host value of an environment variable.
    pub fn var(&self, name: &OsStr) -> Option<&OsStr> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }
}

/// The system files and directories to mask.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SystemSecrets {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

/// The files to mask for these system secrets: each regular file, and for a symlink (a host
/// key linked to persistent storage) the file it ends at, since masking the link itself would
/// mount over its target only where bwrap resolves it, and leaving it would show the key. As
/// root (who reads everything through the read-only `/etc`), also what `etc_secrets` finds.
fn system_secrets<'a>(paths: impl Iterator<Item = &'a Path>, root: bool) -> SystemSecrets {
    let mut out = SystemSecrets {
        files: paths
            .filter_map(|p| match fs::symlink_metadata(p).ok()? {
                m if m.is_file() => Some(p.to_owned()),
                m if m.file_type().is_symlink() => fs::canonicalize(p)
                    .ok()
                    .filter(|t| fs::metadata(t).is_ok_and(|m| m.is_file())),
                _ => None,
            })
            .collect(),
        dirs: Vec::new(),
    };
    if root {
        let found = secrets::etc_secrets(Path::new("/etc"));
        out.files.extend(found.files);
        out.dirs.extend(found.dirs);
    }
    out.files.sort();
    out.files.dedup();
    out.dirs.sort();
    out.dirs.dedup();
    // A file inside a masked directory is hidden with it.
    let dirs = out.dirs.clone();
    out.files.retain(|f| !dirs.iter().any(|d| f.starts_with(d)));
    out
}

fn canonical(path: &Path, what: &str) -> Result<PathBuf> {
    fs::canonicalize(path).map_err(|e| {
        Fail::hint(
            format!("{what} {}: {e}", path.display()),
            "check the path exists and is spelled as intended",
        )
        .into()
    })
}

fn sys_entry(p: &str) -> Option<SysEntry> {
    let path = PathBuf::from(p);
    match kind_at(&path)? {
        Kind::Dir => Some(SysEntry::Dir(path)),
        Kind::Symlink => Some(SysEntry::Symlink {
            target: fs::read_link(&path).ok()?,
            canonical: fs::canonicalize(&path).ok()?,
            path,
        }),
        _ => None,
    }
}

/// Follows a symlinked entry to its canonical target; `None` when it dangles.
fn resolve(found: &Found) -> Option<Found> {
    let target = fs::canonicalize(&found.path).ok()?;
    let kind = kind_at(&target)?;
    Some(Found {
        why: format!("{} (target of symlink {})", found.why, found.path.display()),
        path: target,
        kind,
    })
}

fn probe_root(
    root: &Path,
    report: secrets::Report,
    git_host: &git::GitHost,
    early: git::Reads,
) -> Root {
    let secrets = report
        .secrets
        .into_iter()
        .filter_map(|f| match f.kind {
            Kind::Symlink => resolve(&f),
            _ => Some(f),
        })
        .collect();
    let runs_later_targets = report
        .runs_later
        .iter()
        .filter(|f| f.kind == Kind::Symlink)
        .filter_map(resolve)
        .collect();
    Root {
        path: root.to_owned(),
        secrets,
        runs_later: report.runs_later,
        runs_later_targets,
        watched: report.watched,
        referenced: Vec::new(),
        git: git::probe_all(&report.git, git_host, early),
    }
}

fn find_command(name: &OsStr, path_var: Option<&OsStr>, cwd: &Path) -> Vec<Candidate> {
    let candidate = |path: PathBuf| -> Option<Candidate> {
        let meta = fs::metadata(&path).ok()?;
        if !meta.is_file() {
            return None;
        }
        Some(Candidate {
            canonical: fs::canonicalize(&path).ok()?,
            executable: meta.permissions().mode() & 0o111 != 0,
            path,
        })
    };
    if name.as_bytes().contains(&b'/') {
        return candidate(cwd.join(name)).into_iter().collect();
    }
    let Some(path_var) = path_var else {
        return Vec::new();
    };
    std::env::split_paths(path_var)
        .filter(|d| d.is_absolute())
        .filter_map(|d| candidate(d.join(name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_secrets_behind_symlinks_are_masked_at_their_target() {
        let dir = std::env::temp_dir().join(format!("agentbox-syssec-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("persist")).unwrap();
        fs::write(dir.join("shadow"), "x").unwrap();
        fs::write(dir.join("persist/key"), "k").unwrap();
        std::os::unix::fs::symlink(dir.join("persist/key"), dir.join("host_key")).unwrap();
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("dangling")).unwrap();
        fs::create_dir(dir.join("a_dir")).unwrap();
        let names = ["shadow", "host_key", "dangling", "a_dir", "absent"];
        let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        let found = system_secrets(paths.iter().map(PathBuf::as_path), false).files;
        let dir_c = fs::canonicalize(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        // A plain file as itself (the control), a link at its target; nothing else.
        let mut want = vec![dir.join("shadow"), dir_c.join("persist/key")];
        want.sort();
        assert_eq!(found, want);
    }
}
