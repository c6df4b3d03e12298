//! `HostFacts::probe`: the one place that looks at the host for planning. It reads and never
//! writes, one part per concern, each in its own file with its own probe: the user
//! (`user.rs`: ids, environment, home, cwd), the system (`system.rs`: system paths and
//! secrets, kernel), the project (`project.rs`: roots, scan, git), bwrap (`bwrap.rs`: search,
//! version) and the agent (`agent.rs`: command, profile, integrations). Everything it returns
//! is plain data that `bwrap::plan` turns into the argv without further I/O.
//!
//! The rule for everything here: a path or file inside a writable root, or anywhere the sandbox
//! could write in an earlier run (agent homes, runtime directories), is attacker-controlled.
//! Nothing read from there may widen the sandbox, redirect a host-side write, or make the next
//! run's scan see less; what cannot be read or checked is refused (exit 125, with the fix).

pub mod agent;
pub mod bwrap;
pub mod git;
pub mod git_keys;
pub mod gpu;
pub mod project;
pub mod refs;
pub mod registry;
pub mod system;
pub mod toolchain;
pub mod toplevel;
pub mod user;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::Fail;
use crate::hostenv::Env;
use crate::policy::Policy;
pub use agent::{Agent, Candidate};
pub use bwrap::Bwrap;
pub use git::GitRepo;
pub use project::{Project, Root};
pub use system::{SYSTEM_PATHS, SysEntry, System};
pub use toolchain::Tools;
pub use user::User;

/// Everything the planner needs to know about the host, by concern; each part has its own
/// probe (and, for tests, a fixture), so a test builds only the part it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub user: User,
    pub system: System,
    pub project: Project,
    pub bwrap: Bwrap,
    pub agent: Agent,
    /// The toolchains in the home and agentbox's caches for them (none with --no-toolchains).
    pub tools: Tools,
}

impl HostFacts {
    /// Each part: the project's checks and scan, the system, bwrap (which must not be in a
    /// writable root), what the agent needs, the toolchains.
    pub fn probe(policy: &Policy, env: &Env) -> Result<HostFacts> {
        let user = User::probe(env)?;
        // Made when the project's probe asks for the system's masks: after its checks and
        // git's start, before its scan. As root the system's probe walks `/etc` (about 2 ms);
        // that, bwrap's probe and the agent's then run while git reads the configuration
        // (about 1.5 ms, in its own process), instead of before it starts or after it ends.
        // All of them read; none writes.
        let mut meanwhile = None;
        let project = Project::probe_beside(policy, &user, |writable| {
            let system = System::probe(user.uid)?;
            // Not from anywhere the sandbox writes: the project's roots, and agentbox's own
            // areas (agent homes, state, caches, run directories).
            let mut sandboxed = writable.to_vec();
            sandboxed.extend(agentbox_areas(&user));
            let bwrap = Bwrap::find(policy.bwrap.as_deref(), &user.env, &sandboxed)?;
            let agent = Agent::probe(policy, &user)?;
            let secrets = system.linked_sources();
            meanwhile = Some((system, bwrap, agent));
            Ok(secrets)
        })?;
        let (system, bwrap, agent) = meanwhile.context("the system's probe was never asked for")?;
        // A linked worktree's common git directory is known only now, and the sandbox writes
        // it too: checked before bwrap's version is read, which may run it.
        bwrap.refuse_inside(
            &project.linked_commons(),
            "a git directory the sandbox writes",
        )?;
        let bwrap = bwrap.read()?;
        let tools = match policy.toolchains {
            crate::policy::Toolchains::Shown => Tools::probe(&user, &untrusted(&user, &project)),
            crate::policy::Toolchains::Off => Tools::default(),
        };
        Ok(HostFacts {
            user,
            system,
            project,
            bwrap,
            agent,
            tools,
        })
    }
}

/// Where agentbox keeps per-run directories: `$XDG_RUNTIME_DIR/agentbox`, or
/// `/tmp/agentbox-UID`.
pub fn runtime_base(user: &User) -> PathBuf {
    runtime_base_of(&user.env, user.uid)
}

/// `runtime_base` before the user is probed (the run's lock is taken before the probe).
pub fn runtime_base_of(env: &crate::hostenv::Env, uid: u32) -> PathBuf {
    match env.runtime_dir() {
        Some(d) if d.is_dir() => d.join("agentbox"),
        _ => PathBuf::from(format!("/tmp/agentbox-{uid}")),
    }
}

pub(crate) fn canonical(path: &Path, what: &str) -> Result<PathBuf> {
    fs::canonicalize(path).map_err(|e| {
        Fail::hint(
            format!("{what} {}: {e}", crate::rough::shown(path).display()),
            crate::rough::missing_path_hint(path),
        )
        .into()
    })
}

/// Where `path` is or would be made: its nearest existing ancestor resolved, the rest as
/// named (a config the agent has yet to create counts too).
pub(crate) fn resolved(path: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    for dir in path.ancestors() {
        if let Ok(real) = fs::canonicalize(dir) {
            return Some(rest.iter().rev().fold(real, |p, c| p.join(c)));
        }
        rest.push(dir.file_name()?);
    }
    None
}

/// Where the sandbox writes or wrote: the writable roots and agentbox's data directory (agent
/// homes, caches). A toolchain found there is not trusted, nor a tool run on the host.
pub(crate) fn untrusted(user: &User, project: &Project) -> Vec<PathBuf> {
    let mut v = project.writable();
    v.extend(project.linked_commons());
    v.extend(agentbox_areas(user));
    v
}

/// What sandboxes write outside the project: agentbox's data (agent homes, their state, the
/// package caches) as written and canonical, and the per-run directories.
fn agentbox_areas(user: &User) -> Vec<PathBuf> {
    agentbox_areas_of(&user.env, &user.home, user.uid)
}

/// `agentbox_areas` before (or without) the user's probe: `agentbox doctor` applies the same
/// rule.
pub fn agentbox_areas_of(env: &Env, home: &Path, uid: u32) -> Vec<PathBuf> {
    let data = env.data_home(home).join("agentbox");
    let mut v: Vec<PathBuf> = fs::canonicalize(&data).ok().into_iter().collect();
    v.push(data);
    v.push(runtime_base_of(env, uid));
    v
}
