//! What agentbox refuses to hand the agent because it is too broad: a writable root that holds
//! the home, the system or a whole mount ([`too_broad`]), a read-only path that would show the
//! home, the kernel's filesystems or the host's sockets ([`too_broad_to_show`]). Pure rules on
//! paths, asked by `host` before the secret scan and by the planner; no I/O.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::Fail;
use crate::policy::Access;

/// Why a project (or `--rw`) path is too broad to hand to the agent, if it is.
pub fn too_broad(path: &Path, home: &Path) -> Option<&'static str> {
    const SYSTEM: &[&str] = &[
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/nix",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/snap",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/var",
        "/var/tmp",
        "/home",
        "/usr/local",
    ];
    const NEVER_INSIDE: &[&str] = &["/proc", "/sys", "/dev", "/boot"];
    if path == Path::new("/") {
        Some("it is the root of the filesystem")
    } else if path == home {
        Some("it is your home directory, with your keys and shell startup files")
    } else if home.starts_with(path) {
        Some("it contains your home directory")
    } else if SYSTEM.iter().any(|s| path == Path::new(s)) {
        Some("it is a system directory")
    } else if NEVER_INSIDE.iter().any(|s| path.starts_with(s)) {
        Some("it is inside a kernel or boot filesystem")
    } else {
        None
    }
}

/// Why a `--ro` path is too broad to show the agent, if it is: the root, the home or a
/// directory holding it (every key and token of the user), the kernel's filesystems (a host
/// `/proc` shows every host process and its environment), and the scratch directories that
/// hold the host's UNIX sockets (a read-only mount does not stop `connect()`): all of `/run`
/// (`/run/user/UID` holds D-Bus and systemd's user manager, which start programs on the host;
/// `/run/docker.sock`), and the X11 and ICE socket directories in `/tmp`.
pub fn too_broad_to_show(path: &Path, home: &Path) -> Option<&'static str> {
    const SOCKETS: &[&str] = &["/tmp", "/var/tmp"];
    const SOCKETS_BENEATH: &[&str] = &["/run", "/var/run", "/tmp/.X11-unix", "/tmp/.ICE-unix"];
    const KERNEL: &[&str] = &["/proc", "/sys", "/dev"];
    if path == Path::new("/") {
        Some("it is the root of the filesystem")
    } else if path == home {
        Some("it is your home directory, with your keys and tokens")
    } else if home.starts_with(path) {
        Some("it contains your home directory")
    } else if KERNEL.iter().any(|s| path == Path::new(s)) || path.starts_with("/proc") {
        Some("it is the host's kernel filesystem (host processes, devices, settings)")
    } else if SOCKETS.iter().any(|s| path == Path::new(s))
        || SOCKETS_BENEATH.iter().any(|s| path.starts_with(s))
    {
        Some("it holds the host's sockets (D-Bus, ssh-agent, X11), which stay connectable")
    } else {
        None
    }
}

/// Refuses a writable root (the project, a `--rw` path) that is too broad ([`too_broad`]),
/// and a `--ro` path that would show too much ([`too_broad_to_show`]); with `allow`, returns a
/// warning for each instead. `Project::probe` calls it too, before the secret scan, so a run
/// started in `$HOME` is refused without walking all of it first.
pub fn refuse_broad(
    allow: bool,
    project: &Path,
    extra: &[(PathBuf, Access)],
    home: &Path,
) -> Result<Vec<String>> {
    let checks =
        std::iter::once(("project", project, Access::ReadWrite)).chain(extra.iter().map(|e| {
            match e.1 {
                Access::ReadWrite => ("--rw path", e.0.as_path(), e.1),
                Access::ReadOnly => ("--ro path", e.0.as_path(), e.1),
            }
        }));
    let mut warnings = Vec::new();
    for (what, path, access) in checks {
        let why = match access {
            Access::ReadWrite => too_broad(path, home),
            Access::ReadOnly => too_broad_to_show(path, home),
        };
        let Some(why) = why else {
            continue;
        };
        let message = format!("refusing {what} {}: {why}", path.display());
        if !allow {
            let hint = match access {
                Access::ReadWrite => {
                    "cd into the project directory, or pass --project DIR \
                                      (--allow-broad-project overrides this check)"
                }
                Access::ReadOnly => {
                    "pass --ro with the file or directory the agent needs \
                                     inside it (--allow-broad-project overrides this check)"
                }
            };
            return Err(Fail::hint(message, hint).into());
        }
        warnings.push(format!(
            "{message}; going ahead because of --allow-broad-project"
        ));
    }
    Ok(warnings)
}
