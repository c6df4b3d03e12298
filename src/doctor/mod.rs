//! `agentbox doctor`: whether this host can run the sandbox, check by check, each problem with
//! its exact fix; `preflight` (file reads only) and `explain` (bwrap's error texts) let
//! `agentbox run` say the same before and after a start that cannot work. It reads the host and
//! starts trial sandboxes; it never changes the host, and no fix it prints runs the agent
//! unsandboxed or with the host network.
//!
//! Checks, in order: `bwrap` (found as `agentbox run` finds it, its version),
//! `bwrap-features`, `bwrap-permissions`, `user-namespaces`, `apparmor-userns`, `sandbox` (a
//! real one starts), `seccomp` (kernel support, and agentbox's programs load), `filtered-network`
//! (what the relay does inside), `legacy-tiocsti`, `resolv.conf`, then the installed agents.

mod apparmor;
mod binary;
mod explain;
mod host;
mod kernel;
mod sandbox;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::error::Fail;
use crate::host::Bwrap;
use crate::hostenv::Env;
use explain::Cause;
pub use explain::explain;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check: `fix` holds the exact commands (or, where there is a choice, a line saying what
/// the next commands do), empty when there is nothing to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fix: Vec<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail, Vec::new())
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: Vec<String>) -> Check {
        Check::new(name, Status::Warn, detail, fix)
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: Vec<String>) -> Check {
        Check::new(name, Status::Fail, detail, fix)
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Vec<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// The prefix a command that needs root gets.
fn sudo(uid: u32) -> &'static str {
    if uid == 0 { "" } else { "sudo " }
}

/// The user the checks run as: the one whose sandboxes they are about.
#[derive(Debug, Clone, Copy)]
struct Me {
    uid: u32,
    gid: u32,
}

fn me() -> Result<Me> {
    let m = std::fs::metadata("/proc/self").context("reading /proc/self")?;
    Ok(Me {
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// Runs every check and prints the report (plain text; `json` = one JSON document). Exit 0 when
/// nothing blocks `agentbox run`, 1 when something does.
pub fn run(
    json: bool,
    bwrap: Option<&std::path::Path>,
    env: &Env,
) -> anyhow::Result<std::process::ExitCode> {
    let me = me()?;
    let checks = checks(bwrap, me, env)?;
    let text = match json {
        true => json_report(&checks, me.uid)?,
        false => text_report(&checks, me.uid),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::from(u8::from(blocked(&checks))))
}

/// Cheap checks (file reads only, no process started) that explain a launch that cannot work,
/// for `agentbox run` to call before exec'ing bwrap: Err(Fail with message + hint, exit 125)
/// when user namespaces are off (max_user_namespaces 0, unprivileged_userns_clone 0 for a
/// non-root user with a non-setuid bwrap) or Ubuntu's AppArmor restriction is on and no AppArmor
/// profile covers this bwrap. Ok(()) otherwise. Must cost well under 0.1 ms when all is fine.
pub fn preflight(bwrap: &std::path::Path, bwrap_setuid: bool, uid: u32) -> anyhow::Result<()> {
    let privileged = uid == 0 || bwrap_setuid;
    let max = kernel::sysctl(kernel::MAX_USERNS);
    // The other settings matter only to an unprivileged caller: root reads one file.
    let clone = match privileged {
        true => None,
        false => kernel::sysctl(kernel::USERNS_CLONE),
    };
    if let Some(b) = kernel::userns_block(max, clone, privileged) {
        bail!(Fail::hint(
            b.message(),
            format!(
                "{}sysctl -w {}={}; `agentbox doctor` shows how to keep it after a reboot",
                sudo(uid),
                b.key(),
                b.good()
            ),
        ));
    }
    if apparmor::blocks(bwrap, privileged) {
        bail!(Fail::hint(
            format!(
                "Ubuntu's AppArmor restriction of unprivileged user namespaces is on \
                 (kernel.apparmor_restrict_unprivileged_userns = 1) and no AppArmor profile lets \
                 {} create them: the sandbox cannot start",
                bwrap.display()
            ),
            Cause::AppArmor.text().1,
        ));
    }
    Ok(())
}

fn blocked(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

fn checks(explicit: Option<&Path>, me: Me, env: &Env) -> Result<Vec<Check>> {
    let (found, bwrap) = binary::find(explicit, me.uid, env);
    let mut v = vec![found];
    if let Some(b) = &bwrap {
        v.push(binary::features(b, me.uid));
        v.push(binary::permissions(b, me.uid));
    }
    let setuid = bwrap.as_ref().is_some_and(|b| b.setuid);
    let userns = kernel::userns_check(me.uid, setuid);
    // Without a bwrap, the restriction is still worth reporting, for where it will be.
    let aa_path = bwrap
        .as_ref()
        .map_or(Path::new("/usr/bin/bwrap"), |b| &b.path);
    let (aa, cover) = apparmor::check(aa_path, me.uid, setuid);
    let known = Known {
        userns: &userns,
        apparmor: &aa,
        cover: cover.as_ref(),
        uid: me.uid,
    };
    let trials = match &bwrap {
        Some(b) => trials(b, me, &known, env)?,
        None => vec![
            Check::warn("sandbox", "not tried: no usable bwrap", Vec::new()),
            match kernel::seccomp_status() {
                Ok(k) => Check::ok("seccomp", k),
                Err(e) => Check::fail("seccomp", e, vec![SECCOMP_FIX.to_owned()]),
            },
        ],
    };
    v.push(userns.clone());
    v.push(aa.clone());
    v.extend(trials);
    v.push(kernel::tiocsti_check());
    v.push(kernel::landlock_check(crate::landlock::abi()));
    v.push(host::resolv_check(&host::resolv_at(Path::new(
        "/etc/resolv.conf",
    ))));
    // `--memory`/`--pids` for this user: a warning, as a run without them still starts.
    v.push(match crate::limits::availability(me.uid) {
        Ok(how) => Check::ok("limits", format!("--memory/--pids can be enforced: {how}")),
        Err(why) => Check::warn(
            "limits",
            format!("--memory/--pids would be refused for this user: {why}"),
            vec![
                "run as root, or in a cgroup delegated to this user (systemd: a user session, \
                 or Delegate=yes), or leave out --memory/--pids"
                    .to_owned(),
            ],
        ),
    });
    v.extend(host::agents(env));
    v.push(gpu_check(&crate::host::gpu::probe()));
    Ok(v)
}

/// What `--gpu` would hand over on this host (nothing is not a problem: a note).
fn gpu_check(g: &crate::host::gpu::Gpu) -> Check {
    if g.is_empty() {
        return Check::ok("gpu", "no GPU device nodes: --gpu would be refused");
    }
    let nodes: Vec<String> = g.nodes.iter().map(|p| p.display().to_string()).collect();
    Check::ok(
        "gpu",
        format!(
            "--gpu would hand over {} ({})",
            nodes.join(", "),
            g.vendors.join(", ")
        ),
    )
}

const SECCOMP_FIX: &str = "boot a kernel with seccomp filters (CONFIG_SECCOMP_FILTER): agentbox \
                           does not start without its filter";

/// The findings a failed trial is explained by: their fixes are more exact than a hint.
struct Known<'a> {
    userns: &'a Check,
    apparmor: &'a Check,
    cover: Option<&'a apparmor::Coverage>,
    uid: u32,
}

/// A failed trial as a check: what failed, why (through `explain`), and the fix: the exact one
/// from the check that found the cause, else what is known without it.
fn failed(name: &str, what: &str, o: &sandbox::Outcome, known: &Known) -> Check {
    let said = o.said();
    let Some(cause) = explain::cause(&o.stderr) else {
        let report = "no known fix for this message; `agentbox doctor --json` has the details to \
                      report";
        return Check::fail(name, format!("{what}: {said}"), vec![report.to_owned()]);
    };
    let (diagnosis, hint) = cause.text();
    let exact = |c: &Check| (!c.fix.is_empty()).then(|| c.fix.clone());
    let fix = match cause {
        Cause::AppArmor => exact(known.apparmor).unwrap_or_else(|| match known.cover {
            Some(c) => vec![format!(
                "the profile in {} may not be loaded: {}apparmor_parser -r {}",
                c.file.display(),
                sudo(known.uid),
                c.file.display()
            )],
            None => vec![
                "AppArmor's restriction is not on here (apparmor-userns): another security \
                 module, or the container agentbox runs in, denies bwrap its rights; the kernel \
                 log names it: sudo dmesg | grep -i denied"
                    .to_owned(),
            ],
        }),
        Cause::UsernsOff | Cause::UsernsLimit => exact(known.userns).unwrap_or_else(|| {
            vec![
                "the host settings allow them (user-namespaces), so a container or seccomp \
                 policy around agentbox refuses them: run agentbox on the host"
                    .to_owned(),
            ]
        }),
        _ => vec![hint.to_owned()],
    };
    Check::fail(name, format!("{what}: {diagnosis} ({said})"), fix)
}

/// The trial sandboxes: plain, with seccomp, and the filtered network's relay setup.
fn trials(b: &Bwrap, me: Me, known: &Known, env: &Env) -> Result<Vec<Check>> {
    let t = match sandbox::Trials::new(b, sandbox::project()?, env) {
        Ok(t) => t,
        Err(e) => return Ok(refused(&e)),
    };
    let first = t.minimal()?;
    let started = first.success();
    let sandbox = match started {
        true => Check::ok(
            "sandbox",
            "a sandbox with its own user, pid, network, ipc and uts namespaces starts and runs `true`",
        ),
        false => failed("sandbox", "the sandbox does not start", &first, known),
    };
    let seccomp = match (kernel::seccomp_status(), started) {
        (Err(e), _) => Check::fail("seccomp", e, vec![SECCOMP_FIX.to_owned()]),
        (Ok(k), false) => Check::warn(
            "seccomp",
            format!("{k}; agentbox's programs not tried: the sandbox does not start"),
            Vec::new(),
        ),
        (Ok(k), true) => {
            let o = t.with_seccomp()?;
            match o.success() {
                true => Check::ok(
                    "seccomp",
                    format!("{k}; agentbox's programs load in a trial sandbox"),
                ),
                false => failed(
                    "seccomp",
                    &format!("{k}, but agentbox's programs do not load"),
                    &o,
                    known,
                ),
            }
        }
    };
    let relay = relay_check(&t, b, me, started, known)?;
    Ok(vec![sandbox, seccomp, relay])
}

/// When `agentbox run -- true` would refuse before starting bwrap (what the trials' plan
/// meets), the sandbox check says so with run's own hint, and nothing is tried.
fn refused(e: &anyhow::Error) -> Vec<Check> {
    let (_, hint) = crate::error::classify(e);
    let not_tried = "not tried: agentbox run refuses before starting a sandbox";
    vec![
        Check::fail(
            "sandbox",
            format!("agentbox run would refuse: {e:#}"),
            hint.map(str::to_owned).into_iter().collect(),
        ),
        match kernel::seccomp_status() {
            Err(e) => Check::fail("seccomp", e, vec![SECCOMP_FIX.to_owned()]),
            Ok(k) => Check::warn(
                "seccomp",
                format!("{k}; agentbox's programs not tried: agentbox run refuses"),
                Vec::new(),
            ),
        },
        Check::warn("filtered-network", not_tried, Vec::new()),
    ]
}

/// Agent profiles run with `--net filtered` by default: its relay sets up inside as uid 0 with
/// a few capabilities, then maps the user back in a nested user namespace.
fn relay_check(
    t: &sandbox::Trials,
    b: &Bwrap,
    me: Me,
    started: bool,
    known: &Known,
) -> Result<Check> {
    let name = "filtered-network";
    if !started {
        return Ok(Check::warn(
            name,
            "not tried: the sandbox does not start",
            Vec::new(),
        ));
    }
    let Some(o) = t.relay(me.uid, me.gid)? else {
        let detail = "not tried: util-linux `unshare` is not on PATH to try it with";
        return Ok(Check::warn(name, detail, Vec::new()));
    };
    if o.success() {
        return Ok(Check::ok(
            name,
            "the relay's setup works: inside, as uid 0 with its capabilities, a nested user \
             namespace maps your ids back",
        ));
    }
    if o.stderr.contains("unrecognized option") || o.stderr.contains("invalid option") {
        let detail = format!("not tried: this `unshare` has no --map-user ({})", o.said());
        return Ok(Check::warn(name, detail, Vec::new()));
    }
    let what = "the sandbox starts, but the setup of --net filtered's relay fails inside it, so \
                agents (whose profiles filter the network by default) cannot start; --net none \
                works";
    let stock = known.cover.filter(|c| c.stock);
    if let Some(c) = stock {
        let mut fix = vec![format!(
            "Ubuntu's stock profile {} denies every capability to what runs in bwrap; replace it \
             with one that lets bwrap create user namespaces and nothing more:",
            c.file.display()
        )];
        fix.extend(apparmor::disable_stock_fix(&c.file, known.uid));
        fix.extend(apparmor::install_fix(&b.path, known.uid));
        return Ok(Check::fail(
            name,
            format!("{what} (inside: {})", o.said()),
            fix,
        ));
    }
    Ok(failed(name, what, &o, known))
}

fn text_report(checks: &[Check], uid: u32) -> String {
    let mut s = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "[ok]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        s.push_str(&format!("{tag} {}: {}\n", c.name, c.detail));
        for f in &c.fix {
            s.push_str(&format!("  fix: {f}\n"));
        }
    }
    let count = |st: Status| checks.iter().filter(|c| c.status == st).count();
    let (fails, warns) = (count(Status::Fail), count(Status::Warn));
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    s.push_str(&match fails {
        0 => format!(
            "\nnothing blocks `agentbox run` for uid {uid} ({})\n",
            plural(warns, "warning")
        ),
        n => format!(
            "\n{} `agentbox run` for uid {uid} ({})\n",
            match n {
                1 => "1 problem blocks".to_owned(),
                n => format!("{n} problems block"),
            },
            plural(warns, "warning")
        ),
    });
    s
}

#[derive(Serialize)]
struct Report<'a> {
    agentbox: &'static str,
    uid: u32,
    /// Whether something blocks `agentbox run` (the exit status is 1 then).
    blocked: bool,
    checks: &'a [Check],
}

fn json_report(checks: &[Check], uid: u32) -> Result<String> {
    let doc = Report {
        agentbox: env!("CARGO_PKG_VERSION"),
        uid,
        blocked: blocked(checks),
        checks,
    };
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

#[cfg(test)]
mod tests;
