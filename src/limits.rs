//! `--memory` and `--pids`: resource limits through a cgroup made for one sandbox (cgroup v2,
//! or the v1 memory and pids hierarchies), or through a systemd scope where the cgroup tree is
//! not ours to write. It never runs a sandbox without a limit that was asked for.
//!
//! This module does cgroup I/O; it is only called by the launcher, after planning.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::Fail;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory (swap included) for the whole sandbox.
    pub memory: Option<u64>,
    /// Processes and threads at once.
    pub pids: Option<u64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.pids.is_some()
    }
}

/// "4G", "512M", "64k", "1048576" -> bytes (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512M or 4G"))?;
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!("{s:?} is below 1M: nothing would start"));
    }
    Ok(bytes)
}

/// How the limits are enforced.
pub enum Enforcer {
    /// cgroups agentbox made and joined; removed when dropped.
    Cgroup(Cgroup),
    /// A command prefix (`systemd-run --scope ...`) that runs bwrap in a limited scope.
    Systemd(Vec<OsString>),
}

/// One cgroup directory per hierarchy, each with the parent agentbox came from.
pub struct Cgroup {
    dirs: Vec<(PathBuf, PathBuf)>,
}

/// A hierarchy: where our cgroup is, and which version it is.
struct Place {
    dir: PathBuf,
    v2: bool,
}

/// Finds the cgroup directory of this process in the hierarchy holding `controller` (or the
/// unified one), from /proc/self/mountinfo and /proc/self/cgroup.
fn place(controller: &str) -> Option<Place> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let (root, mount) = (fields.get(3)?, fields.get(4)?);
        let (fstype, opts) = (rfields.first()?, rfields.get(2).unwrap_or(&""));
        let v2 = *fstype == "cgroup2";
        let v1 = *fstype == "cgroup" && opts.split(',').any(|o| o == controller);
        if !v1 && !v2 {
            continue;
        }
        let path = cgroups.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let hit = if v2 {
                id == "0" && ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == controller)
            };
            hit.then_some(path)
        })?;
        let rel = Path::new(path).strip_prefix(root).ok()?;
        let dir = Path::new(mount).join(rel);
        if v2 {
            let ctrls = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            if !ctrls.split_whitespace().any(|c| c == controller) {
                continue;
            }
        }
        return Some(Place { dir, v2 });
    }
    None
}

/// Removes `agentbox-PID` cgroups whose agentbox is gone (after a SIGKILL); a cgroup that
/// still holds processes is left alone (rmdir refuses it).
fn sweep(parent: &Path) {
    for dir in crate::stale::orphans(parent, "agentbox-") {
        let _ = fs::remove_dir(dir);
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    fs::write(dir.join(file), value).with_context(|| format!("writing {}/{file}", dir.display()))
}

impl Cgroup {
    /// Makes the cgroups, writes the limits and moves this process in, so bwrap and everything
    /// it starts inherit them.
    fn create(limits: &Limits) -> Result<Cgroup> {
        let me = std::process::id().to_string();
        let mut wanted: Vec<(&str, Vec<(&'static str, String)>)> = Vec::new();
        if let Some(m) = limits.memory {
            wanted.push(("memory", vec![("memory", m.to_string())]));
        }
        if let Some(p) = limits.pids {
            wanted.push(("pids", vec![("pids", p.to_string())]));
        }
        let mut cg = Cgroup { dirs: Vec::new() };
        for (controller, _) in &wanted {
            let place = place(controller)
                .with_context(|| format!("no cgroup hierarchy with the {controller} controller"))?;
            let child = place.dir.join(format!("agentbox-{me}"));
            if !cg.dirs.iter().any(|(c, _)| c == &child) {
                sweep(&place.dir);
                if place.v2 {
                    // The limits are set in the child, so the parent must hand it the
                    // controller (refused, EBUSY, where the parent holds processes).
                    write(
                        &place.dir,
                        "cgroup.subtree_control",
                        &format!("+{controller}"),
                    )?;
                }
                fs::create_dir(&child).with_context(|| format!("creating {}", child.display()))?;
                cg.dirs.push((child.clone(), place.dir.clone()));
            }
            match (*controller, place.v2) {
                ("memory", true) => {
                    write(
                        &child,
                        "memory.max",
                        &limits.memory.unwrap_or(0).to_string(),
                    )?;
                    let _ = write(&child, "memory.swap.max", "0");
                }
                ("memory", false) => {
                    let m = limits.memory.unwrap_or(0).to_string();
                    write(&child, "memory.limit_in_bytes", &m)?;
                    let _ = write(&child, "memory.memsw.limit_in_bytes", &m);
                }
                (_, _) => write(&child, "pids.max", &limits.pids.unwrap_or(0).to_string())?,
            }
        }
        for (child, _) in &cg.dirs {
            write(child, "cgroup.procs", &me)?;
        }
        Ok(cg)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let me = std::process::id().to_string();
        for (child, parent) in &self.dirs {
            let _ = write(parent, "cgroup.procs", &me);
            // The sandbox's processes are gone with its pid namespace, but the kernel may take
            // a moment to empty the cgroup.
            let deadline = Instant::now() + Duration::from_secs(2);
            while fs::remove_dir(child).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A systemd scope, where systemd runs this machine and the cgroup tree is its to manage.
fn systemd_prefix(limits: &Limits, uid: u32) -> Option<Vec<OsString>> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    // systemd's own tool, from the system's directories only: a `systemd-run` found through a
    // PATH entry in the project (direnv's PATH_add) would run on the host, unsandboxed.
    let run = ["/usr/bin/systemd-run", "/bin/systemd-run"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())?
        .to_owned();
    let mut v: Vec<OsString> = vec![run.into()];
    if uid != 0 {
        v.push("--user".into());
    }
    v.extend(["--scope", "--quiet", "--collect"].map(OsString::from));
    if let Some(m) = limits.memory {
        v.extend(["-p".into(), format!("MemoryMax={m}").into()]);
        v.extend(["-p".into(), "MemorySwapMax=0".into()]);
    }
    if let Some(p) = limits.pids {
        v.extend(["-p".into(), format!("TasksMax={p}").into()]);
    }
    v.push("--".into());
    Some(v)
}

/// Whether `--memory` and `--pids` can be enforced for this user, as `enforce` would, without
/// making anything (for `doctor`): how, or why not.
pub fn availability(uid: u32) -> Result<String, String> {
    use rustix::fs::{Access, access};
    let mut how = Vec::new();
    let mut missing = Vec::new();
    for controller in ["memory", "pids"] {
        let Some(p) = place(controller) else {
            missing.push(format!(
                "no cgroup hierarchy with the {controller} controller"
            ));
            continue;
        };
        let control = match p.v2 {
            true => p.dir.join("cgroup.subtree_control"),
            false => p.dir.clone(),
        };
        let writable =
            access(&p.dir, Access::WRITE_OK).is_ok() && access(&control, Access::WRITE_OK).is_ok();
        match writable {
            true => how.push(format!("{controller}: a cgroup under {}", p.dir.display())),
            false => missing.push(format!(
                "{controller}: {} is not yours to write",
                p.dir.display()
            )),
        }
    }
    if missing.is_empty() {
        return Ok(how.join("; "));
    }
    let both = Limits {
        memory: Some(1 << 30),
        pids: Some(1),
    };
    match systemd_prefix(&both, uid) {
        Some(_) => Ok(format!(
            "through a systemd scope (systemd-run{}), as {}",
            if uid == 0 { "" } else { " --user" },
            missing.join("; ")
        )),
        None => Err(format!(
            "{}, and systemd does not run here",
            missing.join("; ")
        )),
    }
}

/// Sets up enforcement, or says clearly why it cannot.
pub fn enforce(limits: &Limits, uid: u32) -> Result<Enforcer> {
    let direct = Cgroup::create(limits);
    match direct {
        Ok(cg) => Ok(Enforcer::Cgroup(cg)),
        Err(e) => match systemd_prefix(limits, uid) {
            Some(prefix) => Ok(Enforcer::Systemd(prefix)),
            None => Err(Fail::hint(
                format!("cannot enforce --memory/--pids: {e:#}, and systemd does not run here"),
                "run as root or in a delegated cgroup, or drop --memory/--pids",
            )
            .into()),
        },
    }
}

impl Cgroup {
    /// How many processes the kernel's OOM killer ended in these cgroups (cgroup v2
    /// `memory.events`, v1 `memory.oom_control`: both count `oom_kill`).
    fn oom_kills(&self) -> u64 {
        self.dirs
            .iter()
            .flat_map(|(d, _)| ["memory.events", "memory.oom_control"].map(|f| d.join(f)))
            .filter_map(|f| fs::read_to_string(f).ok())
            .map(|text| oom_kill_count(&text))
            .sum()
    }
}

/// The `oom_kill N` line of a cgroup's memory events.
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// One line on how the command ended, where a bare status would puzzle: the memory limit's
/// OOM kills (whatever the status: a build tool may survive a killed compiler and fail), or
/// a SIGKILL (137) with its likely causes.
pub fn exit_note(
    enforcer: Option<&Enforcer>,
    limits: &Limits,
    status: std::process::ExitStatus,
) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let size = limits.memory.map(|m| format!("{} MiB", m >> 20));
    if let (Some(Enforcer::Cgroup(cg)), Some(size)) = (enforcer, &size) {
        let kills = cg.oom_kills();
        if kills > 0 {
            return Some(format!(
                "out of memory: the kernel killed {kills} process(es) in the sandbox at the \
                 --memory limit ({size}); raise it, e.g. --memory 8G"
            ));
        }
    }
    let killed = status.signal() == Some(9) || status.code() == Some(137);
    if !killed {
        return None;
    }
    Some(match (enforcer, size) {
        (Some(Enforcer::Systemd(_)), Some(size)) => format!(
            "the command was killed (SIGKILL, exit 137): most likely the --memory limit \
             ({size}) of its systemd scope; raise it, e.g. --memory 8G"
        ),
        _ => "the command was killed (SIGKILL, exit 137): by the kernel's OOM killer (see \
              dmesg) or by a kill -9"
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_and_a_sigkill_is_described() {
        use std::os::unix::process::ExitStatusExt;
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v2), 1);
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(oom_kill_count(v1), 3);
        assert_eq!(oom_kill_count(""), 0);
        let none = Limits::default();
        let killed = std::process::ExitStatus::from_raw(9);
        assert!(
            exit_note(None, &none, killed)
                .unwrap()
                .contains("SIGKILL, exit 137")
        );
        let exited137 = std::process::ExitStatus::from_raw(137 << 8);
        assert!(exit_note(None, &none, exited137).is_some());
        assert!(exit_note(None, &none, std::process::ExitStatus::from_raw(1 << 8)).is_none());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2048k"), Ok(2 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in ["", "G", "4X", "-1", "1k", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
