//! The kernel settings that decide whether bwrap can make its namespaces and what the seccomp
//! filter guards: read from /proc/sys, interpreted by small pure functions (tested with values,
//! not with this machine's), rendered into checks with their exact fixes.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Check, sudo};

pub(super) const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";
pub(super) const USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
pub(super) const AA_RESTRICT: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const LEGACY_TIOCSTI: &str = "/proc/sys/dev/tty/legacy_tiocsti";
const SECCOMP_ACTIONS: &str = "/proc/sys/kernel/seccomp/actions_avail";

/// A numeric setting under /proc/sys: None when the kernel has no such file or it is not a
/// number. One open and one small read, no allocation: `preflight` calls this on every run.
pub(super) fn sysctl(path: &str) -> Option<u64> {
    let mut buf = [0u8; 32];
    let n = fs::File::open(path).ok()?.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Why bwrap cannot make the user namespace every agentbox sandbox starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UsernsBlock {
    /// `user.max_user_namespaces = 0`: nobody gets one, root and a setuid bwrap included.
    MaxZero,
    /// `kernel.unprivileged_userns_clone = 0` (Debian-family kernels): only privileged callers.
    CloneOff,
}

/// `privileged`: root, or a setuid bwrap (both have CAP_SYS_ADMIN when they create it).
pub(super) fn userns_block(
    max: Option<u64>,
    clone: Option<u64>,
    privileged: bool,
) -> Option<UsernsBlock> {
    match (max, clone) {
        (Some(0), _) => Some(UsernsBlock::MaxZero),
        (_, Some(0)) if !privileged => Some(UsernsBlock::CloneOff),
        _ => None,
    }
}

/// Whether Ubuntu's AppArmor restriction stops this bwrap: it is on, the caller is not
/// privileged, and no AppArmor profile attached to bwrap allows user namespaces.
pub(super) fn apparmor_blocks(restrict: Option<u64>, privileged: bool, covered: bool) -> bool {
    restrict.is_some_and(|r| r != 0) && !privileged && !covered
}

impl UsernsBlock {
    pub(super) fn key(self) -> &'static str {
        match self {
            UsernsBlock::MaxZero => "user.max_user_namespaces",
            UsernsBlock::CloneOff => "kernel.unprivileged_userns_clone",
        }
    }

    /// The value that lifts the block.
    pub(super) fn good(self) -> &'static str {
        match self {
            UsernsBlock::MaxZero => "15000",
            UsernsBlock::CloneOff => "1",
        }
    }

    pub(super) fn message(self) -> &'static str {
        match self {
            UsernsBlock::MaxZero => {
                "user namespaces are disabled on this host (user.max_user_namespaces = 0), and \
                 bwrap needs one for every sandbox"
            }
            UsernsBlock::CloneOff => {
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = \
                 0), and bwrap needs one for every sandbox"
            }
        }
    }
}

/// The sysctl configuration files that set `key`, with the value each gives, in the order
/// systemd-sysctl reads their directories.
fn set_in(key: &str) -> Vec<(PathBuf, String)> {
    let mut files = vec![PathBuf::from("/etc/sysctl.conf")];
    for dir in [
        "/etc/sysctl.d",
        "/run/sysctl.d",
        "/usr/local/lib/sysctl.d",
        "/usr/lib/sysctl.d",
        "/lib/sysctl.d",
    ] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
        .into_iter()
        .filter_map(|f| {
            let text = fs::read_to_string(&f).ok()?;
            let value = setting(&text, key)?;
            Some((f, value))
        })
        .collect()
}

/// The value a sysctl.d file gives `key` (`a.b = v`, `a/b=v`, `-a.b = v`); its last line for
/// it wins.
fn setting(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let l = l.trim().trim_start_matches('-');
        let (k, v) = l.split_once('=')?;
        let k = k.trim().replace('/', ".");
        (k == key).then(|| v.trim().to_owned())
    })
}

/// How to set `key` now and keep it after a reboot. Where a file already sets it, that file is
/// the one to change (a new file may be read before it and lose).
pub(super) fn sysctl_fix(key: &str, value: &str, uid: u32) -> Vec<String> {
    let s = sudo(uid);
    let mut fix = vec![format!("{s}sysctl -w {key}={value}")];
    let origins = set_in(key);
    if origins.is_empty() {
        fix.push(format!(
            "echo '{key} = {value}' | {s}tee /etc/sysctl.d/99-agentbox.conf   # keeps it after a reboot"
        ));
    }
    for (file, old) in origins {
        fix.push(format!(
            "to keep it after a reboot, change `{key} = {old}` to `{key} = {value}` in {}",
            file.display()
        ));
    }
    fix
}

pub(super) fn userns_check(uid: u32, setuid: bool) -> Check {
    let has_ns = Path::new("/proc/self/ns/user").exists();
    userns_judge(
        sysctl(MAX_USERNS),
        sysctl(USERNS_CLONE),
        has_ns,
        uid,
        setuid,
    )
}

/// The check from the settings read. Pure but for the sysctl files named in the fix.
fn userns_judge(
    max: Option<u64>,
    clone: Option<u64>,
    has_ns: bool,
    uid: u32,
    setuid: bool,
) -> Check {
    let name = "user-namespaces";
    let shown = |v: Option<u64>| v.map_or("absent".to_owned(), |v| v.to_string());
    let values = format!(
        "user.max_user_namespaces = {}, kernel.unprivileged_userns_clone = {}",
        shown(max),
        shown(clone)
    );
    if !has_ns {
        return Check::fail(
            name,
            "this kernel has no user namespaces (no /proc/self/ns/user)",
            vec!["boot a kernel with user namespaces (CONFIG_USER_NS)".to_owned()],
        );
    }
    let privileged = uid == 0 || setuid;
    match userns_block(max, clone, privileged) {
        Some(b) => Check::fail(
            name,
            format!("{} ({values})", b.message()),
            sysctl_fix(b.key(), b.good(), uid),
        ),
        // Root passes where other users would not: say so, they are who run agents.
        None => match userns_block(max, clone, false) {
            Some(b) if uid == 0 && !setuid => Check::warn(
                name,
                format!("enabled for root only: {} ({values})", b.message()),
                sysctl_fix(b.key(), b.good(), uid),
            ),
            _ => Check::ok(name, format!("enabled ({values})")),
        },
    }
}

/// The kernel's seccomp support: the `Seccomp:` line in /proc/self/status (CONFIG_SECCOMP) and
/// the `errno` action agentbox's programs return (CONFIG_SECCOMP_FILTER).
pub(super) fn seccomp_kernel(status: &str, actions: Option<&str>) -> Result<String, String> {
    let mode = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim);
    let Some(mode) = mode else {
        return Err("this kernel has no seccomp (no Seccomp: line in /proc/self/status)".into());
    };
    let actions = actions.map(str::trim).unwrap_or("");
    if !actions.split_whitespace().any(|a| a == "errno") {
        return Err(format!(
            "this kernel cannot run seccomp filters that return an errno (actions available: \
             {:?})",
            actions
        ));
    }
    let already = match mode {
        "0" => "",
        "2" => "; agentbox itself already runs under a filter (a container?), which stays in force",
        _ => "; agentbox itself runs in strict seccomp mode",
    };
    Ok(format!("kernel filters available ({actions}){already}"))
}

pub(super) fn seccomp_status() -> Result<String, String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let actions = fs::read_to_string(SECCOMP_ACTIONS).ok();
    seccomp_kernel(&status, actions.as_deref())
}

/// What `dev.tty.legacy_tiocsti` means here. Not a problem either way: the seccomp filter
/// refuses TIOCSTI and TIOCLINUX inside the sandbox.
pub(super) fn tiocsti(value: Option<u64>) -> String {
    match value {
        None => "dev.tty.legacy_tiocsti absent (kernel before 6.2): any process on a terminal \
                 can push input into it with TIOCSTI; agentbox's seccomp filter refuses it \
                 inside the sandbox"
            .to_owned(),
        Some(0) => "dev.tty.legacy_tiocsti = 0: the kernel refuses TIOCSTI to unprivileged \
                    processes; agentbox's seccomp filter refuses it as well"
            .to_owned(),
        Some(v) => format!(
            "dev.tty.legacy_tiocsti = {v}: TIOCSTI works on this kernel, so a process on your \
             terminal could type into it; agentbox's seccomp filter refuses it inside the sandbox"
        ),
    }
}

pub(super) fn tiocsti_check() -> Check {
    Check::ok("legacy-tiocsti", tiocsti(sysctl(LEGACY_TIOCSTI)))
}

/// Landlock, the second wall: a warning (not a failure) where the kernel cannot give it, since
/// bwrap's mounts still hold.
pub(super) fn landlock_check(abi: u32) -> Check {
    let detail = crate::landlock::describe(abi);
    match abi {
        0 | 1 => Check::warn(
            "landlock",
            detail,
            vec![
                "boot Linux 5.19 or later with landlock in the lsm= list (e.g. \
                 lsm=landlock,lockdown,yama,integrity,apparmor on the kernel command line)"
                    .to_owned(),
            ],
        ),
        _ => Check::ok("landlock", detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landlock_is_reported_by_abi() {
        assert_eq!(landlock_check(0).status, super::super::Status::Warn);
        assert_eq!(landlock_check(1).status, super::super::Status::Warn);
        assert!(!landlock_check(1).fix.is_empty());
        let ok = landlock_check(6);
        assert_eq!(ok.status, super::super::Status::Ok);
        assert!(ok.detail.contains("ABI 6"), "{}", ok.detail);
    }

    #[test]
    fn user_namespace_settings() {
        use UsernsBlock::*;
        // (max_user_namespaces, unprivileged_userns_clone, privileged) -> block
        let table = [
            (Some(96365), None, false, None),
            (Some(96365), Some(1), false, None),
            (Some(96365), Some(0), false, Some(CloneOff)),
            (Some(96365), Some(0), true, None),
            (Some(0), None, false, Some(MaxZero)),
            (Some(0), Some(1), true, Some(MaxZero)),
            (Some(0), Some(0), false, Some(MaxZero)),
            (None, None, false, None),
            (Some(1), Some(1), false, None),
        ];
        for (max, clone, privileged, want) in table {
            assert_eq!(
                userns_block(max, clone, privileged),
                want,
                "{max:?} {clone:?} {privileged}"
            );
        }
    }

    #[test]
    fn apparmor_restriction() {
        // (apparmor_restrict_unprivileged_userns, privileged, covered by a profile) -> blocks
        let table = [
            (None, false, false, false),
            (Some(0), false, false, false),
            (Some(1), false, false, true),
            (Some(1), false, true, false),
            (Some(1), true, false, false),
            (Some(2), false, false, true),
        ];
        for (restrict, privileged, covered, want) in table {
            assert_eq!(
                apparmor_blocks(restrict, privileged, covered),
                want,
                "{restrict:?} {privileged} {covered}"
            );
        }
    }

    #[test]
    fn sysctl_files() {
        let text = "# hardening\nuser.max_user_namespaces = 0\n-kernel/unprivileged_userns_clone=0\n\
                    kernel.unprivileged_userns_clone = 1\n";
        assert_eq!(
            setting(text, "user.max_user_namespaces").as_deref(),
            Some("0")
        );
        assert_eq!(
            setting(text, "kernel.unprivileged_userns_clone").as_deref(),
            Some("1")
        );
        assert_eq!(setting(text, "dev.tty.legacy_tiocsti"), None);
    }

    #[test]
    fn seccomp_support() {
        let all = Some("kill_process kill_thread trap errno user_notif trace log allow\n");
        let status = "Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n";
        assert!(seccomp_kernel(status, all).is_ok());
        let inside = seccomp_kernel("Seccomp:\t2\n", all).unwrap();
        assert!(inside.contains("already runs under a filter"));
        assert!(seccomp_kernel("Name:\tx\n", all).is_err());
        assert!(seccomp_kernel(status, None).is_err());
        assert!(seccomp_kernel(status, Some("kill_thread allow")).is_err());
    }

    #[test]
    fn tiocsti_values() {
        assert!(tiocsti(None).contains("before 6.2"));
        assert!(tiocsti(Some(0)).contains("refuses TIOCSTI to unprivileged"));
        assert!(tiocsti(Some(1)).contains("= 1: TIOCSTI works"));
    }

    #[test]
    fn reads_this_machine() {
        // /proc/sys/user/max_user_namespaces exists on every kernel with user namespaces.
        assert!(sysctl(MAX_USERNS).is_some());
        assert_eq!(sysctl("/proc/sys/kernel/no_such_setting"), None);
    }

    #[test]
    fn judges_user_namespaces() {
        use crate::doctor::Status::*;
        let status = |max, clone, uid, setuid| userns_judge(max, clone, true, uid, setuid).status;
        assert_eq!(status(Some(96365), None, 1000, false), Ok);
        assert_eq!(status(Some(96365), Some(1), 1000, false), Ok);
        assert_eq!(status(Some(96365), Some(0), 1000, false), Fail);
        assert_eq!(status(Some(96365), Some(0), 0, false), Warn);
        assert_eq!(status(Some(96365), Some(0), 1000, true), Ok);
        assert_eq!(status(Some(0), Some(1), 0, false), Fail);
        assert_eq!(status(Some(0), None, 1000, true), Fail);
        assert_eq!(userns_judge(None, None, false, 0, false).status, Fail);
        let c = userns_judge(Some(96365), Some(0), true, 1000, false);
        assert!(
            c.detail.contains("kernel.unprivileged_userns_clone = 0"),
            "{}",
            c.detail
        );
        assert_eq!(
            c.fix[0],
            "sudo sysctl -w kernel.unprivileged_userns_clone=1"
        );
        let c = userns_judge(Some(0), None, true, 0, false);
        assert_eq!(c.fix[0], "sysctl -w user.max_user_namespaces=15000");
        assert!(
            c.fix.len() >= 2,
            "and how to keep it after a reboot: {:?}",
            c.fix
        );
    }
}
