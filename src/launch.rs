//! Starts the planned sandbox: the host preparations git would do, the fds bwrap reads, then
//! bwrap. agentbox always stays as bwrap's parent: to run the filtered network's proxy, to
//! remove the cgroup it made for `--memory`/`--pids`, and in every case to audit at exit what
//! the agent did to the files the host runs later (`audit`). The exit status is the command's.
//!
//! The rule for everything here: a path or file inside a writable root, or anywhere the sandbox
//! could write in an earlier run (agent homes, runtime directories), is attacker-controlled.
//! Nothing read from there may widen the sandbox, redirect a host-side write, or make the next
//! run's scan see less; what cannot be read or checked is refused (exit 125, with the fix).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::audit;
use crate::bwrap::{FIRST_DATA_FD, Plan, Prep, to_argv};
use crate::host::HostFacts;
use crate::hostfs::{self, Untrusted};
use crate::limits::{self, Enforcer};
use crate::net::session::{self, NetSession};
use crate::policy::{NetMode, Policy, Secrets};
use crate::sys;

/// Runs the plan, waits for it, audits, and returns the command's exit code.
/// The filtered network's run-scoped state, for a filtered run: made here, after the host's
/// facts and before the plan (which binds its socket and writes its token).
pub fn net_session(policy: &Policy, facts: &HostFacts) -> Result<Option<NetSession>> {
    if policy.net != NetMode::Filtered {
        return Ok(None);
    }
    let runtime = crate::host::runtime_base(&facts.user);
    let mut net = NetSession::new(&runtime, facts.user.uid, facts.user.gid)?;
    net.broker = crate::net::broker::routes(
        &policy.credentials,
        |v| {
            facts
                .user
                .var(std::ffi::OsStr::new(v))
                .map(ToOwned::to_owned)
        },
        crate::net::broker::random_phantom,
    )?;
    Ok(Some(net))
}

pub fn run(
    plan: &Plan,
    policy: &Policy,
    facts: &HostFacts,
    net: Option<&NetSession>,
) -> Result<ExitCode> {
    // Whatever agentbox inherited (a `3</` from the caller, a leaked pipe) must not reach bwrap.
    sys::cloexec_inherited()?;
    let areas = untrusted(facts);
    // `--port`: first, so a taken host port is refused before anything else is made.
    let ports = crate::ports::serve::for_run(
        &policy.ports,
        facts.agent.ports_socket.as_deref(),
        facts.user.uid,
        &areas,
    )?;
    prepare(plan, &areas)?;
    // `--ssh-agent`'s filter: its socket must exist before bwrap binds it (and is checked below).
    let ssh =
        crate::sshagent::serve::for_run(facts.agent.ssh_proxy.as_ref(), facts.user.uid, &areas)?;
    let docker = crate::docker::serve::for_run(docker_proxy(facts), facts.user.uid, &areas)?;
    mount_paths_hold(plan, &areas)?;
    let enforcer = match policy.limits.any() {
        true => Some(limits::enforce(&policy.limits, facts.user.uid)?),
        false => None,
    };
    let prefix = match &enforcer {
        Some(Enforcer::Systemd(p)) => p.clone(),
        _ => Vec::new(),
    };
    let filtered = matches!((net, policy.net), (Some(_), NetMode::Filtered));
    let pending = match net {
        Some(n) if filtered => Some(session::prepare(
            n,
            &policy.filter,
            &areas,
            &facts.user.cwd,
            crate::pickup::refresher(&policy.filter),
        )?),
        _ => None,
    };
    // Before the agent can touch anything: the hashes of what the launch scan found.
    let before = audit::Snapshot::start(facts);
    if filtered {
        // The proxy holds two fds per tunnel.
        sys::raise_nofile_to_hard();
    }
    let leftovers = crate::homeclean::before(plan, facts.agent.home.as_deref(), &areas);
    // Everything planning needed is built; the run may last hours.
    sys::release_free_heap();
    let (status, net) = supervise(plan, &prefix, pending)?;
    if let Some(l) = leftovers {
        l.finish(&areas);
    }
    // While the cgroup still exists: an OOM kill is said in one line, not left as a bare 137.
    if let Some(line) = limits::exit_note(enforcer.as_ref(), &policy.limits, status) {
        eprintln!("agentbox: {line}");
    }
    drop(enforcer);
    let summary = net.and_then(session::Running::finish);
    let raw = crate::error::raw_code(status);
    if let Some(line) =
        crate::net::hint::after_exit(raw, policy.net == NetMode::None, summary.as_ref())
    {
        eprintln!("{line}");
    }
    if let Some(s) = ssh {
        s.finish();
    }
    if let Some(d) = docker {
        d.finish();
    }
    if let Some(p) = ports {
        p.finish();
    }
    let code = crate::error::exit_code(status);
    // bwrap is reaped and its cgroup and proxy are gone: from here on a signal is for agentbox
    // itself, and the audit below must end at Ctrl-C or `kill` like any program (ignored or
    // still caught by the forwarder's handler, it would not). A failure to restore is said.
    if let Err(e) = sys::default_terminations() {
        eprintln!("agentbox: warning: {e:#}");
    }
    // The audit never changes the exit code: a failure to finish it is said, not returned.
    let matcher = crate::secrets::Matcher::new(
        policy.secrets == Secrets::Hidden,
        &policy.hide,
        &policy.unhide,
    );
    let audited = matcher
        .and_then(|m| audit::finish(&before, facts, &m, policy.audit_json.as_deref(), &areas));
    if let Err(e) = audited {
        let msg = format!("agentbox: warning: the exit audit failed: {e:#}");
        eprintln!("{}", crate::text::terminal(&msg));
    }
    Ok(code)
}

/// `--docker`'s filter, when the plan binds one: its socket, the daemon's, and the host paths
/// containers may bind (the writable roots, canonical).
fn docker_proxy(facts: &HostFacts) -> Option<crate::docker::Proxy> {
    let (Some(socket), Some(upstream)) = (&facts.agent.docker_proxy, &facts.agent.docker) else {
        return None;
    };
    let roots = facts
        .project
        .roots
        .iter()
        .filter_map(|r| fs::canonicalize(&r.path).ok())
        .collect();
    Some(crate::docker::Proxy {
        socket: socket.clone(),
        upstream: upstream.clone(),
        roots,
    })
}

/// The common git dirs of linked worktrees in the writable roots (bound read-write).
pub fn linked_commons(facts: &HostFacts) -> Vec<PathBuf> {
    facts.project.linked_commons()
}

/// No path bwrap mounts at or from passes through a symlink the sandbox could have planted
/// (see `hostfs::no_symlink_below_area`).
fn mount_paths_hold(plan: &Plan, areas: &Untrusted) -> Result<()> {
    use crate::bwrap::Op;
    let mut seen = std::collections::BTreeSet::new();
    for step in &plan.steps {
        let paths: Vec<&Path> = match &step.op {
            Op::Bind(p)
            | Op::DevBind(p)
            | Op::RoBind(p)
            | Op::EmptyFile(p)
            | Op::UnreadableFile(p)
            | Op::RemountRo(p) => vec![p],
            Op::Tmpfs { dest, .. } | Op::DataFile { dest, .. } => vec![dest],
            Op::BindAt { src, dest } | Op::RoBindAt { src, dest } => vec![src, dest],
            _ => Vec::new(),
        };
        for p in paths {
            crate::hostfs::no_symlink_below_area(p, areas, &mut seen)?;
        }
    }
    Ok(())
}

/// Where the sandbox can write, now or in an earlier run: the writable roots, agentbox's data
/// directory (the agent homes) and the runtime directory. No host-side write follows a
/// symlink there.
pub fn untrusted(facts: &HostFacts) -> Untrusted {
    let mut areas: Vec<PathBuf> = facts.project.roots.iter().map(|r| r.path.clone()).collect();
    // A linked worktree's common git dir is bound read-write for git: the sandbox writes it.
    areas.extend(linked_commons(facts));
    // Every profile's home is `DATA/agentbox/home/NAME`: all of `DATA/agentbox`, whichever
    // profile this run uses (another profile's home was writable in its own runs).
    let any_home = crate::host::agent::home_dir(&facts.user, "any");
    areas.extend(any_home.parent().and_then(Path::parent).map(Path::to_owned));
    areas.extend(facts.agent.home.iter().cloned());
    // (The filtered network's socket directory is in it.)
    areas.push(crate::host::runtime_base(&facts.user));
    Untrusted::new(areas)
}

fn prepare(plan: &Plan, areas: &Untrusted) -> Result<()> {
    for prep in &plan.prep {
        match prep {
            Prep::CreateDir(dir) => hostfs::create_dir(dir, 0o755, areas)?,
            Prep::CreateHome { dir, subdirs } => {
                for d in std::iter::once(dir).chain(subdirs) {
                    hostfs::create_dir_all(d, 0o700, areas)?;
                }
            }
            Prep::CreateCache(dir) => hostfs::create_dir_all(dir, 0o700, areas)?,
        }
    }
    Ok(())
}

/// bwrap with `argv` (from `to_argv`), under `prefix` if any, and whether it needs our
/// environment (systemd-run does, to reach the user's service manager; bwrap itself needs none).
fn command(plan: &Plan, prefix: &[std::ffi::OsString], argv: Vec<std::ffi::OsString>) -> Command {
    let mut c = match prefix.split_first() {
        Some((first, rest)) => {
            // systemd-run needs the environment to reach the service manager; bwrap must not
            // get it (its pid 1 inside keeps it, readable in /proc/1/environ).
            let mut c = Command::new(first);
            c.args(rest).args(["/usr/bin/env", "-i"]).arg(&plan.bwrap);
            c
        }
        None => {
            let mut c = Command::new(&plan.bwrap);
            c.env_clear();
            c
        }
    };
    c.args(argv);
    c
}

/// Runs bwrap as a child, forwards termination signals and waits. Ctrl-C from the terminal
/// reaches the sandbox directly (same process group).
fn supervise(
    plan: &Plan,
    prefix: &[std::ffi::OsString],
    net: Option<session::Pending>,
) -> Result<(std::process::ExitStatus, Option<session::Running>)> {
    let (argv, data) = to_argv(plan);
    if plan.interactive {
        // Ctrl-C must reach the agent, not kill bwrap (whose death takes the whole sandbox
        // down) nor agentbox (which must live to audit): both ignore it, and agentbox's shim
        // inside restores it for the agent.
        sys::ignore_interrupts()?;
    }
    // bwrap reports the command's status as soon as its pid 1 inside sends it, before that
    // pid 1 has exited: without a subreaper here it would reparent to init as a zombie.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .context("becoming a child subreaper")?;
    // Other threads (the proxy) hold fds of their own: the data fds are placed in the child
    // only, between fork and exec.
    let mut child =
        sys::spawn_with_data_fds(&mut command(plan, prefix, argv), FIRST_DATA_FD, &data)
            .with_context(|| format!("starting {}", plan.bwrap.display()))?;
    let net = match net.map(session::Pending::start).transpose() {
        Ok(n) => n,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            reap_orphans();
            return Err(e);
        }
    };
    let forwarded: &[i32] = if plan.interactive {
        &[SIGTERM, SIGHUP]
    } else {
        &[SIGTERM, SIGHUP, SIGINT, SIGQUIT]
    };
    let mut signals = Signals::new(forwarded).context("installing signal handlers")?;
    let handle = signals.handle();
    let pid = child.id() as i32;
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            // To the sandbox's first process (bwrap -> its pid 1 -> the command: the agent, or
            // the relay, which passes it on), so the agent can end cleanly; bwrap itself would
            // die of it and take the sandbox down with SIGKILL.
            let target = grandchild(pid).unwrap_or(pid);
            sys::send_signal(target, sig);
        }
    });
    // With the filtered network the sandbox's first process is the relay, which the agent (the
    // same user) can stop with SIGSTOP: stopped, it never reaps the agent, and the sandbox (and
    // agentbox) would never end. It is continued whenever it is found stopped.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = net.is_some().then(|| {
        let done = done.clone();
        std::thread::spawn(move || keep_running(pid, &done))
    });
    let status = child.wait().context("waiting for bwrap")?;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = watchdog {
        // Woken from its wait, so the end of the run is not delayed by it.
        w.thread().unpark();
        let _ = w.join();
    }
    reap_orphans();
    handle.close();
    let _ = forwarder.join();
    Ok((status, net))
}

/// How often the relay is looked at (`keep_running`): the most a stopped relay can delay
/// the end of the run.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Until `done`: sends SIGCONT to bwrap's grandchild (the relay) whenever it is stopped. The
/// relay never stops itself, and Ctrl-Z on a terminal stops agentbox with it.
fn keep_running(bwrap: i32, done: &std::sync::atomic::AtomicBool) {
    loop {
        std::thread::park_timeout(WATCH_EVERY);
        if done.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(relay) = grandchild(bwrap) else {
            continue;
        };
        // The state follows the command name, which is in parentheses and may hold anything.
        let stat = fs::read_to_string(format!("/proc/{relay}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("T" | "t")) {
            sys::send_signal(relay, libc::SIGCONT);
        }
    }
}

/// Waits for what bwrap left to us (its pid 1, about to exit): the sandbox's pid namespace
/// ends with that process, so this is short; bounded all the same. The wait blocks in a thread
/// of its own, so it returns as soon as the last one is reaped: polling with a sleep between
/// tries cost every run up to the sleep's length (2 ms) after bwrap's exit.
fn reap_orphans() {
    let bound = std::time::Duration::from_secs(5);
    let (done, reaped) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("reap".into())
        .spawn(move || {
            reap_all(rustix::process::WaitOptions::empty(), None);
            let _ = done.send(());
        });
    let late = match waiter {
        Ok(_) => reaped.recv_timeout(bound).is_err(),
        // No thread to be had: the same, polling.
        Err(_) => !reap_all(
            rustix::process::WaitOptions::NOHANG,
            Some(std::time::Instant::now() + bound),
        ),
    };
    if late {
        eprintln!("agentbox: warning: a process of the sandbox has not exited yet");
    }
}

/// Reaps children until there are none left (true), or, polling, until `deadline` (false).
fn reap_all(opts: rustix::process::WaitOptions, deadline: Option<std::time::Instant>) -> bool {
    use rustix::io::Errno;
    use rustix::process::wait;
    loop {
        match wait(opts) {
            Ok(Some(_)) | Err(Errno::INTR) => continue,
            Ok(None) if deadline.is_some_and(|d| std::time::Instant::now() < d) => {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            Ok(None) => return false,
            // ECHILD: nothing left.
            Err(_) => return true,
        }
    }
}

/// The first child of the first child of `pid`, from /proc (bwrap's pid 1 inside, then the
/// command it started).
fn grandchild(pid: i32) -> Option<i32> {
    let first = |p: i32| -> Option<i32> {
        let list = fs::read_to_string(format!("/proc/{p}/task/{p}/children")).ok()?;
        list.split_whitespace().next()?.parse().ok()
    };
    first(first(pid)?)
}

/// Inside the sandbox, agentbox's last step: on a terminal, undo the "ignore Ctrl-C" bwrap
/// needed; with `landlock`, limit writes to those paths (the second wall); then become the
/// command. Its exit codes follow `env`: 127 not found, 126 not executable.
pub fn exec_shim(
    tty: bool,
    landlock: Option<&[std::path::PathBuf]>,
    command: &[std::ffi::OsString],
) -> Result<ExitCode> {
    if tty {
        sys::default_interrupts()?;
    }
    if let Some(write) = landlock {
        // The plan asks for Landlock only where the host kernel has it (elsewhere it notes the
        // missing wall). Not getting it here is therefore something in the way, and the
        // command does not start without its second wall.
        if let crate::landlock::Applied::Unavailable(abi) = crate::landlock::restrict(write)? {
            return Err(crate::error::Fail::hint(
                format!(
                    "Landlock (ABI {abi} inside the sandbox) did not enforce the write rules the \
                     host's kernel supports: refusing to start the command without them"
                ),
                "run agentbox doctor; --allow-nested runs without Landlock",
            )
            .into());
        }
    }
    let (prog, args) = command.split_first().context("no command")?;
    let err = Command::new(prog).args(args).exec();
    eprintln!("agentbox: {}: {err}", prog.to_string_lossy());
    Ok(ExitCode::from(match err.kind() {
        std::io::ErrorKind::NotFound => crate::error::EXIT_NOT_FOUND,
        _ => crate::error::EXIT_NOT_EXECUTABLE,
    }))
}
