//! The system's side of the host: the system paths shown read-only and how each exists, the
//! system secrets to mask, the kernel's settings and Landlock, and agentbox's own executable.
//! Reads, never writes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::git::kind_at;
use crate::rules::SYSTEM_SECRETS;
use crate::secrets::{self, Kind};

/// System paths considered for the read-only root, in mount order.
pub const SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/nix/store",
];

/// How a system path exists on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysEntry {
    Dir(PathBuf),
    /// A symlink: where it is, what it says, and where it ends (canonical).
    Symlink {
        path: PathBuf,
        target: PathBuf,
        canonical: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// The `SYSTEM_PATHS` that exist, as they exist.
    pub paths: Vec<SysEntry>,
    /// `/run/current-system` on NixOS, where PATH points.
    pub nixos_current_system: Option<PathBuf>,
    /// The canonical target of `/etc/resolv.conf` when it is a symlink.
    pub resolv_conf: Option<PathBuf>,
    /// System files masked unreadable (password hashes, host keys; as root, every file of
    /// /etc that others may not read, and private keys there).
    pub secrets: Vec<PathBuf>,
    /// System directories masked (as root: those of /etc that others may not read).
    pub secret_dirs: Vec<PathBuf>,
    /// Kernel settings under /proc that root owns, as far as this kernel has them.
    pub proc_writable_by_root: Vec<PathBuf>,
    /// The kernel's Landlock ABI version (0: none).
    pub landlock_abi: u32,
    /// agentbox's own executable (canonical), bound inside: the shim that applies Landlock and
    /// gives Ctrl-C back to the agent, the relay, and `agentbox test`'s probe runner.
    pub self_exe: Option<PathBuf>,
}

impl System {
    /// The system as `uid` sees it (root's masks are wider: root reads all of `/etc`).
    pub fn probe(uid: u32) -> Result<System> {
        let secrets = system_secrets(SYSTEM_SECRETS.iter().map(Path::new), uid == 0);
        // Always: agentbox's shim is the command's last step inside (Landlock, Ctrl-C).
        let self_exe = Some(
            std::env::current_exe()
                .and_then(fs::canonicalize)
                .context("finding agentbox's own executable")?,
        );
        Ok(System {
            paths: SYSTEM_PATHS.iter().filter_map(|p| sys_entry(p)).collect(),
            nixos_current_system: fs::read_link("/run/current-system").ok(),
            resolv_conf: fs::symlink_metadata("/etc/resolv.conf")
                .is_ok_and(|m| m.file_type().is_symlink())
                .then(|| fs::canonicalize("/etc/resolv.conf").ok())
                .flatten(),
            secrets: secrets.files,
            secret_dirs: secrets.dirs,
            proc_writable_by_root: ["/proc/sys", "/proc/sysrq-trigger"]
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect(),
            landlock_abi: crate::landlock::abi(),
            self_exe,
        })
    }

    /// The masked files whose other names (hard links in a writable root) the scan masks
    /// too: each masked file, and each file with other names inside a masked directory (as
    /// root, a key in `/etc/ssl/private`, masked with its directory and not listed here).
    pub fn linked_sources(&self) -> Vec<PathBuf> {
        let mut files = self.secrets.clone();
        files.extend(secrets::linked_below(&self.secret_dirs));
        files
    }

    /// A made-up system for tests: `/usr`, `/bin` a link to `usr/bin`, `/etc`; `/etc/shadow`
    /// masked; `/proc/sys` root's; Landlock ABI 6; agentbox in `/usr/local/bin`.
    #[cfg(test)]
    pub fn fixture() -> System {
        System {
            paths: vec![
                SysEntry::Dir("/usr".into()),
                SysEntry::Symlink {
                    path: "/bin".into(),
                    target: "usr/bin".into(),
                    canonical: "/usr/bin".into(),
                },
                SysEntry::Dir("/etc".into()),
            ],
            nixos_current_system: None,
            resolv_conf: None,
            secrets: vec!["/etc/shadow".into()],
            secret_dirs: Vec::new(),
            proc_writable_by_root: vec!["/proc/sys".into()],
            landlock_abi: 6,
            self_exe: Some("/usr/local/bin/agentbox".into()),
        }
    }
}

/// The system files and directories to mask.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SystemSecrets {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

/// The files to mask for these system secrets: each regular file, and for a symlink (a host
/// key linked to persistent storage) the file it ends at, since masking the link itself would
/// mount over its target only where bwrap resolves it, and leaving it would show the key. As
/// root (who reads everything through the read-only `/etc`), also what `etc_secrets` finds.
fn system_secrets<'a>(paths: impl Iterator<Item = &'a Path>, root: bool) -> SystemSecrets {
    let mut out = SystemSecrets {
        files: paths
            .filter_map(|p| match fs::symlink_metadata(p).ok()? {
                m if m.is_file() => Some(p.to_owned()),
                m if m.file_type().is_symlink() => fs::canonicalize(p)
                    .ok()
                    .filter(|t| fs::metadata(t).is_ok_and(|m| m.is_file())),
                _ => None,
            })
            .collect(),
        dirs: Vec::new(),
    };
    if root {
        let found = secrets::etc_secrets(Path::new("/etc"));
        out.files.extend(found.files);
        out.dirs.extend(found.dirs);
    }
    out.files.sort();
    out.files.dedup();
    out.dirs.sort();
    out.dirs.dedup();
    // A file inside a masked directory is hidden with it.
    let dirs = out.dirs.clone();
    out.files.retain(|f| !dirs.iter().any(|d| f.starts_with(d)));
    out
}

fn sys_entry(p: &str) -> Option<SysEntry> {
    let path = PathBuf::from(p);
    match kind_at(&path)? {
        Kind::Dir => Some(SysEntry::Dir(path)),
        Kind::Symlink => Some(SysEntry::Symlink {
            target: fs::read_link(&path).ok()?,
            canonical: fs::canonicalize(&path).ok()?,
            path,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_secrets_behind_symlinks_are_masked_at_their_target() {
        let dir = std::env::temp_dir().join(format!("agentbox-syssec-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("persist")).unwrap();
        fs::write(dir.join("shadow"), "x").unwrap();
        fs::write(dir.join("persist/key"), "k").unwrap();
        std::os::unix::fs::symlink(dir.join("persist/key"), dir.join("host_key")).unwrap();
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("dangling")).unwrap();
        fs::create_dir(dir.join("a_dir")).unwrap();
        let names = ["shadow", "host_key", "dangling", "a_dir", "absent"];
        let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        let found = system_secrets(paths.iter().map(PathBuf::as_path), false).files;
        let dir_c = fs::canonicalize(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        // A plain file as itself (the control), a link at its target; nothing else.
        let mut want = vec![dir.join("shadow"), dir_c.join("persist/key")];
        want.sort();
        assert_eq!(found, want);
    }
}
