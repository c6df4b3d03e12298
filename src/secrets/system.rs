//! The secrets of `/etc` that uid 0 could read through the read-only `/etc` inside: everything
//! others may not read (mode without o+r: `/etc/shadow`, `/etc/ssl/private`, every
//! `/etc/ssh/*_key`, `/etc/security/opasswd`, a database's `pg_hba.conf`), and key files that
//! hold a private key although others may read them. Found by walking, not from a fixed list,
//! so a host's own layout is covered. Reads only; never follows a symlink.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::sniff;
use crate::rules::{Check, SECRET_PATTERNS};

/// The walk stops at this many entries or levels: `/etc` is root's, not the agent's, and a few
/// thousand entries on a typical host; the bound only keeps a strange host from stalling a
/// launch. What lies beyond it is masked whole.
const MAX_ENTRIES: usize = 50_000;
const MAX_DEPTH: usize = 16;

/// What to mask.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Masks {
    /// Files, masked unreadable.
    pub files: Vec<PathBuf>,
    /// Directories, masked whole (nothing below them is listed).
    pub dirs: Vec<PathBuf>,
}

/// Finds what to mask under `etc` (normally `/etc`), sorted. What it cannot read, or does not
/// reach within its bounds, is masked whole: it fails closed, as the project's scan does.
pub fn etc_secrets(etc: &Path) -> Masks {
    let mut out = Masks::default();
    let mut seen = 0;
    let mut stack = vec![(etc.to_owned(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            if dir != etc {
                out.dirs.push(dir);
            }
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                break;
            }
            // A symlink is never followed (its own mode is always 0777), and needs no lstat:
            // the listing says what it is (`/etc/ssl/certs` is hundreds of them).
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let path = entry.path();
            // Lock files (`/etc/group.lock`, `.pwd.lock`) hold nothing and come and go while
            // useradd or passwd runs: one masked and then gone would make bwrap fail to mount.
            if path.extension().is_some_and(|e| e == "lock") || entry.file_name() == ".pwd.lock" {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                out.files.push(path);
                continue;
            };
            let private = meta.permissions().mode() & 0o004 == 0;
            let ft = meta.file_type();
            if ft.is_dir() {
                if private || depth + 1 >= MAX_DEPTH {
                    out.dirs.push(path);
                } else {
                    stack.push((path, depth + 1));
                }
            } else if ft.is_file()
                && (private || (key_file(&path) && sniff::file_holds_private_key(&path)))
            {
                out.files.push(path);
            }
        }
        if seen > MAX_ENTRIES {
            // Past the bound: this directory and every one not yet read are masked whole.
            out.dirs.extend(std::iter::once(dir).filter(|d| d != etc));
            out.dirs.extend(stack.drain(..).map(|(d, _)| d));
        }
    }
    out.files.sort();
    out.dirs.sort();
    out
}

/// The files with other names below the masked directories `dirs` (as root, the keys in
/// `/etc/ssl/private`): a hard link to one in a writable root is that file by another name,
/// to be masked there too, as the project's scan does for its own masked directories. Within
/// bounds, as there: what cannot be read, or lies beyond them, is passed over (it is masked
/// with its directory). Never follows a symlink.
pub fn linked_below(dirs: &[PathBuf]) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    const MAX_LINK_ENTRIES: usize = 10_000;
    const MAX_LINK_DEPTH: usize = 8;
    let mut out = Vec::new();
    let mut seen = 0;
    let mut stack: Vec<(PathBuf, usize)> = dirs.iter().map(|d| (d.clone(), 0)).collect();
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_LINK_ENTRIES {
                return out;
            }
            let Ok(ft) = entry.file_type() else {
                continue;
            };
            if ft.is_dir() && depth < MAX_LINK_DEPTH {
                stack.push((entry.path(), depth + 1));
            } else if ft.is_file() && entry.metadata().is_ok_and(|m| m.nlink() > 1) {
                out.push(entry.path());
            }
        }
    }
    out
}

/// A name that may hold a private key: the key-or-certificate types, and `*_key` (sshd's
/// host keys).
fn key_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let lower = name.to_ascii_lowercase();
    lower.ends_with("_key")
        || SECRET_PATTERNS
            .iter()
            .filter(|p| p.check == Check::PrivateKey)
            .any(|p| {
                p.glob
                    .strip_prefix('*')
                    .is_some_and(|ext| lower.ends_with(ext))
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_others_may_not_read_and_private_keys() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path();
        let mode = |p: &str, m: u32| {
            fs::set_permissions(etc.join(p), fs::Permissions::from_mode(m)).unwrap();
        };
        for d in ["ssl/private", "ssl/certs", "ssh", "security", "app"] {
            fs::create_dir_all(etc.join(d)).unwrap();
        }
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n";
        for (f, body) in [
            ("passwd", "root:x:0:0::/root:/bin/sh\n"),
            ("shadow", "root:$6$hash:1::::::\n"),
            ("ssl/private/snakeoil.key", key),
            ("ssl/certs/ca-certificates.crt", cert),
            ("ssh/ssh_host_ed25519_key", key),
            ("ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA\n"),
            ("ssh/sshd_config", "Port 22\n"),
            ("security/opasswd", ""),
            // World-readable by mistake: found by content.
            ("app/server.pem", key),
            ("app/public.pem", cert),
        ] {
            fs::write(etc.join(f), body).unwrap();
        }
        mode("shadow", 0o640);
        mode("ssl/private", 0o700);
        mode("ssh/ssh_host_ed25519_key", 0o600);
        mode("security/opasswd", 0o600);
        std::os::unix::fs::symlink("/nonexistent", etc.join("ssl/certs/link.pem")).unwrap();
        let found = etc_secrets(etc);
        let rel = |v: &[PathBuf]| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(etc).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            rel(&found.files),
            [
                "app/server.pem",
                "security/opasswd",
                "shadow",
                "ssh/ssh_host_ed25519_key"
            ]
        );
        assert_eq!(rel(&found.dirs), ["ssl/private"]);
    }

    #[test]
    fn what_lies_beyond_the_bounds_is_masked_whole() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path();
        let mut deep = etc.join("deep");
        for i in 0..MAX_DEPTH + 2 {
            deep.push(format!("d{i}"));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("key.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
        fs::create_dir_all(etc.join("shallow")).unwrap();
        let found = etc_secrets(etc);
        // The directory at the depth bound is masked whole; a shallow one is not (the control).
        let bound: PathBuf =
            (0..MAX_DEPTH - 1).fold(etc.join("deep"), |p, i| p.join(format!("d{i}")));
        assert!(found.dirs.contains(&bound), "{:?}", found.dirs);
        assert!(!found.dirs.iter().any(|d| d.ends_with("shallow")));
    }
}
