//! Trial sandboxes: `agentbox run -- true`'s own plan (`bwrap::plan`, with run's default
//! flags, no configuration files, an empty project of the trial's own and the host as run
//! probes it), started for real as the current user with `true` in place of run's command:
//! first without its seccomp programs, then as it is, then run's filtered-network plan with
//! what its relay does inside (uid 0 with a few capabilities, then a nested user namespace
//! that maps the user back). Nothing here lists a namespace or a path: the trial meets what
//! run would meet by construction, and what run would refuse before starting bwrap is an
//! error of `Trials::new`. Each trial has a timeout.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bwrap::{FIRST_DATA_FD, Op, Plan, to_argv};
use crate::cli::SandboxArgs;
use crate::host::{Agent, Bwrap, HostFacts, Project, System, User};
use crate::hostenv::Env;
use crate::policy::Policy;

const TIMEOUT: Duration = Duration::from_secs(10);
/// More of an output than this is not kept (an error is a line or two).
const STDERR_LIMIT: u64 = 64 << 10;
/// How a trial ended: its exit status (None: killed at the timeout), stdout and stderr.
#[derive(Debug)]
pub(super) struct Outcome {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub(super) fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A one-line account of a failure: the first line of stderr, or how it ended.
    pub(super) fn said(&self) -> String {
        match (
            self.status,
            self.stderr.lines().find(|l| !l.trim().is_empty()),
        ) {
            (None, _) => format!("no answer within {} s", TIMEOUT.as_secs()),
            (_, Some(line)) => line.trim().to_owned(),
            (Some(s), None) => format!("exited with {s} and said nothing"),
        }
    }
}

/// Runs `cmd` (its stdout and stderr captured), feeding `data` on fds 3.. as bwrap reads
/// them, and kills it at the timeout.
pub(super) fn run(cmd: &mut Command, data: &[crate::fds::FdData]) -> Result<Outcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = crate::sys::spawn_with_data_fds(cmd, FIRST_DATA_FD, data)
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for a trial sandbox")? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            // Our own child, by its handle; --die-with-parent takes what it started along.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // A process left holding the pipes must not hang the doctor: the threads are left behind.
    let joined = |h: std::thread::JoinHandle<String>| match status {
        Some(_) => h.join().unwrap_or_default(),
        None => String::new(),
    };
    Ok(Outcome {
        stdout: joined(out),
        stderr: joined(err),
        status,
    })
}

/// Reads a pipe to its end on a thread of its own (so a full pipe never blocks the child),
/// keeping the first `STDERR_LIMIT` bytes.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.by_ref().take(STDERR_LIMIT).read_to_end(&mut text);
            let _ = std::io::copy(&mut p, &mut std::io::sink());
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// The policy of `agentbox run -- true` with run's own defaults and no configuration files:
/// the network off, or (with `filtered`) filtered.
fn policy(filtered: bool, project: &Path) -> Result<Policy> {
    use clap::{Args, FromArgMatches};
    let net = if filtered { "filtered" } else { "none" };
    let matches = SandboxArgs::augment_args(clap::Command::new("agentbox-doctor"))
        .try_get_matches_from(["agentbox-doctor", "--net", net])
        .context("the trial's flags")?;
    let args = SandboxArgs::from_arg_matches(&matches).context("the trial's flags")?;
    let mut policy = Policy::new(args, vec!["true".into()], false, Default::default())?;
    policy.project = Some(project.to_owned());
    Ok(policy)
}

/// The host as `agentbox run` probes it, with an empty project of the trial's own and the
/// doctor's bwrap; no terminal (the trial's stdin is not one).
fn facts(policy: &Policy, bwrap: &Bwrap, env: &Env) -> Result<HostFacts> {
    let mut user = User::probe(env)?;
    user.stdin_tty = false;
    let system = System::probe(user.uid)?;
    let project = Project::probe(policy, &user, &system.secrets)?;
    let agent = Agent::probe(policy, &user)?;
    Ok(HostFacts {
        user,
        system,
        project,
        bwrap: bwrap.clone(),
        agent,
        tools: Default::default(),
    })
}

/// Run's own plan for `policy` and `facts` (`bwrap::plan`, nothing added or re-listed), with
/// `command` in place of run's (the shim and the agent), and without its seccomp programs
/// unless `seccomp`.
fn trial_plan(
    policy: &Policy,
    facts: &HostFacts,
    seccomp: bool,
    command: Vec<OsString>,
) -> Result<Plan> {
    let mut plan = crate::bwrap::plan(policy, facts)?;
    if !seccomp {
        plan.steps.retain(|s| !matches!(s.op, Op::Seccomp(_)));
    }
    plan.command = command;
    Ok(plan)
}

/// The canonical host path of a program, when it lies in a system path run binds.
fn program(name: &str, env: &Env) -> Option<PathBuf> {
    let path = std::fs::canonicalize(env.which(std::ffi::OsStr::new(name))?).ok()?;
    crate::host::SYSTEM_PATHS
        .iter()
        .any(|s| path.starts_with(s))
        .then_some(path)
}

fn true_command(env: &Env) -> Vec<OsString> {
    vec![program("true", env).map_or_else(|| "true".into(), PathBuf::into_os_string)]
}

/// An empty project of the trials' own, removed when dropped. Made apart from
/// [`Trials::new`], whose errors are run's refusals: failing to make it is the doctor's.
pub(super) fn project() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("agentbox-doctor-")
        .tempdir()
        .context("creating the trial sandboxes' project directory")
}

/// The trials' common ground: an empty project of their own (removed when dropped), the
/// doctor's bwrap, and the host as run probes it for the network off and filtered.
pub(super) struct Trials {
    _project: tempfile::TempDir,
    bwrap: PathBuf,
    off: (Policy, HostFacts),
    filtered: (Policy, HostFacts),
    /// `true` and util-linux `unshare` as run's sandbox finds them.
    true_cmd: Vec<OsString>,
    unshare: Option<PathBuf>,
}

impl Trials {
    /// Probes the host as `agentbox run -- true` in `project` (from [`project`]) would; an
    /// error is what run would refuse with.
    pub(super) fn new(bwrap: &Bwrap, project: tempfile::TempDir, env: &Env) -> Result<Trials> {
        let probe = |filtered: bool| -> Result<(Policy, HostFacts)> {
            let p = policy(filtered, project.path())?;
            let f = facts(&p, bwrap, env)?;
            Ok((p, f))
        };
        let off = probe(false)?;
        let filtered = probe(true)?;
        // Both plans are made here, so that what run would refuse shows before any trial.
        trial_plan(&off.0, &off.1, true, Vec::new())?;
        trial_plan(&filtered.0, &filtered.1, false, Vec::new())?;
        Ok(Trials {
            _project: project,
            bwrap: bwrap.path.clone(),
            off,
            filtered,
            true_cmd: true_command(env),
            unshare: program("unshare", env),
        })
    }

    fn start(&self, filtered: bool, seccomp: bool, command: Vec<OsString>) -> Result<Outcome> {
        let (policy, facts) = match filtered {
            true => &self.filtered,
            false => &self.off,
        };
        let plan = trial_plan(policy, facts, seccomp, command)?;
        let (argv, data) = to_argv(&plan);
        let mut cmd = Command::new(&self.bwrap);
        cmd.env_clear().args(argv);
        run(&mut cmd, &data)
    }

    /// Run's sandbox, network off, running `true`, without its seccomp programs.
    pub(super) fn minimal(&self) -> Result<Outcome> {
        self.start(false, false, self.true_cmd.clone())
    }

    /// Run's sandbox as it is, seccomp programs loaded by bwrap.
    pub(super) fn with_seccomp(&self) -> Result<Outcome> {
        self.start(false, true, self.true_cmd.clone())
    }

    /// What the filtered network's relay does in run's filtered sandbox: as uid 0 with its
    /// capabilities, a nested user namespace mapping the user's ids back (util-linux
    /// `unshare`). None when there is no `unshare` to try it with.
    pub(super) fn relay(&self, uid: u32, gid: u32) -> Result<Option<Outcome>> {
        let Some(unshare) = self.unshare.clone() else {
            return Ok(None);
        };
        let mut command: Vec<OsString> = vec![
            unshare.into_os_string(),
            "--user".into(),
            format!("--map-user={uid}").into(),
            format!("--map-group={gid}").into(),
        ];
        command.extend(self.true_cmd.iter().cloned());
        self.start(true, false, command).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Candidate;

    const PROJECT: &str = "/tmp/agentbox-doctor-x";

    fn facts(version: (u32, u32, u32)) -> HostFacts {
        HostFacts {
            user: User::fixture("/home/u"),
            system: System::fixture(),
            project: Project::fixture(PROJECT),
            bwrap: Bwrap {
                version,
                ..Bwrap::fixture()
            },
            agent: Agent {
                command: vec![Candidate {
                    path: "/usr/bin/true".into(),
                    canonical: "/usr/bin/true".into(),
                    executable: true,
                }],
                ..Agent::default()
            },
            tools: Default::default(),
        }
    }

    fn strings(plan: &Plan) -> Vec<String> {
        to_argv(plan)
            .0
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn true_cmd() -> Vec<OsString> {
        vec!["/usr/bin/true".into()]
    }

    /// The trial meets what run meets by construction: its argv is `bwrap::plan`'s for the
    /// same policy and facts, the command aside (and, for the first trial, the seccomp
    /// programs aside).
    #[test]
    fn trial_is_runs_plan() {
        for filtered in [false, true] {
            let policy = policy(filtered, Path::new(PROJECT)).unwrap();
            let facts = facts((0, 8, 0));
            let run = crate::bwrap::plan(&policy, &facts).unwrap();
            assert_ne!(
                run.command,
                true_cmd(),
                "run's command is its shim and the agent"
            );
            let as_run = Plan {
                command: true_cmd(),
                ..run.clone()
            };
            let full = trial_plan(&policy, &facts, true, true_cmd()).unwrap();
            assert_eq!(strings(&full), strings(&as_run));
            assert_eq!(
                to_argv(&full).1,
                to_argv(&as_run).1,
                "the same data on the same fds"
            );
            let bare = trial_plan(&policy, &facts, false, true_cmd()).unwrap();
            let seccomp = run
                .steps
                .iter()
                .filter(|s| matches!(s.op, Op::Seccomp(_)))
                .count();
            // Run's network-off plan has seccomp programs; the filtered one's relay loads them.
            assert_eq!(seccomp > 0, !filtered);
            assert_eq!(bare.steps.len(), run.steps.len() - seccomp);
            let no_seccomp = Plan {
                steps: run
                    .steps
                    .iter()
                    .filter(|s| !matches!(s.op, Op::Seccomp(_)))
                    .cloned()
                    .collect(),
                ..as_run
            };
            assert_eq!(strings(&bare), strings(&no_seccomp));
        }
    }

    fn argv(filtered: bool, version: (u32, u32, u32)) -> Vec<String> {
        let policy = policy(filtered, Path::new(PROJECT)).unwrap();
        strings(&trial_plan(&policy, &facts(version), false, vec!["true".into()]).unwrap())
    }

    #[test]
    fn trial_argv() {
        let a = argv(false, (0, 8, 0));
        for ns in [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--unshare-net",
            "--die-with-parent",
            "--new-session",
            "--disable-userns",
        ] {
            assert!(a.contains(&ns.to_owned()), "{ns}");
        }
        assert!(a.windows(2).any(|w| w == ["--cap-drop", "ALL"]));
        assert!(a.windows(2).any(|w| w == ["--proc", "/proc"]));
        assert!(a.windows(2).any(|w| w == ["--dev", "/dev"]));
        assert!(a.windows(3).any(|w| w == ["--ro-bind", "/usr", "/usr"]));
        assert!(a.windows(3).any(|w| w == ["--bind", PROJECT, PROJECT]));
        assert_eq!(a[a.len() - 2..], ["--", "true"]);
        // bwrap 0.6 has no --disable-userns; the relay's trial never has it.
        assert!(!argv(false, (0, 6, 0)).contains(&"--disable-userns".to_owned()));
        let r = argv(true, (0, 8, 0));
        assert!(!r.contains(&"--disable-userns".to_owned()));
        assert!(r.contains(&"--unshare-net".to_owned()));
        assert!(r.windows(4).any(|w| w == ["--uid", "0", "--gid", "0"]));
        assert!(r.windows(2).any(|w| w == ["--cap-add", "CAP_SETFCAP"]));
    }
}
