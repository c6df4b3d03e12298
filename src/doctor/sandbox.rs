//! Trial sandboxes: the smallest sandbox agentbox would build (its own namespaces, network
//! included; the system read-only; a fresh /proc and /dev), started for real as the current
//! user with `true` inside, then the same with agentbox's seccomp programs, then what the
//! filtered network's relay does inside (uid 0 with a few capabilities, then a nested user
//! namespace that maps the user back). Each has a timeout. The steps are agentbox's own `Op`s,
//! spelled by `to_argv`, so the trial says what `agentbox run` would meet.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bwrap::{Builder, FIRST_DATA_FD, Features, Op, Plan, Step, to_argv};
use crate::host::Bwrap;

const TIMEOUT: Duration = Duration::from_secs(10);
/// More of an output than this is not kept (an error is a line or two).
const STDERR_LIMIT: u64 = 64 << 10;
/// The system paths the trial binds: the ones `run` binds, less /etc and /opt (what `true`
/// and `unshare` need, on merged-/usr distributions, split ones and NixOS alike).
fn system_paths() -> impl Iterator<Item = &'static str> {
    crate::host::SYSTEM_PATHS
        .iter()
        .copied()
        .filter(|p| !matches!(*p, "/etc" | "/opt"))
}

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

fn step(op: Op) -> Step {
    Step {
        op,
        why: "agentbox doctor".to_owned(),
    }
}

/// The system, read-only, as agentbox shows it: directories bound, merged-/usr links as the
/// same links.
fn system() -> Vec<Op> {
    system_paths()
        .map(Path::new)
        .filter_map(|p| {
            let meta = std::fs::symlink_metadata(p).ok()?;
            match meta.file_type().is_symlink() {
                true => Some(Op::Symlink {
                    target: std::fs::read_link(p).ok()?,
                    link: p.to_owned(),
                }),
                false if meta.is_dir() => Some(Op::RoBind(p.to_owned())),
                false => None,
            }
        })
        .collect()
}

/// The namespaces and process settings of `agentbox run` with the network off (or, with
/// `relay`, filtered: no `--disable-userns`, uid 0 and the relay's capabilities).
fn namespaces(features: Features, relay: bool) -> Vec<Step> {
    let mut b = Builder {
        steps: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
        prep: Vec::new(),
    };
    for op in [
        Op::UnshareUser,
        Op::UnsharePid,
        Op::UnshareIpc,
        Op::UnshareUts,
        Op::UnshareCgroupTry,
        Op::UnshareNet,
        Op::DieWithParent,
        Op::NewSession,
        Op::CapDropAll,
    ] {
        b.steps.push(step(op));
    }
    match relay {
        true => crate::bwrap::network::privileges(&mut b),
        false if features.disable_userns => b.steps.push(step(Op::DisableUserns)),
        false => {}
    }
    b.steps
}

/// The canonical host path of a program, when it lies where the trial binds the system.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::fs::canonicalize(which::which(name).ok()?).ok()?;
    system_paths().any(|s| path.starts_with(s)).then_some(path)
}

/// Builds the trial's plan: namespaces, `extra` steps (seccomp programs), the system, /proc,
/// /dev, then the command.
fn plan(bwrap: &Bwrap, relay: bool, extra: Vec<Step>, command: Vec<OsString>) -> Plan {
    let features = Features::of(bwrap.version, bwrap.setuid);
    let mut steps = namespaces(features, relay);
    steps.extend(extra);
    steps.extend(system().into_iter().map(step));
    steps.push(step(Op::Proc("/proc".into())));
    steps.push(step(Op::Dev("/dev".into())));
    Plan {
        bwrap: bwrap.path.clone(),
        interactive: false,
        steps,
        command,
        prep: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
    }
}

fn start(plan: &Plan) -> Result<Outcome> {
    let (argv, data) = to_argv(plan);
    let mut cmd = Command::new(&plan.bwrap);
    cmd.env_clear().args(argv);
    run(&mut cmd, &data)
}

fn true_command() -> Vec<OsString> {
    vec![program("true").map_or_else(|| "true".into(), PathBuf::into_os_string)]
}

/// The smallest sandbox `agentbox run` would build, network off, running `true`.
pub(super) fn minimal(bwrap: &Bwrap) -> Result<Outcome> {
    start(&plan(bwrap, false, Vec::new(), true_command()))
}

/// The same, with agentbox's seccomp programs loaded by bwrap.
pub(super) fn with_seccomp(bwrap: &Bwrap) -> Result<Outcome> {
    let programs = crate::seccomp::programs(Default::default())?;
    let extra = programs
        .into_iter()
        .map(|p| step(Op::Seccomp(p.bytes)))
        .collect();
    start(&plan(bwrap, false, extra, true_command()))
}

/// What the filtered network's relay does: inside, as uid 0 with its capabilities, a nested
/// user namespace mapping the user's ids back (util-linux `unshare`). None when there is no
/// `unshare` to try it with.
pub(super) fn relay(bwrap: &Bwrap, uid: u32, gid: u32) -> Result<Option<Outcome>> {
    let Some(unshare) = program("unshare") else {
        return Ok(None);
    };
    let mut command: Vec<OsString> = vec![
        unshare.into_os_string(),
        "--user".into(),
        format!("--map-user={uid}").into(),
        format!("--map-group={gid}").into(),
    ];
    command.extend(true_command());
    start(&plan(bwrap, true, Vec::new(), command)).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(relay: bool, version: (u32, u32, u32)) -> Vec<String> {
        let bwrap = Bwrap {
            path: "/usr/bin/bwrap".into(),
            version,
            setuid: false,
        };
        let p = plan(&bwrap, relay, Vec::new(), vec!["true".into()]);
        to_argv(&p)
            .0
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn trial_argv() {
        let a = argv(false, (0, 8, 0));
        let head = [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--unshare-net",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--disable-userns",
        ];
        assert_eq!(a[..head.len()], head);
        assert_eq!(
            a[a.len() - 6..],
            ["--proc", "/proc", "--dev", "/dev", "--", "true"]
        );
        assert!(a.windows(3).any(|w| w == ["--ro-bind", "/usr", "/usr"]));
        // bwrap 0.6 has no --disable-userns; the relay's trial never has it.
        assert!(!argv(false, (0, 6, 0)).contains(&"--disable-userns".to_owned()));
        let r = argv(true, (0, 8, 0));
        assert!(!r.contains(&"--disable-userns".to_owned()));
        assert!(r.windows(4).any(|w| w == ["--uid", "0", "--gid", "0"]));
        assert!(r.windows(2).any(|w| w == ["--cap-add", "CAP_SETFCAP"]));
    }
}
