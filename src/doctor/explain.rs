//! bwrap's error texts, mapped to what they mean on a real host and how to fix that. Pure: the
//! same table serves `agentbox run` (a failed start) and `agentbox doctor` (the trial sandbox).
//! Hints never suggest running unsandboxed or with the host network.

/// What stopped a sandbox from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// A user namespace was made but gave bwrap no rights in it: Ubuntu's AppArmor restriction.
    AppArmor,
    /// The kernel refuses unprivileged user namespaces (EPERM from clone).
    UsernsOff,
    /// `user.max_user_namespaces` is 0 or used up (ENOSPC from clone).
    UsernsLimit,
    /// A kernel built without user namespaces (EINVAL from clone).
    UsernsMissing,
    /// Namespaces refused to a privileged bwrap: a container or a seccomp policy around us.
    Refused,
    /// A fresh /proc refused: the current one is partly covered (a container).
    ProcMount,
    /// bwrap carries file capabilities without being setuid, which it refuses.
    FileCaps,
    /// bwrap does not know an option agentbox gave it.
    OldBwrap,
    /// The kernel refused the seccomp filter.
    Seccomp,
    /// A setuid bwrap cannot apply `--disable-userns` (it cannot write the namespace limit).
    DisableUserns,
    /// A setuid bwrap adds capabilities only for root (the filtered network's relay needs some).
    SetuidCaps,
}

/// The cause behind bwrap's stderr, if it is a known one.
pub(super) fn cause(stderr: &str) -> Option<Cause> {
    let has = |s: &str| stderr.contains(s);
    let denied = has("Permission denied") || has("Operation not permitted");
    // A namespace with no rights in it: the uid map cannot be written, loopback cannot be set up.
    let no_rights = ((has("uid map") || has("gid map") || has("setgroups")) && denied)
        || has("RTM_NEWADDR")
        || has("RTM_NEWLINK");
    let cause = if no_rights {
        Cause::AppArmor
    } else if has("No permissions to creating new namespace") {
        Cause::UsernsOff
    } else if has("max_*_namespaces exceeded")
        || has("Creating new namespace failed: No space left on device")
    {
        Cause::UsernsLimit
    } else if has("kernel does not support user namespaces") {
        Cause::UsernsMissing
    } else if has("Creating new namespace failed") {
        Cause::Refused
    } else if has("Can't mount proc on /newroot/proc") {
        Cause::ProcMount
    } else if has("Unexpected capabilities but not setuid") {
        Cause::FileCaps
    } else if has("/proc/sys/user/max_user_namespaces") {
        Cause::DisableUserns
    } else if has("in setuid mode can be used only by root") {
        Cause::SetuidCaps
    } else if has("Unknown option") {
        Cause::OldBwrap
    } else if has("PR_SET_SECCOMP") || (has("seccomp") && denied) {
        Cause::Seccomp
    } else {
        return None;
    };
    Some(cause)
}

impl Cause {
    /// The diagnosis and the hint, each one line.
    pub(super) fn text(self) -> (&'static str, &'static str) {
        match self {
            Cause::AppArmor => (
                "the kernel gave bwrap a user namespace but no rights in it: this is Ubuntu's \
                 AppArmor restriction of unprivileged user namespaces \
                 (kernel.apparmor_restrict_unprivileged_userns = 1), with no AppArmor profile \
                 that allows bwrap",
                "`agentbox doctor` prints an AppArmor profile that allows bwrap alone, and the \
                 commands to load it; or lift the restriction for every program: \
                 sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            ),
            Cause::UsernsOff => (
                "the kernel does not let unprivileged users create user namespaces \
                 (kernel.unprivileged_userns_clone = 0, or a container's seccomp policy)",
                "sudo sysctl -w kernel.unprivileged_userns_clone=1 (on the host, not in a \
                 container); `agentbox doctor` tells which it is and how to keep it after a reboot",
            ),
            Cause::UsernsLimit => (
                "user namespaces are disabled or used up (user.max_user_namespaces is 0 or \
                 reached)",
                "sudo sysctl -w user.max_user_namespaces=15000; `agentbox doctor` shows where it \
                 is set",
            ),
            Cause::UsernsMissing => (
                "this kernel has no user namespaces (built without CONFIG_USER_NS)",
                "boot a kernel with user namespaces (every mainstream distribution kernel has them)",
            ),
            Cause::Refused => (
                "the kernel refused to create the sandbox's namespaces: agentbox probably runs \
                 inside a container or another sandbox that forbids them",
                "run agentbox on the host, not inside a container",
            ),
            Cause::ProcMount => (
                "the kernel refused a fresh /proc for the sandbox: the /proc agentbox sees is \
                 partly covered, as in a Docker or Podman container, and Linux then refuses a \
                 new one",
                "run agentbox on the host; in a container, it needs /proc unmasked (Docker: \
                 --security-opt systempaths=unconfined, Podman: --security-opt unmask=ALL)",
            ),
            Cause::FileCaps => (
                "bwrap has file capabilities but is not setuid, which bwrap refuses",
                "sudo setcap -r \"$(command -v bwrap)\"",
            ),
            Cause::OldBwrap => (
                "this bwrap does not know an option agentbox gave it: it is older than the \
                 version it reports, or a wrapper around bwrap",
                "upgrade bubblewrap, or pass the real one with --bwrap PATH",
            ),
            Cause::Seccomp => (
                "the kernel refused agentbox's seccomp filter (a kernel without \
                 CONFIG_SECCOMP_FILTER)",
                "boot a kernel with seccomp filters: agentbox does not start without its filter",
            ),
            Cause::DisableUserns => (
                "bwrap could not limit nested user namespaces (--disable-userns): a setuid bwrap \
                 cannot write /proc/sys/user/max_user_namespaces inside the sandbox",
                "use bwrap without setuid where unprivileged user namespaces work: \
                 sudo chmod u-s \"$(command -v bwrap)\"",
            ),
            Cause::SetuidCaps => (
                "a setuid bwrap adds capabilities only for root, and --net filtered's relay needs \
                 a few inside the sandbox",
                "use bwrap without setuid where unprivileged user namespaces work: \
                 sudo chmod u-s \"$(command -v bwrap)\"",
            ),
        }
    }
}

/// Maps bwrap's stderr from a failed start to a diagnosis and a hint (None if unknown).
pub fn explain(bwrap_stderr: &str) -> Option<(String, String)> {
    let (diagnosis, hint) = cause(bwrap_stderr)?.text();
    Some((diagnosis.to_owned(), hint.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bwrap_messages() {
        let table: &[(&str, Option<Cause>)] = &[
            (
                "bwrap: setting up uid map: Permission denied\n",
                Some(Cause::AppArmor),
            ),
            (
                "bwrap: setting up gid map: Operation not permitted",
                Some(Cause::AppArmor),
            ),
            (
                "bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted\n",
                Some(Cause::AppArmor),
            ),
            (
                "bwrap: No permissions to creating new namespace, likely because the kernel \
                 does not allow non-privileged user namespaces. On e.g. debian this can be \
                 enabled with 'sysctl kernel.unprivileged_userns_clone=1'.",
                Some(Cause::UsernsOff),
            ),
            (
                "bwrap: Creating new namespace failed: No space left on device",
                Some(Cause::UsernsLimit),
            ),
            (
                "bwrap: Creating new namespace failed: nesting depth or \
                 /proc/sys/user/max_*_namespaces exceeded (ENOSPC)",
                Some(Cause::UsernsLimit),
            ),
            (
                "bwrap: Creating new namespace failed, likely because the kernel does not \
                 support user namespaces.  bwrap must be installed setuid on such systems.",
                Some(Cause::UsernsMissing),
            ),
            (
                "bwrap: Creating new namespace failed: Operation not permitted",
                Some(Cause::Refused),
            ),
            (
                "bwrap: Can't mount proc on /newroot/proc: Operation not permitted",
                Some(Cause::ProcMount),
            ),
            (
                "bwrap: Unexpected capabilities but not setuid, old file caps config?",
                Some(Cause::FileCaps),
            ),
            (
                "bwrap: cannot open /proc/sys/user/max_user_namespaces: Permission denied",
                Some(Cause::DisableUserns),
            ),
            (
                "bwrap: --cap-add in setuid mode can be used only by root",
                Some(Cause::SetuidCaps),
            ),
            (
                "bwrap: Unknown option --disable-userns",
                Some(Cause::OldBwrap),
            ),
            (
                "bwrap: prctl(PR_SET_SECCOMP): Invalid argument",
                Some(Cause::Seccomp),
            ),
            ("bwrap: execvp nope: No such file or directory", None),
            ("something else entirely", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(cause(text), *want, "{text}");
            assert_eq!(explain(text).is_some(), want.is_some(), "{text}");
        }
    }

    #[test]
    fn hints_never_leave_the_sandbox() {
        let all = [
            Cause::AppArmor,
            Cause::UsernsOff,
            Cause::UsernsLimit,
            Cause::UsernsMissing,
            Cause::Refused,
            Cause::ProcMount,
            Cause::FileCaps,
            Cause::OldBwrap,
            Cause::Seccomp,
            Cause::DisableUserns,
            Cause::SetuidCaps,
        ];
        for c in all {
            let (diagnosis, hint) = c.text();
            assert!(!diagnosis.is_empty() && !hint.is_empty());
            for bad in [
                "--allow-net",
                "--net host",
                "without the sandbox",
                "unsandboxed",
            ] {
                assert!(!hint.contains(bad), "{c:?}: {hint}");
            }
        }
        let (d, h) = explain("bwrap: setting up uid map: Permission denied").unwrap();
        assert!(d.contains("AppArmor") && h.contains("apparmor_restrict_unprivileged_userns=0"));
    }
}
