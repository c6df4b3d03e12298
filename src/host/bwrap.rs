//! The bwrap agentbox uses: the search (the `--bwrap` path, else PATH; the rule that refuses
//! one the agent or another user could replace), and its version, read the same way for `run`
//! and `doctor`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::error::Fail;
use crate::hostenv::Env;

#[derive(Debug, Clone, PartialEq, Eq)]
/// The bwrap found: canonical path, version, and whether it is setuid root.
pub struct Bwrap {
    pub path: PathBuf,
    pub version: (u32, u32, u32),
    pub setuid: bool,
}

/// The bwrap executables agentbox would consider, in order: the explicit path, else `bwrap`
/// in each absolute PATH entry; canonical, regular files only, with their mode. (`doctor`
/// walks the same list.)
pub fn bwrap_candidates(explicit: Option<&Path>, env: &Env) -> Vec<(PathBuf, u32)> {
    let named: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_owned()],
        None => env
            .path_dirs()
            .into_iter()
            // `..` entries (like the relative ones `path_dirs` leaves out) can lead where the
            // project is: the sandbox's builder is never taken from there. The agent's
            // command may be (it runs inside, where the project is the agent's anyway).
            .filter(|d| d.components().all(|c| c != Component::ParentDir))
            .map(|d| d.join("bwrap"))
            .collect(),
    };
    named
        .iter()
        .filter_map(|cand| {
            let canon = fs::canonicalize(cand).ok()?;
            let meta = fs::metadata(&canon).ok()?;
            meta.is_file().then(|| (canon, meta.permissions().mode()))
        })
        .collect()
}

impl Bwrap {
    /// A made-up bwrap for tests: `/usr/bin/bwrap` 0.8.0, not setuid.
    #[cfg(test)]
    pub fn fixture() -> Bwrap {
        Bwrap {
            path: "/usr/bin/bwrap".into(),
            version: (0, 8, 0),
            setuid: false,
        }
    }
}

/// Why a bwrap found is not used: the one rule `agentbox run` applies and `agentbox doctor`
/// reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BwrapRefusal {
    /// Inside a writable root: the agent could replace the binary that builds its sandbox.
    InWritableRoot,
    /// Writable by group or others: anyone who can rewrite it owns every sandbox.
    Writable,
    NotExecutable,
}

impl BwrapRefusal {
    /// The refusal of the bwrap at `canon` (canonical) with file mode `mode`, if any.
    pub fn of(canon: &Path, mode: u32, writable: &[&Path]) -> Option<BwrapRefusal> {
        if writable.iter().any(|w| canon.starts_with(w)) {
            Some(BwrapRefusal::InWritableRoot)
        } else if mode & 0o022 != 0 {
            Some(BwrapRefusal::Writable)
        } else if mode & 0o111 == 0 {
            Some(BwrapRefusal::NotExecutable)
        } else {
            None
        }
    }
}

impl Bwrap {
    /// Finds bwrap, not yet run: the explicit path, else the first on PATH that is not inside
    /// `writable`, where the sandbox writes (a planted `./bwrap` would run unsandboxed with the
    /// user's rights), and is not writable by group or others (anyone who can rewrite it owns
    /// every sandbox). Its version may have to be asked of it, which runs it (`Found::read`),
    /// so the caller may first check it against more such places (`Found::refuse_inside`).
    pub fn find(explicit: Option<&Path>, env: &Env, writable: &[PathBuf]) -> Result<Found> {
        let roots: Vec<&Path> = writable.iter().map(PathBuf::as_path).collect();
        let mut refused = Vec::new();
        for (canon, mode) in bwrap_candidates(explicit, env) {
            if let Some(refusal) = BwrapRefusal::of(&canon, mode, &roots) {
                let why = match refusal {
                    BwrapRefusal::InWritableRoot => {
                        "it is inside a directory the sandbox writes, where the agent can replace it"
                    }
                    BwrapRefusal::Writable => "it is writable by group or others",
                    BwrapRefusal::NotExecutable => "it is not executable",
                };
                refused.push(format!("{} ({why})", canon.display()));
                continue;
            }
            return Ok(Found { path: canon, mode });
        }
        let message = if refused.is_empty() {
            "bwrap (bubblewrap) not found".to_owned()
        } else {
            format!("refusing to use bwrap: {}", refused.join(", "))
        };
        Err(Fail::hint(message, INSTALL_HINT).into())
    }
}

/// How to get a bwrap agentbox will use.
pub const INSTALL_HINT: &str =
    "install bubblewrap (apt-get install bubblewrap) or pass --bwrap PATH";

/// A bwrap found and accepted (`Bwrap::find`), before its version is read.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    mode: u32,
}

impl Found {
    /// Refuses it inside one of `dirs`, places the sandbox writes that are known only after
    /// the project's probe (`what` says which), before `read` may run it.
    pub fn refuse_inside(&self, dirs: &[PathBuf], what: &str) -> Result<()> {
        match dirs.iter().find(|d| self.path.starts_with(d)) {
            Some(dir) => Err(Fail::hint(
                format!(
                    "refusing to use bwrap: {} (it is inside {}, {what}, where the agent can \
                     replace it)",
                    crate::rough::shown(&self.path).display(),
                    crate::rough::shown(dir).display()
                ),
                INSTALL_HINT,
            )
            .into()),
            None => Ok(()),
        }
    }

    /// Reads its version (from the binary, else by running `--version`).
    pub fn read(self) -> Result<Bwrap> {
        let version = version(&self.path, |cmd| {
            let out = cmd.output()?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })?;
        Ok(Bwrap {
            path: self.path,
            version,
            setuid: self.mode & 0o4000 != 0,
        })
    }
}

/// bwrap's version, the one reader `run` and `doctor` share: the string `--version` prints,
/// which the binary carries ("bubblewrap X.Y.Z"), or, when that is not found exactly once,
/// what `run_version` returns from running `--version` (the command comes with its argument
/// and an empty environment; doctor runs it with a timeout). Reading costs a fraction of
/// spawning a process, and this runs on every launch.
pub fn version(
    path: &Path,
    run_version: impl FnOnce(&mut Command) -> Result<String>,
) -> Result<(u32, u32, u32)> {
    if let Some(v) = fs::read(path).ok().and_then(|b| embedded_version(&b)) {
        return Ok(v);
    }
    let mut cmd = Command::new(path);
    cmd.arg("--version").env_clear();
    let text =
        run_version(&mut cmd).with_context(|| format!("running {} --version", path.display()))?;
    parse_version(&text).ok_or_else(|| {
        Fail::hint(
            format!(
                "{} --version printed {:?}, not a bubblewrap version",
                path.display(),
                text.trim()
            ),
            "pass the real bubblewrap with --bwrap PATH",
        )
        .into()
    })
}

/// The one "bubblewrap X.Y[.Z]" string, NUL-terminated, in a binary.
fn embedded_version(binary: &[u8]) -> Option<(u32, u32, u32)> {
    let needle = b"bubblewrap ";
    let mut found = None;
    let mut rest = binary;
    while let Some(i) = rest.windows(needle.len()).position(|w| w == needle) {
        let tail = &rest[i..];
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let text = std::str::from_utf8(&tail[..end]).ok();
        let is_version = text.is_some_and(|t| {
            t[needle.len()..]
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.')
        });
        if let (true, Some(v)) = (is_version, text.and_then(parse_version)) {
            if found.is_some_and(|f| f != v) {
                return None;
            }
            found = Some(v);
        }
        rest = &rest[i + needle.len()..];
    }
    found
}

/// "bubblewrap 0.8.0" -> (0, 8, 0).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.trim().strip_prefix("bubblewrap ")?;
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(|p| p.ok()).unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("bubblewrap 0.8.0\n"), Some((0, 8, 0)));
        assert_eq!(parse_version("bubblewrap 0.11.1"), Some((0, 11, 1)));
        assert_eq!(parse_version("bubblewrap 0.6"), Some((0, 6, 0)));
        assert_eq!(parse_version("bwrap 0.8.0"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn version_from_the_binary() {
        let bin = b"\x7fELF..bubblewrap \0..bubblewrap 0.8.0\0../bubblewrap.c\0";
        assert_eq!(embedded_version(bin), Some((0, 8, 0)));
        assert_eq!(embedded_version(b"nothing here"), None);
        let two = b"bubblewrap 0.8.0\0bubblewrap 0.9.0\0";
        assert_eq!(embedded_version(two), None);
        // The real one, when installed, agrees with what it prints.
        if let Ok(bin) = fs::read("/usr/bin/bwrap") {
            let out = Command::new("/usr/bin/bwrap")
                .arg("--version")
                .output()
                .unwrap();
            let printed = parse_version(&String::from_utf8_lossy(&out.stdout));
            assert_eq!(embedded_version(&bin), printed);
        }
    }
}
