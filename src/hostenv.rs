//! `Env`: the process environment agentbox was started with, read once (in `main`) into a
//! value that everything else receives: the variables, HOME, the current directory, and the
//! rules derived from them (the XDG directories, the PATH lookup). Nothing else in the crate
//! reads `std::env` for the host's side, so a test builds the environment it means instead of
//! inheriting the developer's.
//!
//! It reads and never writes. It does not judge: whether a path it names may be trusted is
//! for `host` to decide.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// Every variable, in the order the process got them.
    vars: Vec<(OsString, OsString)>,
    /// `$HOME`, else the passwd entry's home; `None` when neither says.
    home: Option<PathBuf>,
    /// The current directory as the kernel reports it, or why it could not be read.
    cwd: Result<PathBuf, String>,
}

impl Env {
    /// The one read of the process environment.
    pub fn read() -> Env {
        let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        // `$HOME`, falling back to the passwd entry only when HOME is unset.
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(dirs::home_dir);
        let cwd = std::env::current_dir().map_err(|e| e.to_string());
        Env { vars, home, cwd }
    }

    /// An environment made of exactly `vars`, with HOME taken from them and `cwd` as the
    /// current directory: for tests, and for callers that describe another process.
    pub fn new(vars: Vec<(OsString, OsString)>, cwd: &Path) -> Env {
        let home = vars
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| PathBuf::from(v));
        Env {
            vars,
            home,
            cwd: Ok(cwd.to_owned()),
        }
    }

    /// Adds a variable (HOME too, when it is HOME): for tests that need one more.
    #[cfg(test)]
    pub fn push(&mut self, name: &str, value: &str) {
        if name == "HOME" {
            self.home = Some(value.into());
        }
        self.vars.push((name.into(), value.into()));
    }

    /// The value of `name`, if set.
    pub fn var(&self, name: impl AsRef<OsStr>) -> Option<&OsStr> {
        let name = name.as_ref();
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// Every variable, in order.
    pub fn vars(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }

    /// The home directory as given (not canonical).
    pub fn home(&self) -> Result<&Path> {
        self.home
            .as_deref()
            .ok_or_else(|| anyhow!("cannot tell the home directory: HOME is not set"))
    }

    /// The current directory as given (not canonical).
    pub fn cwd(&self) -> Result<&Path> {
        self.cwd
            .as_deref()
            .map_err(|e| anyhow!("cannot read the current directory: {e}"))
    }

    /// An XDG base directory: the variable when it is absolute (the spec says a relative one
    /// is invalid and ignored), else `home/fallback`.
    fn xdg(&self, var: &str, home: &Path, fallback: &str) -> PathBuf {
        self.var(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(fallback))
    }

    /// `$XDG_CONFIG_HOME`, else `home/.config`.
    pub fn config_home(&self, home: &Path) -> PathBuf {
        self.xdg("XDG_CONFIG_HOME", home, ".config")
    }

    /// `$XDG_DATA_HOME`, else `home/.local/share`.
    pub fn data_home(&self, home: &Path) -> PathBuf {
        self.xdg("XDG_DATA_HOME", home, ".local/share")
    }

    /// `$XDG_RUNTIME_DIR` when it is absolute (it has no fallback: the caller picks one).
    pub fn runtime_dir(&self) -> Option<PathBuf> {
        self.var("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    }

    /// `$PATH`, if set.
    pub fn path(&self) -> Option<&OsStr> {
        self.var("PATH")
    }

    /// PATH's directories, in order, the absolute ones only: a relative entry names a place
    /// relative to wherever agentbox was started (often the project), so nothing is looked up
    /// there. The one PATH walk; callers with a stricter rule filter this further.
    pub fn path_dirs(&self) -> Vec<PathBuf> {
        self.path()
            .map(|v| {
                std::env::split_paths(v)
                    .filter(|d| d.is_absolute())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first executable regular file named `name` in `path_dirs`, as found (not
    /// canonical): the `which` crate's search, over the absolute entries only (so the current
    /// directory, which it resolves relative entries against, plays no part).
    pub fn which(&self, name: impl AsRef<OsStr>) -> Option<PathBuf> {
        let dirs = std::env::join_paths(self.path_dirs()).ok()?;
        which::which_in(name.as_ref(), Some(dirs), Path::new("/")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::new(
            vars.iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            Path::new("/work"),
        )
    }

    #[test]
    fn xdg_directories_follow_the_spec() {
        let home = Path::new("/home/u");
        let e = env(&[]);
        assert_eq!(e.config_home(home), Path::new("/home/u/.config"));
        assert_eq!(e.data_home(home), Path::new("/home/u/.local/share"));
        assert_eq!(e.runtime_dir(), None);
        let e = env(&[
            ("XDG_CONFIG_HOME", "/c"),
            ("XDG_DATA_HOME", "/d"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(e.config_home(home), Path::new("/c"));
        assert_eq!(e.data_home(home), Path::new("/d"));
        assert_eq!(e.runtime_dir(), Some(PathBuf::from("/run/user/1000")));
        // Relative values are invalid: ignored.
        let e = env(&[
            ("XDG_CONFIG_HOME", "c"),
            ("XDG_DATA_HOME", "d"),
            ("XDG_RUNTIME_DIR", "r"),
        ]);
        assert_eq!(e.config_home(home), Path::new("/home/u/.config"));
        assert_eq!(e.data_home(home), Path::new("/home/u/.local/share"));
        assert_eq!(e.runtime_dir(), None);
    }

    #[test]
    fn home_and_cwd_come_from_the_value() {
        let e = env(&[("HOME", "/h")]);
        assert_eq!(e.home().unwrap(), Path::new("/h"));
        assert_eq!(e.cwd().unwrap(), Path::new("/work"));
        assert!(env(&[]).home().is_err());
    }

    #[test]
    fn which_skips_relative_entries_and_non_executables() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("plain"), "").unwrap();
        fs::write(bin.join("tool"), "").unwrap();
        fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(bin.join("dir")).unwrap();
        let path = format!("relative:{}", bin.display());
        let e = env(&[("PATH", &path)]);
        assert_eq!(e.which("tool"), Some(bin.join("tool")));
        assert_eq!(e.which("plain"), None);
        assert_eq!(e.which("dir"), None);
        assert_eq!(env(&[]).which("tool"), None);
    }
}
