//! The user's side of the host: who agentbox runs as, the environment it was started with
//! (read once, in `main`, as a `hostenv::Env`), the home and current directories made
//! canonical, the terminal, and the user's own git configuration files. Reads, never writes.

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::canonical;
use crate::hostenv::Env;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The effective uid agentbox runs as.
    pub uid: u32,
    /// Its effective gid (given back to the agent by the filtered network's relay).
    pub gid: u32,
    /// The home directory (canonical).
    pub home: PathBuf,
    /// The current directory (canonical).
    pub cwd: PathBuf,
    /// The whole environment agentbox was started with.
    pub env: Env,
    /// Whether stdin is a terminal (decides between `--new-session` and the TIOCSTI filter).
    pub stdin_tty: bool,
    /// (source, destination) of the user's git configuration.
    pub git_config: Vec<(PathBuf, PathBuf)>,
}

impl User {
    pub fn probe(env: &Env) -> Result<User> {
        let home = canonical(env.home()?, "home directory")?;
        let cwd = canonical(env.cwd()?, "current directory")?;
        let me = fs::metadata("/proc/self").context("reading /proc/self")?;
        let xdg_config = env.config_home(&home);
        // Git's settings, file by file: the XDG directory can also hold `credentials`
        // (credential-store's token file), which must stay outside.
        let xdg_git = xdg_config.join("git");
        let inside_git = home.join(".config/git");
        let git_config = [
            (home.join(".gitconfig"), home.join(".gitconfig")),
            (xdg_git.join("config"), inside_git.join("config")),
            (xdg_git.join("ignore"), inside_git.join("ignore")),
            (xdg_git.join("attributes"), inside_git.join("attributes")),
        ]
        .into_iter()
        .filter_map(|(src, dest)| Some((fs::canonicalize(src).ok()?, dest)))
        .collect();
        Ok(User {
            uid: std::os::unix::fs::MetadataExt::uid(&me),
            gid: std::os::unix::fs::MetadataExt::gid(&me),
            home,
            cwd,
            env: env.clone(),
            stdin_tty: std::io::IsTerminal::is_terminal(&std::io::stdin()),
            git_config,
        })
    }

    /// The host value of an environment variable.
    pub fn var(&self, name: &OsStr) -> Option<&OsStr> {
        self.env.var(name)
    }

    /// A made-up user for tests: uid and gid 1000, home `/home/u`, in `cwd`, no environment
    /// (not even HOME), no terminal, no git configuration.
    #[cfg(test)]
    pub fn fixture(cwd: &str) -> User {
        User {
            uid: 1000,
            gid: 1000,
            home: "/home/u".into(),
            cwd: cwd.into(),
            env: Env::new(Vec::new(), std::path::Path::new(cwd)),
            stdin_tty: false,
            git_config: Vec::new(),
        }
    }
}
