//! The escape probes, as a table. Each probe runs inside the sandbox (agentbox's own binary is
//! the first process), makes direct syscalls and file operations, and says whether the thing it
//! tried was blocked. Probes that expect "allowed" are the positive controls: they show that
//! the neighbour of a blocked thing still works, so a sandbox that blocks everything fails.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sys::probe::{self as raw, Sys};

/// What the harness tells the probes (host facts they cannot see from inside).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ctx {
    /// Paths as raw bytes: a project path need not be UTF-8.
    pub home: Vec<u8>,
    pub project: Vec<u8>,
    /// A writable root of canary files the harness planted (secrets, runs-later files).
    pub canary: Vec<u8>,
    /// Secrets the scan found in the user's project (capped).
    pub project_secrets: Vec<Vec<u8>>,
    /// A TCP server on the host's loopback, and the line it greets with.
    pub tcp_port: u16,
    pub greeting: String,
    /// A UNIX socket listening on the host: abstract name and path.
    pub abstract_name: String,
    pub socket_path: Vec<u8>,
    /// A host process and a word in its argv.
    pub host_pid: i32,
    pub host_marker: String,
    /// A secret variable set in agentbox's environment, and the names passed with --env.
    pub canary_env: String,
    pub passed_env: Vec<String>,
    /// An fd the harness left open (not close-on-exec) when it started agentbox.
    pub canary_fd: i32,
    /// A unique word for files and a process the probes leave behind on purpose.
    pub leftover: String,
    /// agentbox inside the sandbox.
    pub self_exe: String,
}

fn path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

impl Ctx {
    fn home(&self) -> PathBuf {
        path(&self.home)
    }
    fn canary(&self, rel: &str) -> PathBuf {
        path(&self.canary).join(rel)
    }
}

/// What a probe expects of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Blocked,
    Allowed,
}

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obs {
    pub blocked: bool,
    pub detail: String,
}

pub struct Probe {
    pub id: &'static str,
    pub class: &'static str,
    pub expect: Expect,
    pub what: &'static str,
    pub run: fn(&Ctx) -> Obs,
}

/// The content every canary secret holds.
pub const CANARY: &str = "agentbox-canary-secret";

fn blocked(detail: impl Into<String>) -> Obs {
    Obs {
        blocked: true,
        detail: detail.into(),
    }
}

fn allowed(detail: impl Into<String>) -> Obs {
    Obs {
        blocked: false,
        detail: detail.into(),
    }
}

fn errno_text(e: i32) -> String {
    let s = std::io::Error::from_raw_os_error(e).to_string();
    s.split(" (os error").next().unwrap_or(&s).to_owned()
}

/// Blocked when the call failed at all.
fn fails(r: Sys) -> Obs {
    match r {
        Ok(v) => allowed(format!("succeeded ({v})")),
        Err(e) => blocked(errno_text(e)),
    }
}

/// Blocked only when the call failed with `errno` (the filter's own answer); any other
/// result means the filter did not stop it.
fn fails_with(r: Sys, errno: i32) -> Obs {
    match r {
        Err(e) if e == errno => blocked(errno_text(e)),
        Err(e) => allowed(format!(
            "{} (not the filter's {})",
            errno_text(e),
            errno_text(errno)
        )),
        Ok(v) => allowed(format!("succeeded ({v})")),
    }
}

fn io_fails<T>(r: std::io::Result<T>) -> Obs {
    match r {
        Ok(_) => allowed("succeeded"),
        Err(e) => blocked(errno_text(e.raw_os_error().unwrap_or(0))),
    }
}

/// A secret file: blocked when it cannot be read or reads without the canary.
fn secret_read(p: &Path) -> Obs {
    match fs::read(p) {
        Err(e) => blocked(format!(
            "unreadable: {}",
            errno_text(e.raw_os_error().unwrap_or(0))
        )),
        Ok(b) if b.is_empty() => blocked("reads as empty"),
        Ok(b) if String::from_utf8_lossy(&b).contains(CANARY) => allowed("canary content read"),
        Ok(b) => allowed(format!("{} bytes readable", b.len())),
    }
}

/// A path in the home that must not be there at all.
fn absent(p: &Path) -> Obs {
    match fs::symlink_metadata(p) {
        Err(_) => blocked("not there"),
        Ok(_) => allowed(format!("{} is visible", p.display())),
    }
}

/// Creating or appending a file: blocked when it fails.
fn write_fails(p: &Path) -> Obs {
    let r = fs::OpenOptions::new().create(true).append(true).open(p);
    io_fails(r.and_then(|mut f| f.write_all(b"")))
}

fn status_field(name: &str) -> Option<String> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn udp_route(addr: &str) -> Obs {
    let bind = if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    // UDP connect only looks up a route: no packet is sent.
    match UdpSocket::bind(bind).and_then(|s| s.connect(addr)) {
        Ok(()) => allowed(format!("a route to {addr} exists")),
        Err(e) => blocked(errno_text(e.raw_os_error().unwrap_or(0))),
    }
}

fn p(
    id: &'static str,
    class: &'static str,
    expect: Expect,
    what: &'static str,
    run: fn(&Ctx) -> Obs,
) -> Probe {
    Probe {
        id,
        class,
        expect,
        what,
        run,
    }
}

use Expect::{Allowed, Blocked};

/// Every probe that runs inside, in report order.
pub fn all() -> Vec<Probe> {
    let mut v = Vec::new();
    v.extend(home());
    v.extend(project());
    v.extend(outside());
    v.extend(runs_later());
    v.extend(environment());
    v.extend(processes());
    v.extend(syscalls());
    v.extend(sockets());
    v.extend(terminal());
    v.extend(privileges());
    v.extend(network());
    v
}

fn home() -> Vec<Probe> {
    const C: &str = "home-secrets";
    vec![
        p("home-ssh", C, Blocked, "~/.ssh is not there", |c| {
            absent(&c.home().join(".ssh"))
        }),
        p("home-aws", C, Blocked, "~/.aws is not there", |c| {
            absent(&c.home().join(".aws"))
        }),
        p("home-gnupg", C, Blocked, "~/.gnupg is not there", |c| {
            absent(&c.home().join(".gnupg"))
        }),
        p("home-netrc", C, Blocked, "~/.netrc is not there", |c| {
            absent(&c.home().join(".netrc"))
        }),
        p(
            "home-git-credentials",
            C,
            Blocked,
            "~/.git-credentials is not there",
            |c| absent(&c.home().join(".git-credentials")),
        ),
        p(
            "home-gh",
            C,
            Blocked,
            "~/.config/gh (GitHub token) is not there",
            |c| absent(&c.home().join(".config/gh")),
        ),
        p(
            "home-docker",
            C,
            Blocked,
            "~/.docker (registry auth) is not there",
            |c| absent(&c.home().join(".docker")),
        ),
        p(
            "home-kube",
            C,
            Blocked,
            "~/.kube (cluster credentials) is not there",
            |c| absent(&c.home().join(".kube")),
        ),
        p(
            "home-scratch",
            C,
            Allowed,
            "the empty home is usable scratch space",
            |c| {
                let f = c.home().join(format!(".{}-scratch", c.leftover));
                io_fails(fs::write(&f, "x").and_then(|_| fs::read(&f)))
            },
        ),
    ]
}

fn project() -> Vec<Probe> {
    const C: &str = "project-secrets";
    vec![
        p(
            "canary-env",
            C,
            Blocked,
            "a .env in a writable root reads empty",
            |c| secret_read(&c.canary(".env")),
        ),
        p(
            "canary-env-deep",
            C,
            Blocked,
            "a .env three directories down reads empty",
            |c| secret_read(&c.canary("a/b/c/.env")),
        ),
        p(
            "canary-key",
            C,
            Blocked,
            "an id_rsa in a writable root reads empty",
            |c| secret_read(&c.canary("id_rsa")),
        ),
        p(
            "canary-secret-dir",
            C,
            Blocked,
            "a .aws directory in a writable root is empty",
            |c| secret_read(&c.canary(".aws/credentials")),
        ),
        p(
            "canary-symlink",
            C,
            Blocked,
            "a secret reached through a symlink reads empty",
            |c| secret_read(&c.canary(".env.local")),
        ),
        p(
            "canary-env-write",
            C,
            Blocked,
            "a masked .env cannot be written",
            |c| write_fails(&c.canary(".env")),
        ),
        p(
            "project-secrets",
            C,
            Blocked,
            "every secret found in the project reads empty",
            |c| {
                let leaks: Vec<String> = c
                    .project_secrets
                    .iter()
                    .map(|b| path(b))
                    .filter(|p| !secret_read(p).blocked)
                    .map(|p| p.display().to_string())
                    .collect();
                match (leaks.is_empty(), c.project_secrets.len()) {
                    (true, 0) => blocked("the project holds no secret files"),
                    (true, n) => blocked(format!("all {n} read empty")),
                    (false, _) => allowed(format!("readable: {}", leaks.join(", "))),
                }
            },
        ),
        p(
            "canary-template",
            C,
            Allowed,
            ".env.example stays readable",
            |c| match fs::read_to_string(c.canary(".env.example")) {
                Ok(s) if s.contains("EXAMPLE") => allowed("readable"),
                Ok(_) => blocked("empty"),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p(
            "project-write",
            C,
            Allowed,
            "the project is writable",
            |c| {
                let f = path(&c.project).join(format!(".{}-write", c.leftover));
                let r = fs::write(&f, "x").and_then(|_| fs::remove_file(&f));
                io_fails(r)
            },
        ),
    ]
}

fn outside() -> Vec<Probe> {
    const C: &str = "write-outside";
    vec![
        p("write-usr", C, Blocked, "/usr cannot be written", |c| {
            write_fails(&Path::new("/usr").join(&c.leftover))
        }),
        p("write-etc", C, Blocked, "/etc cannot be written", |c| {
            write_fails(&Path::new("/etc").join(&c.leftover))
        }),
        p("write-root", C, Blocked, "/ cannot be written", |c| {
            write_fails(&Path::new("/").join(&c.leftover))
        }),
        p(
            "write-home-persist",
            C,
            Allowed,
            "writes to ~, /tmp, /var/tmp stay inside",
            |c| {
                // The harness checks afterwards that none of these reached the host.
                let name = &c.leftover;
                let r = [c.home(), "/tmp".into(), "/var/tmp".into()]
                    .iter()
                    .try_for_each(|d| fs::write(d.join(name), "x"));
                io_fails(r)
            },
        ),
    ]
}

fn runs_later() -> Vec<Probe> {
    const C: &str = "runs-later";
    vec![
        p(
            "git-hooks",
            C,
            Blocked,
            "no hook can be planted in .git/hooks",
            |c| write_fails(&c.canary(".git/hooks/pre-commit")),
        ),
        p(
            "git-config",
            C,
            Blocked,
            ".git/config cannot be changed",
            |c| write_fails(&c.canary(".git/config")),
        ),
        p(
            "git-rename",
            C,
            Blocked,
            ".git cannot be renamed away and replaced",
            |c| io_fails(fs::rename(c.canary(".git"), c.canary(".git-moved"))),
        ),
        p("envrc", C, Blocked, ".envrc cannot be changed", |c| {
            write_fails(&c.canary(".envrc"))
        }),
        p(
            "vscode",
            C,
            Blocked,
            "no task can be added to .vscode",
            |c| write_fails(&c.canary(".vscode/tasks.json")),
        ),
        p("mcp-json", C, Blocked, ".mcp.json cannot be changed", |c| {
            write_fails(&c.canary(".mcp.json"))
        }),
        p(
            "claude-commands",
            C,
            Blocked,
            "no command can be added to .claude/commands",
            |c| write_fails(&c.canary(".claude/commands/evil.md")),
        ),
        p(
            "git-objects",
            C,
            Allowed,
            "the rest of .git stays writable (commits work)",
            |c| {
                let f = c.canary(".git/objects/agentbox-probe");
                io_fails(fs::write(&f, "x").and_then(|_| fs::remove_file(&f)))
            },
        ),
    ]
}

fn environment() -> Vec<Probe> {
    const C: &str = "environment";
    vec![
        p(
            "env-canary",
            C,
            Blocked,
            "a secret exported on the host is not inherited",
            |c| match std::env::var_os(&c.canary_env) {
                Some(_) => allowed(format!("{} is set", c.canary_env)),
                None => blocked("not set"),
            },
        ),
        p(
            "env-secrets",
            C,
            Blocked,
            "no token-like variable except those passed",
            |c| {
                let leaks: Vec<String> = std::env::vars_os()
                    .filter_map(|(k, _)| k.into_string().ok())
                    .filter(|k| {
                        let u = k.to_ascii_uppercase();
                        [
                            "TOKEN",
                            "SECRET",
                            "PASSWORD",
                            "API_KEY",
                            "CREDENTIAL",
                            "ACCESS_KEY",
                        ]
                        .iter()
                        .any(|w| u.contains(w))
                    })
                    .filter(|k| !c.passed_env.contains(k))
                    .collect();
                if leaks.is_empty() {
                    blocked("none")
                } else {
                    allowed(leaks.join(", "))
                }
            },
        ),
        p(
            "env-pid1",
            C,
            Blocked,
            "pid 1's environment holds no host secret",
            |c| match fs::read("/proc/1/environ") {
                Ok(b) if String::from_utf8_lossy(&b).contains(&c.canary_env) => {
                    allowed("the canary is in /proc/1/environ")
                }
                Ok(_) => blocked("clean"),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p("env-path", C, Allowed, "PATH and HOME are set", |_| match (
            std::env::var_os("PATH"),
            std::env::var_os("HOME"),
        ) {
            (Some(_), Some(_)) => allowed("set"),
            _ => blocked("missing"),
        }),
    ]
}

/// Each process's argv, as separate words.
fn proc_cmdlines() -> Vec<(i32, Vec<String>)> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = fs::read(e.path().join("cmdline")).ok()?;
        let words = cmd
            .split(|&b| b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned());
        Some((pid, words.collect()))
    })
    .collect()
}

fn processes() -> Vec<Probe> {
    const C: &str = "processes";
    vec![
        p(
            "proc-host",
            C,
            Blocked,
            "host processes are not in /proc",
            |c| {
                // The marker is a whole argv word of the host process (inside it only appears
                // within the probe context).
                match proc_cmdlines()
                    .iter()
                    .find(|(_, argv)| argv.contains(&c.host_marker))
                {
                    Some((pid, _)) => allowed(format!("host process visible as pid {pid}")),
                    None => blocked(format!(
                        "{} processes, none of the host's",
                        proc_cmdlines().len()
                    )),
                }
            },
        ),
        p(
            "proc-kill-host",
            C,
            Blocked,
            "a host process cannot be signalled",
            |c| {
                let mine = proc_cmdlines()
                    .iter()
                    .any(|(pid, argv)| *pid == c.host_pid && argv.contains(&c.host_marker));
                match raw::kill0(c.host_pid) {
                    Ok(_) if mine => allowed(format!("kill({}, 0) reached it", c.host_pid)),
                    Ok(_) => blocked("that pid is a sandbox process"),
                    Err(e) => blocked(errno_text(e)),
                }
            },
        ),
        p(
            "proc-pid1",
            C,
            Blocked,
            "pid 1 is the sandbox's own init, not the host's",
            |_| match fs::read("/proc/1/cmdline") {
                Ok(b) if String::from_utf8_lossy(&b).contains("bwrap") => blocked("pid 1 is bwrap"),
                Ok(b) => allowed(format!("pid 1 is {}", String::from_utf8_lossy(&b))),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p(
            "uts-hostname",
            C,
            Blocked,
            "the host's name is hidden (own UTS namespace)",
            |_| match fs::read_to_string("/proc/sys/kernel/hostname") {
                Ok(h) if h.trim() == "agentbox" => blocked("hostname is agentbox"),
                Ok(h) => allowed(format!("hostname is {}", h.trim())),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p(
            "proc-self",
            C,
            Allowed,
            "a process can inspect itself",
            |_| io_fails(fs::read("/proc/self/status")),
        ),
        p("spawn", C, Allowed, "starting a child process works", |c| {
            let r = std::process::Command::new(&c.self_exe)
                .arg("--version")
                .output();
            match r {
                Ok(o) if o.status.success() => allowed("spawned"),
                Ok(o) => blocked(format!("exit {:?}", o.status.code())),
                Err(e) => blocked(e.to_string()),
            }
        }),
        p(
            "leftover-spawn",
            C,
            Allowed,
            "a detached process can start (it must die at exit)",
            |c| {
                let r = std::process::Command::new(&c.self_exe)
                    .args(["__sleeper", &c.leftover])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                io_fails(r)
            },
        ),
        p(
            "fd-inherited",
            C,
            Blocked,
            "no inherited file descriptor but 0-2",
            |c| {
                let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
                    .map(|rd| {
                        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                // The listing itself holds one fd: only a readable link to something else counts.
                let extra: Vec<String> = fds
                    .iter()
                    .filter(|&&fd| fd > 2)
                    .filter_map(|fd| {
                        let t = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
                        (!t.starts_with("/proc")).then(|| format!("{fd} -> {}", t.display()))
                    })
                    .collect();
                let canary = fds.contains(&c.canary_fd)
                    && extra
                        .iter()
                        .any(|e| e.starts_with(&format!("{} ", c.canary_fd)));
                if extra.is_empty() && !canary {
                    blocked("only 0, 1, 2")
                } else {
                    allowed(extra.join(", "))
                }
            },
        ),
    ]
}

fn syscalls() -> Vec<Probe> {
    use libc::*;
    let ns = "namespaces";
    let dbg = "debugging";
    let key = "keyring";
    let kern = "kernel";
    vec![
        p("ptrace", dbg, Blocked, "ptrace is refused", |_| {
            fails(raw::traceme_in_child())
        }),
        p(
            "process-vm-readv",
            dbg,
            Blocked,
            "process_vm_readv is refused",
            |_| fails(raw::process_vm_self(false)),
        ),
        p(
            "process-vm-writev",
            dbg,
            Blocked,
            "process_vm_writev is refused",
            |_| fails(raw::process_vm_self(true)),
        ),
        p(
            "perf-event-open",
            dbg,
            Blocked,
            "perf_event_open is refused",
            |_| fails(raw::perf_event_self()),
        ),
        p(
            "keyctl",
            key,
            Blocked,
            "the session keyring is unreachable",
            |_| {
                // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, without creating it.
                fails(raw::int_call(SYS_keyctl, [0, (-3i64) as u64, 0, 0, 0, 0]))
            },
        ),
        p("add-key", key, Blocked, "no key can be added", |_| {
            let (t, d) = (cstr("user"), cstr("agentbox-probe"));
            // payload NULL, length 0, KEY_SPEC_PROCESS_KEYRING.
            let ints = [0, 0, 0, 0, (-2i64) as u64, 0];
            fails(raw::str_call(SYS_add_key, ints, &[(0, &t), (1, &d)]))
        }),
        p(
            "request-key",
            key,
            Blocked,
            "request_key is refused",
            |_| {
                let (t, d) = (cstr("user"), cstr("agentbox-probe"));
                fails(raw::str_call(SYS_request_key, [0; 6], &[(0, &t), (1, &d)]))
            },
        ),
        p(
            "unshare-user",
            ns,
            Blocked,
            "no nested user namespace (unshare)",
            |_| {
                fails(raw::int_call(
                    SYS_unshare,
                    [CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                ))
            },
        ),
        p(
            "clone-newuser",
            ns,
            Blocked,
            "no nested user namespace (clone)",
            |_| fails(raw::clone_newuser()),
        ),
        p(
            "unshare-mount",
            ns,
            Blocked,
            "no new mount namespace",
            |_| {
                fails(raw::int_call(
                    SYS_unshare,
                    [CLONE_NEWNS as u64, 0, 0, 0, 0, 0],
                ))
            },
        ),
        p(
            "setns",
            ns,
            Blocked,
            "setns is refused by the filter",
            |_| {
                let Ok(f) = fs::File::open("/proc/self/ns/user") else {
                    return blocked("no /proc/self/ns/user");
                };
                fails_with(
                    raw::int_call(SYS_setns, [f.as_raw_fd() as u64, 0, 0, 0, 0, 0]),
                    EPERM,
                )
            },
        ),
        p("mount", ns, Blocked, "mount is refused", |_| {
            let (src, dst, fs) = (cstr("none"), cstr("/tmp"), cstr("tmpfs"));
            fails(raw::str_call(
                SYS_mount,
                [0; 6],
                &[(0, &src), (1, &dst), (2, &fs)],
            ))
        }),
        p("chroot", ns, Blocked, "chroot is refused", |_| {
            let root = cstr("/");
            fails(raw::str_call(SYS_chroot, [0; 6], &[(0, &root)]))
        }),
        p("pivot-root", ns, Blocked, "pivot_root is refused", |_| {
            let dot = cstr(".");
            fails(raw::str_call(
                SYS_pivot_root,
                [0; 6],
                &[(0, &dot), (1, &dot)],
            ))
        }),
        p(
            "clone3",
            ns,
            Blocked,
            "clone3 answers ENOSYS (its flags are unfilterable)",
            |_| fails_with(raw::clone3_plain(), ENOSYS),
        ),
        p(
            "fsopen",
            ns,
            Blocked,
            "the new mount API is off: fsopen",
            |_| {
                let t = cstr("tmpfs");
                fails_with(
                    raw::close_returned(raw::str_call(SYS_fsopen, [0; 6], &[(0, &t)])),
                    ENOSYS,
                )
            },
        ),
        p(
            "fsmount",
            ns,
            Blocked,
            "the new mount API is off: fsmount",
            |_| {
                fails_with(
                    raw::int_call(SYS_fsmount, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p(
            "fsconfig",
            ns,
            Blocked,
            "the new mount API is off: fsconfig",
            |_| {
                fails_with(
                    raw::int_call(SYS_fsconfig, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p(
            "fspick",
            ns,
            Blocked,
            "the new mount API is off: fspick",
            |_| {
                let root = cstr("/");
                let r = raw::str_call(SYS_fspick, [AT_FDCWD as u64, 0, 0, 0, 0, 0], &[(1, &root)]);
                fails_with(raw::close_returned(r), ENOSYS)
            },
        ),
        p(
            "open-tree",
            ns,
            Blocked,
            "the new mount API is off: open_tree",
            |_| {
                let root = cstr("/");
                let r = raw::str_call(
                    SYS_open_tree,
                    [AT_FDCWD as u64, 0, 0, 0, 0, 0],
                    &[(1, &root)],
                );
                fails_with(raw::close_returned(r), ENOSYS)
            },
        ),
        p(
            "move-mount",
            ns,
            Blocked,
            "the new mount API is off: move_mount",
            |_| {
                let e = cstr("");
                let ints = [u64::MAX, 0, u64::MAX, 0, 0, 0];
                fails_with(
                    raw::str_call(SYS_move_mount, ints, &[(1, &e), (3, &e)]),
                    ENOSYS,
                )
            },
        ),
        p(
            "mount-setattr",
            ns,
            Blocked,
            "the new mount API is off: mount_setattr",
            |_| {
                let e = cstr("");
                let r = raw::str_call(SYS_mount_setattr, [u64::MAX, 0, 0, 0, 0, 0], &[(1, &e)]);
                fails_with(r, ENOSYS)
            },
        ),
        p(
            "io-uring-setup",
            kern,
            Blocked,
            "io_uring is off: setup",
            |_| {
                let mut params = [0u8; 120];
                fails_with(
                    raw::close_returned(raw::buf_call(
                        SYS_io_uring_setup,
                        [1, 0, 0, 0, 0, 0],
                        1,
                        &mut params,
                    )),
                    ENOSYS,
                )
            },
        ),
        p(
            "io-uring-enter",
            kern,
            Blocked,
            "io_uring is off: enter",
            |_| {
                fails_with(
                    raw::int_call(SYS_io_uring_enter, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p(
            "io-uring-register",
            kern,
            Blocked,
            "io_uring is off: register",
            |_| {
                fails_with(
                    raw::int_call(SYS_io_uring_register, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p("bpf", kern, Blocked, "bpf is refused", |_| {
            let mut attr = [0u8; 128];
            fails(raw::close_returned(raw::buf_call(
                SYS_bpf,
                [5, 0, 128, 0, 0, 0],
                1,
                &mut attr,
            )))
        }),
        p(
            "userfaultfd",
            kern,
            Blocked,
            "userfaultfd is refused",
            |_| {
                fails(raw::close_returned(raw::int_call(
                    SYS_userfaultfd,
                    [O_CLOEXEC as u64, 0, 0, 0, 0, 0],
                )))
            },
        ),
        p(
            "syslog",
            kern,
            Blocked,
            "the kernel log is unreadable",
            |_| {
                let mut buf = [0u8; 256];
                // SYSLOG_ACTION_READ_ALL
                fails(raw::buf_call(SYS_syslog, [3, 0, 256, 0, 0, 0], 1, &mut buf))
            },
        ),
        p("kexec-load", kern, Blocked, "kexec_load is refused", |_| {
            fails(raw::int_call(SYS_kexec_load, [0; 6]))
        }),
        p(
            "init-module",
            kern,
            Blocked,
            "no kernel module can be loaded",
            |_| {
                let e = cstr("");
                fails(raw::str_call(SYS_init_module, [0; 6], &[(2, &e)]))
            },
        ),
        p(
            "open-by-handle",
            kern,
            Blocked,
            "open_by_handle_at is refused",
            |_| {
                let mut handle = [0u8; 16];
                fails(raw::buf_call(
                    SYS_open_by_handle_at,
                    [AT_FDCWD as u64, 0, 0, 0, 0, 0],
                    1,
                    &mut handle,
                ))
            },
        ),
        p(
            "personality",
            kern,
            Blocked,
            "personality cannot turn off ASLR",
            |_| {
                // ADDR_NO_RANDOMIZE
                fails(raw::int_call(SYS_personality, [0x0040000, 0, 0, 0, 0, 0]))
            },
        ),
        p(
            "x32-abi",
            kern,
            Blocked,
            "x32 syscall numbers do not slip past the filter",
            |_| {
                if cfg!(target_arch = "x86_64") {
                    fails(raw::int_call(0x4000_0000 | SYS_getpid, [0; 6]))
                } else {
                    blocked("no x32 ABI on this architecture")
                }
            },
        ),
        p(
            "personality-query",
            kern,
            Allowed,
            "personality can still be queried",
            |_| fails(raw::int_call(SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0])),
        ),
    ]
}

fn sockets() -> Vec<Probe> {
    use libc::*;
    let fam = "socket-families";
    let unix = "unix-sockets";
    vec![
        p(
            "af-vsock",
            fam,
            Blocked,
            "AF_VSOCK (to the hypervisor) is refused",
            |_| fails(raw::socket(AF_VSOCK, SOCK_STREAM)),
        ),
        p(
            "af-alg",
            fam,
            Blocked,
            "AF_ALG (kernel crypto) is refused",
            |_| fails(raw::socket(AF_ALG, SOCK_SEQPACKET)),
        ),
        p(
            "af-packet",
            fam,
            Blocked,
            "AF_PACKET (raw frames) is refused",
            |_| fails(raw::socket(AF_PACKET, SOCK_RAW)),
        ),
        p(
            "af-key",
            fam,
            Blocked,
            "AF_KEY (IPsec keys) is refused",
            |_| fails(raw::socket(AF_KEY, SOCK_RAW)),
        ),
        p(
            "af-bluetooth",
            fam,
            Blocked,
            "AF_BLUETOOTH is refused",
            |_| fails(raw::socket(AF_BLUETOOTH, SOCK_STREAM)),
        ),
        p("af-unix", fam, Allowed, "AF_UNIX sockets open", |_| {
            fails(raw::socket(AF_UNIX, SOCK_STREAM))
        }),
        p("af-inet", fam, Allowed, "AF_INET sockets open", |_| {
            fails(raw::socket(AF_INET, SOCK_STREAM))
        }),
        p(
            "af-netlink",
            fam,
            Allowed,
            "AF_NETLINK sockets open",
            |_| fails(raw::socket(AF_NETLINK, SOCK_RAW)),
        ),
        p(
            "unix-abstract-host",
            unix,
            Blocked,
            "a host abstract socket is unreachable",
            |c| {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(&c.abstract_name);
                io_fails(addr.and_then(|a| UnixStream::connect_addr(&a)))
            },
        ),
        p(
            "unix-path-host",
            unix,
            Blocked,
            "a host socket file is unreachable",
            |c| io_fails(UnixStream::connect(path(&c.socket_path))),
        ),
        p(
            "unix-runtime-dir",
            unix,
            Blocked,
            "no $XDG_RUNTIME_DIR (D-Bus, agents)",
            |_| {
                let uid =
                    fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
                absent(&Path::new("/run/user").join(uid.unwrap_or(0).to_string()))
            },
        ),
        p(
            "unix-any-socket",
            unix,
            Blocked,
            "no socket file in /run, /tmp, /var or ~",
            |c| {
                let mut found = Vec::new();
                for dir in [
                    PathBuf::from("/run"),
                    "/tmp".into(),
                    "/var".into(),
                    c.home(),
                ] {
                    find_sockets(&dir, 4, &mut found);
                }
                if found.is_empty() {
                    blocked("none")
                } else {
                    allowed(found.join(", "))
                }
            },
        ),
        p(
            "unix-local",
            unix,
            Allowed,
            "UNIX sockets within the sandbox work",
            |_| {
                let r = UnixDatagram::pair().and_then(|(a, b)| {
                    a.send(b"x")?;
                    let mut buf = [0u8; 1];
                    b.recv(&mut buf)
                });
                io_fails(r)
            },
        ),
    ]
}

fn find_sockets(dir: &Path, depth: u32, found: &mut Vec<String>) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        // agentbox's own proxy socket (filtered network) is the one door that is meant to be.
        if e.path().starts_with(crate::net::relay::SOCKET_DIR) {
            continue;
        }
        if t.is_socket() {
            found.push(e.path().display().to_string());
        } else if t.is_dir() && depth > 0 {
            find_sockets(&e.path(), depth - 1, found);
        }
    }
}

fn terminal() -> Vec<Probe> {
    const C: &str = "terminal";
    vec![
        p(
            "tiocsti",
            C,
            Blocked,
            "TIOCSTI cannot type into a terminal",
            |_| tty(|fd| raw::ioctl_byte(fd, crate::seccomp::TIOCSTI, &mut b'x'.clone())),
        ),
        p(
            "tiocsti-high-bits",
            C,
            Blocked,
            "TIOCSTI with high bits set is caught too",
            |_| {
                tty(|fd| {
                    raw::ioctl_byte(fd, crate::seccomp::TIOCSTI | (1 << 32), &mut b'x'.clone())
                })
            },
        ),
        p(
            "tioclinux",
            C,
            Blocked,
            "TIOCLINUX is refused by the filter",
            |_| match raw::open_pty() {
                Ok((_m, s)) => fails_with(
                    raw::ioctl_byte(s.as_raw_fd(), crate::seccomp::TIOCLINUX, &mut 2u8.clone()),
                    libc::EPERM,
                ),
                Err(e) => blocked(format!("no pty: {}", errno_text(e))),
            },
        ),
        p(
            "tiocgwinsz",
            C,
            Allowed,
            "ordinary terminal ioctls work",
            |_| tty(raw::window_size),
        ),
    ]
}

/// Runs an ioctl probe on a fresh pseudo-terminal.
fn tty(f: impl Fn(i32) -> Sys) -> Obs {
    match raw::open_pty() {
        Ok((_m, s)) => fails(f(s.as_raw_fd())),
        Err(e) => blocked(format!("no pty to test on: {}", errno_text(e))),
    }
}

fn privileges() -> Vec<Probe> {
    let caps = "privileges";
    let dev = "dev-sys";
    vec![
        p(
            "cap-effective",
            caps,
            Blocked,
            "no effective capabilities",
            |_| match status_field("CapEff") {
                Some(v) if v.trim_start_matches('0').is_empty() => blocked("CapEff 0"),
                other => allowed(format!("CapEff {other:?}")),
            },
        ),
        p(
            "cap-bounding",
            caps,
            Blocked,
            "no capability can be regained",
            |_| match status_field("CapBnd") {
                Some(v) if v.trim_start_matches('0').is_empty() => blocked("CapBnd 0"),
                other => allowed(format!("CapBnd {other:?}")),
            },
        ),
        p(
            "no-new-privs",
            caps,
            Blocked,
            "setuid binaries gain nothing (no_new_privs)",
            |_| match status_field("NoNewPrivs") {
                Some(v) if v == "1" => blocked("NoNewPrivs 1"),
                other => allowed(format!("NoNewPrivs {other:?}")),
            },
        ),
        p("dev-mem", dev, Blocked, "/dev/mem is not there", |_| {
            absent(Path::new("/dev/mem"))
        }),
        p("dev-kvm", dev, Blocked, "/dev/kvm is not there", |_| {
            absent(Path::new("/dev/kvm"))
        }),
        p("dev-disks", dev, Blocked, "no block device in /dev", |_| {
            use std::os::unix::fs::FileTypeExt;
            let disks: Vec<String> = fs::read_dir("/dev")
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
                        .map(|e| e.path().display().to_string())
                        .collect()
                })
                .unwrap_or_default();
            if disks.is_empty() {
                blocked("none")
            } else {
                allowed(disks.join(", "))
            }
        }),
        p(
            "sys-cgroup",
            dev,
            Blocked,
            "/sys/fs/cgroup is not writable",
            |_| write_fails(Path::new("/sys/fs/cgroup/agentbox-probe")),
        ),
        p(
            "proc-sys-write",
            dev,
            Blocked,
            "host kernel settings (core_pattern) cannot be written",
            |_| {
                // Writes back the value it reads, so even a broken sandbox changes nothing.
                let path = "/proc/sys/kernel/core_pattern";
                let r = fs::read(path)
                    .and_then(|v| fs::OpenOptions::new().write(true).open(path)?.write_all(&v));
                io_fails(r)
            },
        ),
        p(
            "sysrq",
            dev,
            Blocked,
            "/proc/sysrq-trigger cannot be written",
            |_| {
                io_fails(
                    fs::OpenOptions::new()
                        .write(true)
                        .open("/proc/sysrq-trigger"),
                )
            },
        ),
        p(
            "dev-null",
            dev,
            Allowed,
            "/dev/null and /dev/urandom work",
            |_| {
                let r = fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .and_then(|mut f| {
                        f.write_all(b"x")?;
                        let mut b = [0u8; 8];
                        fs::File::open("/dev/urandom")?.read_exact(&mut b)
                    });
                io_fails(r)
            },
        ),
    ]
}

fn network() -> Vec<Probe> {
    const C: &str = "network";
    vec![
        p(
            "net-host-loopback",
            C,
            Blocked,
            "a server on the host's loopback is unreachable",
            |c| {
                let addr = format!("127.0.0.1:{}", c.tcp_port);
                let r = addr
                    .parse()
                    .map_err(std::io::Error::other)
                    .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)));
                match r {
                    Err(e) => blocked(errno_text(e.raw_os_error().unwrap_or(0))),
                    Ok(mut s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = String::new();
                        let _ = s.read_to_string(&mut buf);
                        if buf.contains(&c.greeting) {
                            allowed("reached the host's server")
                        } else {
                            blocked("connected to something that is not the host's server")
                        }
                    }
                }
            },
        ),
        p(
            "net-route",
            C,
            Blocked,
            "no route to the internet (192.0.2.1)",
            |_| udp_route("192.0.2.1:9"),
        ),
        p(
            "net-route-v6",
            C,
            Blocked,
            "no IPv6 route to the internet (2001:db8::1)",
            |_| udp_route("[2001:db8::1]:9"),
        ),
        p(
            "net-metadata",
            C,
            Blocked,
            "no route to the cloud metadata address",
            |_| udp_route("169.254.169.254:80"),
        ),
        p("net-dns", C, Blocked, "no DNS server is reachable", |_| {
            let conf = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let servers: Vec<String> = conf
                .lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .map(|s| s.trim().to_owned())
                .collect();
            let external: Vec<&String> = servers
                .iter()
                .filter(|s| !s.starts_with("127.") && *s != "::1")
                .collect();
            match external.first() {
                Some(s) if s.contains(':') => udp_route(&format!("[{s}]:53")),
                Some(s) => udp_route(&format!("{s}:53")),
                // A loopback resolver answers only in the host's network namespace.
                None => match interfaces().iter().any(|i| i != "lo") {
                    true => allowed("a loopback resolver in the host's network"),
                    false => blocked("no resolver reachable"),
                },
            }
        }),
        p(
            "net-interfaces",
            C,
            Blocked,
            "no network interface but loopback",
            |_| {
                let ifs = interfaces();
                if ifs.iter().all(|i| i == "lo") {
                    blocked("only lo")
                } else {
                    allowed(ifs.join(", "))
                }
            },
        ),
        p(
            "net-loopback-inside",
            C,
            Allowed,
            "loopback inside the sandbox works",
            |_| {
                let r = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| {
                    let a = l.local_addr()?;
                    let _c = TcpStream::connect_timeout(&a, Duration::from_secs(2))?;
                    l.accept().map(|_| ())
                });
                io_fails(r)
            },
        ),
    ]
}

fn interfaces() -> Vec<String> {
    fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
        .collect()
}

/// One probe's result line, as the runner prints it and the harness reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    pub id: String,
    #[serde(flatten)]
    pub obs: Obs,
}

/// Runs one probe in this process.
pub fn run_one(ctx: &Ctx, id: &str) -> anyhow::Result<Line> {
    let probe = all()
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| anyhow::anyhow!("no probe {id:?}"))?;
    Ok(Line {
        id: probe.id.to_owned(),
        obs: (probe.run)(ctx),
    })
}

/// Runs every probe, each in a fresh process of agentbox itself: a probe that succeeds in
/// changing its namespaces, capabilities or personality must not change what the next one sees.
/// A probe that crashes is reported as such.
pub fn run_all(ctx: &Ctx, ctx_json: &str) -> Vec<Line> {
    all()
        .into_iter()
        .map(|probe| {
            let out = std::process::Command::new(&ctx.self_exe)
                .args(["__probe", "--only", probe.id, ctx_json])
                .stdin(std::process::Stdio::null())
                .output();
            let line = out.as_ref().ok().and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout);
                serde_json::from_str::<Line>(text.lines().next()?).ok()
            });
            line.unwrap_or_else(|| Line {
                id: probe.id.to_owned(),
                obs: Obs {
                    // Neither answer fits: make it fail whatever was expected.
                    blocked: probe.expect == Allowed,
                    detail: match out {
                        Ok(o) => format!("the probe process ended with {}", o.status),
                        Err(e) => format!("the probe process did not start: {e}"),
                    },
                },
            })
        })
        .collect()
}
