//! `agentbox import-login PROFILE`: copies an agent's existing login from the user's real home
//! into the agent's home in agentbox (`DATA/agentbox/home/NAME`), so that a user logged in on
//! the host need not log in again inside. Only the files listed here for the profile, each of
//! which lies in the profile's own state (a unit test holds that), and only once: an existing
//! copy is replaced only with `--force`.
//!
//! The agent's home is an untrusted area (the sandbox wrote it in earlier runs): the copies
//! are written through `hostfs` (no symlink followed, no file of another user or with other
//! hard links written through), mode 0600. What was copied is said, file by file.
//!
//! A copy is a second credential that lives as long as the agent's home. Where the credential
//! broker (issue 11) can hand the agent a login without copying it, that should be preferred:
//! this command is the place to call it instead, profile by profile.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::error::Fail;
use crate::hostenv::Env;
use crate::text::printable;

/// Per built-in profile: the home-relative files that hold its login, and how to log in on
/// the host when there is none.
const LOGINS: &[(&str, &[&str], &str)] = &[
    (
        "claude",
        &[".claude/.credentials.json", ".claude.json"],
        "claude, then /login",
    ),
    ("codex", &[".codex/auth.json"], "codex login"),
    (
        "gemini",
        &[".gemini/oauth_creds.json", ".gemini/google_accounts.json"],
        "gemini, then sign in with Google",
    ),
    (
        "opencode",
        &[".local/share/opencode/auth.json"],
        "opencode auth login",
    ),
];

/// The largest login file copied: these are small JSON documents.
const MAX_SIZE: u64 = 4 << 20;

/// The login files of a built-in profile, and how to log in; `None` when it has none listed.
pub fn files_of(builtin: &str) -> Option<(&'static [&'static str], &'static str)> {
    LOGINS
        .iter()
        .find(|(n, _, _)| *n == builtin)
        .map(|(_, f, how)| (*f, *how))
}

pub fn import(name: &str, force: bool, env: &Env) -> Result<ExitCode> {
    let files = crate::config::read(env, None)?;
    let profile = crate::config::profiles::resolve(name, &files.user.profile)
        .filter(|p| p.is_agent())
        .ok_or_else(|| {
            let names: Vec<&str> = LOGINS.iter().map(|l| l.0).collect();
            Fail::hint(
                format!("no agent profile named {name:?}"),
                format!("one of: {}", names.join(", ")),
            )
        })?;
    let (list, how) = files_of(profile.builtin_name()).ok_or_else(|| {
        Fail::hint(
            format!(
                "agentbox does not know where {} keeps its login",
                profile.builtin_name()
            ),
            "log in inside: agentbox run -- COMMAND (the login stays in the agent's home)",
        )
    })?;
    let home = env.home()?;
    let data = env.data_home(home).join("agentbox");
    let agent_home = data.join("home").join(&profile.name);
    let mut copies: Vec<(PathBuf, PathBuf, Vec<u8>)> = Vec::new();
    for rel in list {
        let from = home.join(rel);
        let meta = match std::fs::metadata(&from) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| printable(from.as_os_str())),
        };
        if !meta.is_file() || meta.len() > MAX_SIZE {
            return Err(Fail::hint(
                format!(
                    "{}: not a regular file of at most 4 MiB",
                    printable(from.as_os_str())
                ),
                "log in inside instead: agentbox run -- COMMAND",
            )
            .into());
        }
        let bytes = std::fs::read(&from).with_context(|| printable(from.as_os_str()))?;
        copies.push((from, agent_home.join(rel), bytes));
    }
    if copies.is_empty() {
        return Err(Fail::hint(
            format!(
                "no {} login in {} (looked for {})",
                profile.builtin_name(),
                printable(home.as_os_str()),
                list.join(", ")
            ),
            format!("log in on the host first ({how}), or inside: agentbox run -- COMMAND"),
        )
        .into());
    }
    // All or nothing: no copy is made while one of them would be refused.
    if !force
        && let Some((_, to, _)) = copies
            .iter()
            .find(|(_, to, _)| std::fs::symlink_metadata(to).is_ok())
    {
        return Err(Fail::hint(
            format!(
                "{} already exists: the agent's home has a login",
                printable(to.as_os_str())
            ),
            format!("to replace it: agentbox import-login {name} --force"),
        )
        .into());
    }
    let areas = crate::hostfs::Untrusted::new([data]);
    let how_write = match force {
        true => crate::hostfs::Write::Replace,
        false => crate::hostfs::Write::CreateNew,
    };
    for (from, to, bytes) in &copies {
        let mut f = crate::hostfs::open_file(to, how_write, &areas)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", printable(to.as_os_str())))?;
        eprintln!(
            "agentbox: copied {} -> {} (0600)",
            printable(from.as_os_str()),
            printable(to.as_os_str())
        );
    }
    eprintln!(
        "agentbox: note: these are copies: the agent reads and refreshes them in its own home; \
         logging out on the host does not remove them (agentbox import-login {name} --force \
         copies again)"
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_files_are_in_the_profiles_state() {
        for (name, files, _) in LOGINS {
            let p = crate::profile::builtin(name).unwrap();
            for f in *files {
                assert!(
                    p.state
                        .iter()
                        .any(|s| s == f || (s.ends_with('/') && f.starts_with(s.as_str()))),
                    "{name}: {f} is not in its state"
                );
            }
        }
        assert!(files_of("generic").is_none());
    }
}
