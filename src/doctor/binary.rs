//! The bwrap binary: found the way `agentbox run` finds it (the `--bwrap` path, else the first
//! acceptable `bwrap` on PATH), its version and what agentbox can use of it, and who can
//! change it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::bwrap::{Features, MIN_BWRAP};
use crate::host::bwrap::{Bwrap, BwrapRefusal as Refusal, bwrap_candidates, version};
use crate::hostenv::Env;

use super::{Check, sandbox, sudo};

/// Doctor's words for a refusal, where the writable root is the current directory, the
/// default project.
trait Words {
    fn why(self) -> &'static str;
    fn fix(self, path: &Path, uid: u32) -> String;
}

impl Words for Refusal {
    fn why(self) -> &'static str {
        match self {
            Refusal::InWritableRoot => {
                "it is inside the current directory, the default project, where the agent can \
                 replace it"
            }
            Refusal::Writable => "it is writable by group or others",
            Refusal::NotExecutable => "it is not executable",
        }
    }

    fn fix(self, path: &Path, uid: u32) -> String {
        match self {
            Refusal::InWritableRoot => format!(
                "install bubblewrap outside the project and agentbox's own data (agent homes, \
                 caches), or pass it with --bwrap PATH; {} is not used from there",
                path.display()
            ),
            Refusal::Writable => format!("{}chmod go-w {}", sudo(uid), path.display()),
            Refusal::NotExecutable => install_command(&os_release(), uid),
        }
    }
}

/// Whether `agentbox run` refuses this bwrap, as `Bwrap::find` decides (the current
/// directory stands for the project; `areas` are agentbox's own, which sandboxes write too).
fn refusal(canon: &Path, mode: u32, project: Option<&Path>, areas: &[PathBuf]) -> Option<Refusal> {
    let roots: Vec<&Path> = project
        .into_iter()
        .chain(areas.iter().map(PathBuf::as_path))
        .collect();
    Refusal::of(canon, mode, &roots)
}

/// The current directory, when `agentbox run` would take it as the project (the same rule).
fn default_project(cwd: &Path, home: Option<&Path>) -> bool {
    crate::broad::too_broad(cwd, home.unwrap_or(Path::new("/nonexistent-home"))).is_none()
}

/// The package command for the distribution in /etc/os-release.
pub(super) fn install_command(os_release: &str, uid: u32) -> String {
    let field = |k: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let ids = format!("{} {}", field("ID"), field("ID_LIKE"));
    let is = |id: &str| ids.split_whitespace().any(|i| i == id);
    let s = sudo(uid);
    if is("nixos") {
        return "add bubblewrap to environment.systemPackages".to_owned();
    }
    let cmd = [
        ("debian", "apt-get install bubblewrap"),
        ("ubuntu", "apt-get install bubblewrap"),
        ("fedora", "dnf install bubblewrap"),
        ("rhel", "dnf install bubblewrap"),
        ("arch", "pacman -S bubblewrap"),
        ("suse", "zypper install bubblewrap"),
        ("opensuse", "zypper install bubblewrap"),
        ("alpine", "apk add bubblewrap"),
        ("gentoo", "emerge sys-apps/bubblewrap"),
    ]
    .iter()
    .find(|(id, _)| is(id))
    .map_or("install your distribution's bubblewrap package", |(_, c)| c);
    match cmd.starts_with("install") {
        true => cmd.to_owned(),
        false => format!("{s}{cmd}"),
    }
}

/// The version as `agentbox run` reads it; `--version`, where it has to run, is given the
/// trial sandboxes' timeout.
fn version_of(path: &Path) -> Result<(u32, u32, u32), String> {
    version(path, |cmd| Ok(sandbox::run(cmd, &[])?.stdout)).map_err(|e| format!("{e:#}"))
}

/// Finds bwrap and reads its version: the check, and the bwrap when it is usable.
pub(super) fn find(explicit: Option<&Path>, uid: u32, env: &Env) -> (Check, Option<Bwrap>) {
    let name = "bwrap";
    let home = env.home().ok().and_then(|h| fs::canonicalize(h).ok());
    let project = env
        .cwd()
        .ok()
        .and_then(|c| fs::canonicalize(c).ok())
        .filter(|c| default_project(c, home.as_deref()));
    let areas = match env.home() {
        Ok(h) => crate::host::agentbox_areas_of(env, h, uid),
        Err(_) => Vec::new(),
    };
    let mut refused = Vec::new();
    for (canon, mode) in bwrap_candidates(explicit, env) {
        if let Some(r) = refusal(&canon, mode, project.as_deref(), &areas) {
            refused.push((canon, r));
            continue;
        }
        let version = match version_of(&canon) {
            Ok(v) => v,
            Err(e) => {
                let fix = vec!["pass the real bubblewrap with --bwrap PATH".to_owned()];
                return (Check::fail(name, e, fix), None);
            }
        };
        let (a, b, c) = version;
        let mut detail = format!("{}, bubblewrap {a}.{b}.{c}", canon.display());
        if !refused.is_empty() {
            detail.push_str(&format!("; passed over: {}", listed(&refused)));
        }
        let bwrap = Bwrap {
            path: canon,
            version,
            setuid: mode & 0o4000 != 0,
        };
        if version < MIN_BWRAP {
            let fix = vec![format!(
                "upgrade bubblewrap ({}), or pass a newer one with --bwrap PATH",
                install_command(&os_release(), uid)
            )];
            let detail = format!("{detail}: too old, agentbox needs 0.6 or later");
            return (Check::fail(name, detail, fix), None);
        }
        return (Check::ok(name, detail), Some(bwrap));
    }
    let (detail, fix) = match (refused.is_empty(), explicit) {
        (true, Some(p)) => (
            format!("{} is not a file", p.display()),
            vec!["pass the path of bubblewrap's bwrap with --bwrap PATH".to_owned()],
        ),
        (true, None) => (
            "bwrap (bubblewrap) is not on PATH".to_owned(),
            vec![install_command(&os_release(), uid)],
        ),
        (false, _) => (
            format!("refusing to use {}", listed(&refused)),
            refused.iter().map(|(p, r)| r.fix(p, uid)).collect(),
        ),
    };
    (Check::fail(name, detail, fix), None)
}

fn listed(refused: &[(PathBuf, Refusal)]) -> String {
    let each: Vec<String> = refused
        .iter()
        .map(|(p, r)| format!("{} ({})", p.display(), r.why()))
        .collect();
    each.join(", ")
}

fn os_release() -> String {
    fs::read_to_string("/etc/os-release")
        .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default()
}

/// What agentbox can use of this version, and what it does without the rest.
pub(super) fn features(bwrap: &Bwrap, uid: u32) -> Check {
    let name = "bwrap-features";
    let f = Features::of(bwrap.version, bwrap.setuid);
    let yes = |b: bool| if b { "yes" } else { "no" };
    let detail = format!(
        "--add-seccomp-fd, --clearenv (0.6): yes; tmpfs --size (0.7, not setuid): {}; \
         --disable-userns (0.8): {}",
        yes(f.tmpfs_size),
        yes(f.disable_userns)
    );
    let mut missing = Vec::new();
    if !f.tmpfs_size {
        missing.push("tmpfs mounts (/tmp, the home) have no size bound: the agent can fill memory");
    }
    if !f.disable_userns {
        missing.push("nested user namespaces are refused by the seccomp filter alone");
    }
    if missing.is_empty() {
        return Check::ok(name, detail);
    }
    let fix = match bwrap.version < (0, 8, 0) {
        true => vec![format!(
            "upgrade bubblewrap to 0.8 or later ({}), or pass a newer one with --bwrap PATH",
            install_command(&os_release(), uid)
        )],
        false => vec!["see bwrap-permissions: a setuid bwrap cannot size tmpfs".to_owned()],
    };
    Check::warn(name, format!("{detail}; {}", missing.join("; ")), fix)
}

/// Who owns bwrap and can replace it, its mode, setuid and file capabilities.
pub(super) fn permissions(bwrap: &Bwrap, uid: u32) -> Check {
    let name = "bwrap-permissions";
    let p = bwrap.path.display();
    let Ok(meta) = fs::metadata(&bwrap.path) else {
        return Check::fail(name, format!("cannot read {p}"), Vec::new());
    };
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    let detail = format!("owner uid {owner}, mode {mode:04o}");
    let s = sudo(uid);
    let caps = rustix::fs::getxattr(&bwrap.path, "security.capability", &mut [0u8; 64][..])
        .is_ok_and(|n| n > 0);
    if mode & 0o022 != 0 {
        return Check::fail(
            name,
            format!("{detail}: writable by group or others, who would own every sandbox"),
            vec![format!("{s}chmod go-w {p}")],
        );
    }
    if caps && !bwrap.setuid {
        return Check::fail(
            name,
            format!("{detail}: file capabilities without setuid, which bwrap refuses to run with"),
            vec![format!("{s}setcap -r {p}")],
        );
    }
    if owner != 0 && owner != uid {
        return Check::warn(
            name,
            format!("{detail}: uid {owner} can replace it, and with it every sandbox"),
            vec![format!("{s}chown root:root {p}")],
        );
    }
    if bwrap.setuid {
        return Check::warn(
            name,
            format!(
                "{detail}: setuid root, so a bwrap bug is a root exploit, and tmpfs sizes \
                 cannot be set"
            ),
            vec![format!(
                "once user namespaces work for unprivileged users (user-namespaces, \
                 apparmor-userns): {s}chmod u-s {p}"
            )],
        );
    }
    Check::ok(name, format!("{detail}, not setuid, no file capabilities"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_like_agentbox_run() {
        let cwd = Path::new("/home/u/project");
        let bin = Path::new("/usr/bin/bwrap");
        let areas = [PathBuf::from("/home/u/.local/share/agentbox")];
        assert_eq!(refusal(bin, 0o100755, Some(cwd), &areas), None);
        assert_eq!(refusal(bin, 0o104755, None, &[]), None);
        assert_eq!(refusal(bin, 0o100775, None, &[]), Some(Refusal::Writable));
        assert_eq!(
            refusal(bin, 0o100644, None, &[]),
            Some(Refusal::NotExecutable)
        );
        let planted = Path::new("/home/u/project/bin/bwrap");
        assert_eq!(
            refusal(planted, 0o100755, Some(cwd), &areas),
            Some(Refusal::InWritableRoot)
        );
        // In an agent's home, which its sandboxes write: refused too, as `run` does.
        let in_home = Path::new("/home/u/.local/share/agentbox/home/claude/bin/bwrap");
        assert_eq!(refusal(in_home, 0o100755, None, &[]), None);
        assert_eq!(
            refusal(in_home, 0o100755, None, &areas),
            Some(Refusal::InWritableRoot)
        );
        assert_eq!(
            Refusal::Writable.fix(Path::new("/opt/bwrap"), 1000),
            "sudo chmod go-w /opt/bwrap"
        );
        // Where `agentbox run` would refuse the directory as a project, nothing is "inside" it.
        let home = Some(Path::new("/home/u"));
        assert!(default_project(cwd, home));
        assert!(default_project(Path::new("/usr/local/bin"), home));
        for broad in [
            "/",
            "/home",
            "/home/u",
            "/tmp",
            "/usr",
            "/proc/self",
            "/usr/local",
        ] {
            assert!(!default_project(Path::new(broad), home), "{broad}");
        }
    }

    #[test]
    fn install_commands() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            install_command(debian, 1000),
            "sudo apt-get install bubblewrap"
        );
        assert_eq!(install_command(debian, 0), "apt-get install bubblewrap");
        let mint = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
        assert_eq!(install_command(mint, 0), "apt-get install bubblewrap");
        let rocky = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
        assert_eq!(install_command(rocky, 0), "dnf install bubblewrap");
        assert!(install_command("ID=nixos\n", 0).contains("environment.systemPackages"));
        assert_eq!(
            install_command("", 1000),
            "install your distribution's bubblewrap package"
        );
    }
}
