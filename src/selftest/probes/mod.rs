//! The escape probes, as a table. Each probe runs inside the sandbox (agentbox's own binary is
//! the first process), makes direct syscalls and file operations, and says whether the thing it
//! tried was blocked. Probes that expect "allowed" are the positive controls: they show that
//! the neighbour of a blocked thing still works, so a sandbox that blocks everything fails.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};

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
mod brokered;
mod files;
mod io;
mod kernel;
mod procs;

pub fn all() -> Vec<Probe> {
    let mut v = Vec::new();
    v.extend(files::home());
    v.extend(files::project());
    v.extend(files::outside());
    v.extend(files::landlock());
    v.extend(files::runs_later());
    v.extend(procs::environment());
    v.extend(procs::processes());
    v.extend(kernel::syscalls());
    v.extend(io::sockets());
    v.extend(io::terminal());
    v.extend(io::privileges());
    v.extend(io::network());
    v.extend(brokered::probes());
    v
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
