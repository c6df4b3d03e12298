//! `agentbox test`: the escape suite. The harness plants canaries on the host (secrets in a
//! writable root, a socket, a loopback server, a process, an exported token, an open fd), then
//! starts `agentbox run` with the user's own sandbox options and agentbox itself as the
//! command, so the probes run inside exactly the sandbox a real run gets. Afterwards it checks
//! the host for leftovers and reports every probe.

pub mod probes;

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::TestArgs;
use crate::host::HostFacts;
use crate::inside::SELF_INSIDE;
use crate::policy::EnvPass;
use crate::secrets;
use crate::sys::probe as raw;
use probes::{CANARY, Ctx, Expect, Obs};

/// Exit status of `agentbox test` when a probe leaked or a control failed.
const EXIT_LEAK: u8 = 1;
/// How long the whole probe run may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// At most this many project secrets are checked one by one.
const MAX_PROJECT_SECRETS: usize = 200;

/// One row of the report.
#[derive(Debug, Serialize)]
pub struct Row {
    pub id: String,
    pub class: String,
    pub what: String,
    pub expected: Expect,
    pub observed: Expect,
    pub detail: String,
    pub result: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// As expected.
    Pass,
    /// Expected blocked, was allowed.
    Leak,
    /// A positive control failed: the sandbox (or the probe) is broken.
    Fail,
    /// No result came back.
    Error,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    agentbox: &'static str,
    passed: bool,
    total: usize,
    pass: usize,
    leak: usize,
    fail: usize,
    error: usize,
    /// The kernel's Landlock ABI (0: none) and what that means for the sandbox.
    landlock_abi: u32,
    landlock: String,
    probes: &'a [Row],
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Everything the harness plants on the host; removed when dropped.
struct World {
    canary: tempfile::TempDir,
    sockets: tempfile::TempDir,
    _path_listener: UnixListener,
    _abstract_listener: UnixListener,
    abstract_name: String,
    tcp_port: u16,
    greeting: String,
    host_sleeper: std::process::Child,
    host_marker: String,
    leftover: String,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.host_sleeper.kill();
        let _ = self.host_sleeper.wait();
    }
}

fn write(root: &Path, rel: &str, content: &str) -> Result<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&p, content).with_context(|| format!("planting {}", p.display()))
}

fn plant() -> Result<World> {
    let id = unique();
    let tmp = if Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let canary = tempfile::Builder::new()
        .prefix("agentbox-canary-")
        .tempdir_in(&tmp)
        .context("creating the canary directory")?;
    let root = canary.path();
    let secret = format!("SECRET={CANARY}\n");
    for rel in [
        ".env",
        "a/b/c/.env",
        "id_rsa",
        ".aws/credentials",
        "real-secret.txt",
    ] {
        write(root, rel, &secret)?;
    }
    std::os::unix::fs::symlink("real-secret.txt", root.join(".env.local"))?;
    // The same file by another name, a name in capitals, a private key and a CA bundle in the
    // key-or-certificate type decided by content.
    fs::hard_link(root.join(".env"), root.join("linked-notes.txt"))?;
    write(root, "upper/.ENV", &secret)?;
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n");
    write(root, "certs/server.pem", &key)?;
    write(root, "certs/cacert.pem", &cert.repeat(3))?;
    write(root, ".env.example", "EXAMPLE=1\n")?;
    write(root, ".git/HEAD", "ref: refs/heads/main\n")?;
    write(root, ".git/config", "[core]\n\tbare = false\n")?;
    fs::create_dir_all(root.join(".git/hooks"))?;
    fs::create_dir_all(root.join(".git/objects"))?;
    write(root, ".envrc", "export A=1\n")?;
    write(root, ".vscode/settings.json", "{}\n")?;
    write(root, ".mcp.json", "{}\n")?;
    write(root, ".claude/commands/hello.md", "hello\n")?;
    // A hook framework, a dev container, and a script a protected file launches.
    write(root, ".husky/pre-commit", "npm test\n")?;
    write(
        root,
        ".devcontainer/devcontainer.json",
        "{\"initializeCommand\": \"sh tools/init.sh\"}\n",
    )?;
    write(root, "tools/init.sh", "true\n")?;

    let sockets = tempfile::Builder::new()
        .prefix("agentbox-sock-")
        .tempdir_in(&tmp)
        .context("creating the socket directory")?;
    let path_listener = UnixListener::bind(sockets.path().join("host.sock"))?;
    let abstract_name = format!("agentbox-probe-{id}");
    let abstract_listener = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name)?;
        UnixListener::bind_addr(&addr)?
    };
    let greeting = format!("agentbox-host-server-{id}");
    let tcp_port = serve_loopback(greeting.clone())?;
    let host_marker = format!("agentbox-host-marker-{id}");
    let host_sleeper = Command::new(std::env::current_exe()?)
        .args(["__sleeper", &host_marker])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the host marker process")?;
    Ok(World {
        canary,
        sockets,
        _path_listener: path_listener,
        _abstract_listener: abstract_listener,
        abstract_name,
        tcp_port,
        greeting,
        host_sleeper,
        host_marker,
        leftover: format!("agentbox-leftover-{id}"),
    })
}

/// A loopback TCP server that greets each client; bounded in connections and time.
fn serve_loopback(greeting: String) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback server")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let deadline = Instant::now() + RUN_LIMIT;
        let mut served = 0;
        while served < 8 && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(greeting.as_bytes());
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Ok(port)
}

/// The sandbox flags the user gave `agentbox test`, to hand to `agentbox run` unchanged.
fn sandbox_flags() -> Vec<OsString> {
    std::env::args_os()
        .skip_while(|a| a != "test")
        .skip(1)
        .filter(|a| a != "--json")
        .collect()
}

fn listing(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let meta = fs::symlink_metadata(&p);
            if meta.as_ref().is_ok_and(|m| m.is_dir()) {
                stack.push(p.clone());
            }
            out.push((p, meta.map_or(0, |m| m.len())));
        }
    }
    out.sort();
    out
}

fn processes_with(word: &str) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            cmd.split(|&b| b == 0)
                .any(|a| a == word.as_bytes())
                .then_some(pid)
        })
        .collect()
}

pub fn run(args: TestArgs, env: &crate::hostenv::Env) -> Result<ExitCode> {
    let json = args.json;
    let files = crate::config::read_for(&args.sandbox, env)?;
    let (mut policy, _) =
        crate::config::resolve(args.sandbox, vec![SELF_INSIDE.into()], true, &files)?;
    let facts = HostFacts::probe(&policy, env)?;
    // The same sandbox `run` would build: the registries' hosts too.
    crate::host::registry::allow(&mut policy, &facts)?;
    let project_secrets = project_secrets(&facts.project);
    let world = plant()?;
    let canary_env = "AGENTBOX_PROBE_TOKEN".to_owned();
    let ctx = Ctx {
        home: facts.user.home.as_os_str().as_bytes().to_vec(),
        project: facts.project.dir.as_os_str().as_bytes().to_vec(),
        canary: world.canary.path().as_os_str().as_bytes().to_vec(),
        project_secrets,
        tcp_port: world.tcp_port,
        greeting: world.greeting.clone(),
        abstract_name: world.abstract_name.clone(),
        socket_path: world
            .sockets
            .path()
            .join("host.sock")
            .as_os_str()
            .as_bytes()
            .to_vec(),
        host_pid: world.host_sleeper.id() as i32,
        host_marker: world.host_marker.clone(),
        canary_env: canary_env.clone(),
        passed_env: policy
            .env
            .iter()
            .map(|e| match e {
                EnvPass::Inherit(n) | EnvPass::Set(n, _) | EnvPass::IfSet(n) => {
                    n.to_string_lossy().into_owned()
                }
            })
            .collect(),
        canary_fd: -1,
        leftover: world.leftover.clone(),
        self_exe: SELF_INSIDE.to_owned(),
    };
    let before = listing(world.canary.path());
    let (lines, stderr, code) = run_probes(&world, ctx, &canary_env)?;
    let mut rows = rows(&lines);
    if policy.secrets == crate::policy::Secrets::Shown {
        unmasked_by_choice(&mut rows);
    }
    rows.extend(host_checks(&world, &facts.user.home, &before));
    if lines.is_empty() {
        eprint!("{stderr}");
        bail!("the probes did not run (agentbox run exited with {code:?})");
    }
    report(&rows, json)
}

/// Starts `agentbox run <flags> --rw CANARY --bind-self -- agentbox __probe CTX` and collects
/// the probe lines.
fn run_probes(
    world: &World,
    mut ctx: Ctx,
    canary_env: &str,
) -> Result<(Vec<probes::Line>, String, Option<i32>)> {
    // An fd left open on purpose: the sandbox must not receive it.
    let canary_fd = fs::File::open(world.canary.path()).context("opening the canary fd")?;
    let canary_fd = std::os::fd::OwnedFd::from(canary_fd);
    raw::inheritable(&canary_fd).map_err(|e| anyhow::anyhow!("fcntl: errno {e}"))?;
    ctx.canary_fd = std::os::fd::AsRawFd::as_raw_fd(&canary_fd);
    let ctx_json = serde_json::to_string(&ctx)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("run")
        .args(sandbox_flags())
        .arg("--rw")
        .arg(world.canary.path())
        .arg("--bind-self")
        .arg("--")
        .args([SELF_INSIDE, "__probe", &ctx_json])
        .env(canary_env, format!("{CANARY}-token"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting agentbox run")?;
    drop(canary_fd);
    let mut out = child.stdout.take().context("no stdout")?;
    let mut err = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<probes::Line>(l).ok())
        .collect();
    Ok((lines, stderr, status.and_then(|s| s.code())))
}

fn verdict(expect: Expect, obs: &Obs) -> Verdict {
    match (expect, obs.blocked) {
        (Expect::Blocked, true) | (Expect::Allowed, false) => Verdict::Pass,
        (Expect::Blocked, false) => Verdict::Leak,
        (Expect::Allowed, true) => Verdict::Fail,
    }
}

fn observed(obs: &Obs) -> Expect {
    if obs.blocked {
        Expect::Blocked
    } else {
        Expect::Allowed
    }
}

fn rows(lines: &[probes::Line]) -> Vec<Row> {
    probes::all()
        .iter()
        .map(|p| {
            let line = lines.iter().find(|l| l.id == p.id);
            let (observed, detail, result) = match line {
                Some(l) => (
                    observed(&l.obs),
                    l.obs.detail.clone(),
                    verdict(p.expect, &l.obs),
                ),
                None => (p.expect, "no result from inside".to_owned(), Verdict::Error),
            };
            Row {
                id: p.id.into(),
                class: p.class.into(),
                what: p.what.into(),
                expected: p.expect,
                observed,
                detail,
                result,
            }
        })
        .collect()
}

/// What the run's own probe found in the project (its first root; a `--rw` path is checked
/// by the canary rows), not a second scan with a matcher of its own: the probe checks that
/// exactly what the run masks reads empty. Files only, at most `MAX_PROJECT_SECRETS`.
fn project_secrets(project: &crate::host::Project) -> Vec<Vec<u8>> {
    project
        .roots
        .iter()
        .filter(|r| r.path == project.dir)
        .flat_map(|r| &r.secrets)
        .filter(|f| f.kind == secrets::Kind::File)
        .take(MAX_PROJECT_SECRETS)
        .map(|f| f.path.as_os_str().as_bytes().to_vec())
        .collect()
}

/// With --no-hide-env the run's scan has no built-in rules, so the project secrets the probe
/// checks (the run's own findings) are only what --hide names: the built-in kinds (.env,
/// keys...) are left readable by choice, and the row says so rather than passing.
fn unmasked_by_choice(rows: &mut [Row]) {
    for r in rows.iter_mut().filter(|r| r.id == "project-secrets") {
        r.observed = Expect::Allowed;
        r.result = verdict(
            r.expected,
            &Obs {
                blocked: false,
                detail: String::new(),
            },
        );
        r.detail = "--no-hide-env: the built-in secret rules are off; the run masks only \
                    what --hide names"
            .to_owned();
    }
}

/// Checks made on the host after the sandbox is gone.
fn host_checks(world: &World, home: &Path, before: &[(PathBuf, u64)]) -> Vec<Row> {
    let row = |id: &str, what: &str, obs: Obs| Row {
        id: id.into(),
        class: "leftovers".into(),
        what: what.into(),
        expected: Expect::Blocked,
        observed: observed(&obs),
        result: verdict(Expect::Blocked, &obs),
        detail: obs.detail,
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut alive = processes_with(&world.leftover);
    while !alive.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        alive = processes_with(&world.leftover);
    }
    for pid in &alive {
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status();
    }
    let process = match alive.is_empty() {
        true => Obs {
            blocked: true,
            detail: "none survived".into(),
        },
        false => Obs {
            blocked: false,
            detail: format!("still running: {alive:?}"),
        },
    };
    let mut found = Vec::new();
    for dir in [home.to_owned(), "/tmp".into(), "/var/tmp".into()] {
        let p = dir.join(&world.leftover);
        if p.exists() {
            let _ = fs::remove_file(&p);
            found.push(p.display().to_string());
        }
    }
    let files = match found.is_empty() {
        true => Obs {
            blocked: true,
            detail: "none reached the host".into(),
        },
        false => Obs {
            blocked: false,
            detail: format!("on the host: {}", found.join(", ")),
        },
    };
    let after = listing(world.canary.path());
    let stubs = match after == before {
        true => Obs {
            blocked: true,
            detail: "the writable root is as it was".into(),
        },
        false => {
            let changed: Vec<String> = after
                .iter()
                .filter(|a| !before.contains(a))
                .chain(before.iter().filter(|b| !after.contains(b)))
                .map(|(p, _)| p.display().to_string())
                .collect();
            Obs {
                blocked: false,
                detail: format!("changed: {}", changed.join(", ")),
            }
        }
    };
    vec![
        row(
            "leftover-process",
            "no sandboxed process outlives the run",
            process,
        ),
        row(
            "leftover-files",
            "files written to ~, /tmp, /var/tmp stay inside",
            files,
        ),
        row(
            "leftover-stubs",
            "no stub file or change in a writable root",
            stubs,
        ),
    ]
}

fn report(rows: &[Row], json: bool) -> Result<ExitCode> {
    let count = |v: Verdict| rows.iter().filter(|r| r.result == v).count();
    let (pass, leak, fail, error) = (
        count(Verdict::Pass),
        count(Verdict::Leak),
        count(Verdict::Fail),
        count(Verdict::Error),
    );
    let passed = pass == rows.len();
    let mut out = std::io::stdout().lock();
    if json {
        let doc = Report {
            agentbox: env!("CARGO_PKG_VERSION"),
            passed,
            total: rows.len(),
            pass,
            leak,
            fail,
            error,
            landlock_abi: crate::landlock::abi(),
            landlock: crate::landlock::describe(crate::landlock::abi()),
            probes: rows,
        };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        let word = |e: Expect| match e {
            Expect::Blocked => "blocked",
            Expect::Allowed => "allowed",
        };
        writeln!(
            out,
            "{:<22} {:<16} {:<8} {:<8} {:<6} DETAIL",
            "PROBE", "CLASS", "EXPECTED", "OBSERVED", "RESULT"
        )?;
        for r in rows {
            let result = format!("{:?}", r.result).to_uppercase();
            let mut detail = r.detail.clone();
            if detail.len() > 70 {
                let cut = (0..=70)
                    .rev()
                    .find(|&i| detail.is_char_boundary(i))
                    .unwrap_or(0);
                detail.truncate(cut);
                detail.push_str("...");
            }
            writeln!(
                out,
                "{:<22} {:<16} {:<8} {:<8} {:<6} {}",
                r.id,
                r.class,
                word(r.expected),
                word(r.observed),
                result,
                detail
            )?;
        }
        writeln!(
            out,
            "{} probes: {pass} passed, {leak} leaked, {fail} failed controls, {error} errors",
            rows.len()
        )?;
        writeln!(out, "{}", crate::landlock::describe(crate::landlock::abi()))?;
    }
    Ok(ExitCode::from(if passed { 0 } else { EXIT_LEAK }))
}

/// Inside the sandbox: run every probe, each in a process of its own, and print one JSON line
/// each; or, with `only`, run that one probe here.
pub fn probe_main(ctx_json: &str, only: Option<&str>) -> Result<ExitCode> {
    let ctx: Ctx = serde_json::from_str(ctx_json).context("reading the probe context")?;
    let mut out = std::io::stdout().lock();
    let lines = match only {
        Some(id) => vec![probes::run_one(&ctx, id)?],
        None => probes::run_all(&ctx, ctx_json),
    };
    for line in lines {
        serde_json::to_writer(&mut out, &line)?;
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A process that detaches into its own session and sleeps (bounded), so the leftover check
/// can see whether the sandbox's end takes it down.
pub fn sleeper_main(_marker: &str) -> Result<ExitCode> {
    let _ = raw::setsid();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Project, Root};
    use crate::secrets::{Found, Kind};

    fn found(path: &str, kind: Kind) -> Found {
        Found {
            path: path.into(),
            kind,
            why: "test".into(),
        }
    }

    #[test]
    fn project_secrets_are_the_runs_findings() {
        let project = Project {
            roots: vec![
                Root {
                    secrets: vec![
                        found("/p/.env", Kind::File),
                        found("/p/certs", Kind::Dir),
                        found("/p/id_rsa", Kind::File),
                    ],
                    ..Root::fixture("/p")
                },
                Root {
                    secrets: vec![found("/rw/.env", Kind::File)],
                    ..Root::fixture("/rw")
                },
            ],
            ..Project::fixture("/p")
        };
        assert_eq!(
            project_secrets(&project),
            [b"/p/.env".to_vec(), b"/p/id_rsa".to_vec()]
        );
        assert!(project_secrets(&Project::fixture("/p")).is_empty());
    }

    #[test]
    fn no_hide_env_is_a_leak_not_a_pass() {
        let lines = vec![probes::Line {
            id: "project-secrets".into(),
            obs: Obs {
                blocked: true,
                detail: "the project holds no secret files".into(),
            },
        }];
        let mut rows = rows(&lines);
        let row = |rows: &[Row]| {
            let r = rows.iter().find(|r| r.id == "project-secrets").unwrap();
            (r.result, r.observed)
        };
        assert_eq!(row(&rows), (Verdict::Pass, Expect::Blocked));
        unmasked_by_choice(&mut rows);
        assert_eq!(row(&rows), (Verdict::Leak, Expect::Allowed));
    }
}
