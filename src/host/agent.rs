//! Host facts for agent profiles: the agent's own persistent home, the runtime paths of the
//! real home it reads, what its executable needs to run (the binary or script it resolves to,
//! and the interpreter named by a `#!` line, one level at a time), and the sockets of the
//! opt-in integrations; where the command is on PATH. Reads, never writes.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::User;
use crate::error::Fail;
use crate::hostenv::Env;
use crate::inside::SELF_INSIDE;
use crate::policy::{Handed, Home, Policy};

/// What the agent's profile and command need from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    /// Where the command exists on the host, in PATH order.
    pub command: Vec<Candidate>,
    /// The agent's own persistent home, and the state directories to have in it.
    pub home: Option<PathBuf>,
    pub state_dirs: Vec<PathBuf>,
    /// The profile's runtime paths from the real home (canonical, existing).
    pub runtime: Vec<PathBuf>,
    /// What the command needs to start (itself, its interpreter), when a profile is in force.
    pub exposed: Vec<Exposed>,
    pub ssh_agent: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub docker: Option<PathBuf>,
    /// `--ssh-agent` filtered: where agentbox's filtering agent will listen (made at launch).
    pub ssh_proxy: Option<crate::sshagent::Proxy>,
    /// `--docker` filtered: where agentbox's Docker filter will listen (made at launch).
    pub docker_proxy: Option<PathBuf>,
    /// `--gpu`: what the host has.
    pub gpu: Option<super::gpu::Gpu>,
    /// `--port`: where agentbox's socket for the published ports will listen (made at launch).
    pub ports_socket: Option<PathBuf>,
}

impl Agent {
    pub fn probe(policy: &Policy, user: &User) -> Result<Agent> {
        let home = &user.home;
        let agent_home = (policy.home == Home::Agent).then(|| home_dir(user, &policy.profile.name));
        let state_dirs = match &agent_home {
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
            false => runtime_of(&policy.command[0], &user.env),
        };
        let ssh_agent = policy
            .hands(Handed::SshAgent)
            .then(|| ssh_agent_socket(&user.env))
            .transpose()?;
        let known_hosts = fs::canonicalize(home.join(".ssh/known_hosts"))
            .ok()
            .filter(|_| policy.hands(Handed::SshAgent));
        Ok(Agent {
            runtime: runtime_paths(home, &policy.profile.runtime),
            home: agent_home,
            state_dirs,
            exposed,
            ssh_proxy: match (&ssh_agent, &policy.ssh_filter) {
                (Some(upstream), Some(filter)) => Some(crate::sshagent::Proxy {
                    socket: crate::sshagent::serve::socket_path(&super::runtime_base(user)),
                    upstream: upstream.clone(),
                    filter: filter.clone(),
                    askpass: match filter.confirm {
                        true => Some(askpass(&user.env)?),
                        false => None,
                    },
                    host_keys: host_keys(&filter.hosts, known_hosts.as_deref())?,
                }),
                _ => None,
            },
            docker_proxy: (policy.hands(Handed::Docker) && policy.docker_filtered)
                .then(|| crate::docker::serve::socket_path(&super::runtime_base(user))),
            gpu: match policy.gpu {
                true => Some(gpu_or_refuse()?),
                false => None,
            },
            ports_socket: (!policy.ports.is_empty())
                .then(|| crate::ports::serve::socket_path(&super::runtime_base(user))),
            ssh_agent,
            known_hosts,
            docker: policy
                .hands(Handed::Docker)
                .then(|| docker_socket(&user.env))
                .transpose()?,
            command: if policy.bind_self && policy.command[0] == SELF_INSIDE {
                // agentbox itself, bound inside by the plan.
                let inside = PathBuf::from(SELF_INSIDE);
                vec![Candidate {
                    canonical: inside.clone(),
                    path: inside,
                    executable: true,
                }]
            } else {
                find_command(&policy.command[0], &user.env, &user.cwd)
            },
        })
    }
}

/// A place on PATH where the command exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub canonical: PathBuf,
    pub executable: bool,
}

fn find_command(name: &OsStr, env: &Env, cwd: &Path) -> Vec<Candidate> {
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
    env.path_dirs()
        .into_iter()
        .filter_map(|d| candidate(d.join(name)))
        .collect()
}

/// An executable the sandbox must be able to start, and where it really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// The name it is run by (a PATH lookup finds it in agentbox's shim directory).
    pub name: OsString,
    /// Where the host's PATH finds it.
    pub path: PathBuf,
    /// The real file.
    pub canonical: PathBuf,
}

/// `$XDG_DATA_HOME/agentbox/home/PROFILE`: the home the agent gets, persistent.
pub fn home_dir(user: &User, profile: &str) -> PathBuf {
    user.env
        .data_home(&user.home)
        .join("agentbox/home")
        .join(profile)
}

/// The interpreter a `#!` line names: an absolute path, or a name `env` looks up.
fn interpreter(file: &Path, env: &Env) -> Option<(OsString, PathBuf)> {
    let mut head = [0u8; 256];
    let n = std::io::Read::read(&mut fs::File::open(file).ok()?, &mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let first = Path::new(OsStr::from_bytes(words.next()?));
    if first.file_name() == Some(OsStr::new("env")) {
        let name = words.find(|w| !w.starts_with(b"-"))?;
        let name = OsStr::from_bytes(name);
        return Some((name.to_owned(), env.which(name)?));
    }
    Some((first.file_name()?.to_owned(), first.to_owned()))
}

/// The command and its interpreters (up to three levels), as found on the host.
pub fn runtime_of(command: &OsStr, env: &Env) -> Vec<Exposed> {
    let mut out = Vec::new();
    let first = if command.as_bytes().contains(&b'/') {
        None
    } else {
        env.which(command).map(|p| (command.to_owned(), p))
    };
    let mut next = first;
    while let Some((name, path)) = next.take() {
        let Ok(canonical) = fs::canonicalize(&path) else {
            break;
        };
        if out.iter().any(|e: &Exposed| e.canonical == canonical) || out.len() >= 4 {
            break;
        }
        next = interpreter(&canonical, env);
        out.push(Exposed {
            name,
            path,
            canonical,
        });
    }
    out
}

/// The canonical paths of a profile's runtime entries that exist in the real home. An entry
/// that resolves to the home itself, a directory holding it, or anything else too broad to
/// show (`~/.nvm` a symlink to `~` or `/`) is left out: a profile shows what it names, never
/// more.
pub fn runtime_paths(home: &Path, entries: &[String]) -> Vec<PathBuf> {
    entries
        .iter()
        .filter_map(|e| fs::canonicalize(home.join(e.trim_end_matches('/'))).ok())
        .filter(|p| crate::broad::too_broad_to_show(p, home).is_none())
        .collect()
}

/// The host's GPUs, for `--gpu`: none found is an error, not an empty hand-over.
fn gpu_or_refuse() -> Result<super::gpu::Gpu> {
    let g = super::gpu::probe();
    match g.is_empty() {
        false => Ok(g),
        true => Err(Fail::hint(
            "--gpu: no GPU device found (no /dev/nvidia*, /dev/dri or /dev/kfd)",
            "load the GPU driver, or run without --gpu",
        )
        .into()),
    }
}

/// The host key fingerprints of `ssh_hosts`, names looked up in `known_hosts`.
fn host_keys(hosts: &[String], known_hosts: Option<&Path>) -> Result<Vec<String>> {
    let text = known_hosts
        .and_then(|p| fs::read_to_string(p).ok())
        .unwrap_or_default();
    crate::sshagent::hosts::resolve(hosts, &text).map_err(|h| {
        Fail::hint(
            format!(
                "--ssh-host: no key for {} in ~/.ssh/known_hosts",
                crate::text::printable_str(&h)
            ),
            "connect once with ssh to record it, or name its host key by fingerprint \
             (ssh-keygen -lf of the key)",
        )
        .into()
    })
}

/// The program `ssh_confirm` asks through: `$SSH_ASKPASS`, an executable file.
fn askpass(env: &Env) -> Result<PathBuf> {
    let p = env.var("SSH_ASKPASS").map(PathBuf::from);
    match p.as_deref().map(fs::canonicalize) {
        Some(Ok(p)) if fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) => Ok(p),
        _ => Err(Fail::hint(
            "--ssh-confirm: no program to ask with (SSH_ASKPASS is unset or not an executable)",
            "set SSH_ASKPASS to an askpass program (ssh-askpass, ksshaskpass...), or drop ssh_confirm",
        )
        .into()),
    }
}

/// The user's ssh-agent socket, for `--ssh-agent`.
pub fn ssh_agent_socket(env: &Env) -> Result<PathBuf> {
    let sock = env.var("SSH_AUTH_SOCK").map(PathBuf::from);
    match sock.as_deref().map(fs::canonicalize) {
        Some(Ok(p)) if fs::metadata(&p).is_ok_and(|m| m.file_type().is_socket()) => Ok(p),
        _ => Err(Fail::hint(
            "--ssh-agent: no ssh-agent socket (SSH_AUTH_SOCK is unset or not a socket)",
            "start one and add your key: eval \"$(ssh-agent)\" && ssh-add",
        )
        .into()),
    }
}

/// The Docker socket, for `--docker`: `DOCKER_HOST=unix://...`, else the standard path.
pub fn docker_socket(env: &Env) -> Result<PathBuf> {
    let from_env = env
        .var("DOCKER_HOST")
        .and_then(OsStr::to_str)
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from));
    let path = from_env.unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
    match fs::canonicalize(&path) {
        Ok(p) if fs::metadata(&p).is_ok_and(|m| m.file_type().is_socket()) => Ok(p),
        _ => Err(Fail::hint(
            format!("--docker: no Docker socket at {}", path.display()),
            "start Docker, or set DOCKER_HOST=unix:///path/to/docker.sock",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn exe(p: &Path, content: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn follows_links_and_interpreters() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        // An npm-style global install: bin/claude -> ../lib/node_modules/pkg/cli.js, run by
        // `#!/usr/bin/env node` with node beside it.
        let prefix = base.join("nvm/v20");
        exe(&prefix.join("bin/node"), "\x7fELF");
        exe(
            &prefix.join("lib/node_modules/pkg/cli.js"),
            "#!/usr/bin/env node\n",
        );
        symlink("../lib/node_modules/pkg/cli.js", prefix.join("bin/claude")).unwrap();
        let path = std::env::join_paths([prefix.join("bin")]).unwrap();
        let env = Env::new(vec![("PATH".into(), path)], &base);
        let got = runtime_of(OsStr::new("claude"), &env);
        let names: Vec<_> = got
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["claude", "node"]);
        assert_eq!(got[0].canonical, prefix.join("lib/node_modules/pkg/cli.js"));
        assert_eq!(got[1].canonical, prefix.join("bin/node"));
        assert!(runtime_of(OsStr::new("missing"), &env).is_empty());
    }

    #[test]
    fn a_runtime_entry_that_resolves_to_the_home_is_left_out() {
        let t = tempfile::tempdir().unwrap();
        let home = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(home.join(".cargo")).unwrap();
        symlink(&home, home.join(".nvm")).unwrap();
        symlink("/", home.join(".bun")).unwrap();
        let entries = [".nvm", ".bun", ".cargo/"].map(String::from);
        assert_eq!(runtime_paths(&home, &entries), [home.join(".cargo")]);
    }
}
