//! Profiles of the user's own: `[profile.NAME]` sections of the user's config whose name is
//! not a built-in one. Each is based on a built-in profile through `extends` (default
//! `generic`, possibly through other profiles of the user's), takes that profile's data and
//! its own name (so an agent's home is its own), and is selected by its own `commands`.
//! `[profile.BUILTIN]` sections only adjust a built-in profile; their `commands` add to its
//! own. The files are checked when read (`config::check`): no unknown base, no cycle. Pure.

use std::collections::BTreeMap;

use super::Settings;
use crate::profile::{Profile, builtin, for_command, names as builtin_names};

/// `name`, then each profile its `extends` leads through, down to the built-in one (last).
/// Empty when the chain does not end at a built-in profile.
pub fn chain(name: &str, user: &BTreeMap<String, Settings>) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    let mut cur = name.to_owned();
    // A chain never passes the same profile twice (checked when the file is read): this
    // bound only keeps a bad map from looping.
    for _ in 0..=user.len() {
        if builtin(&cur).is_some() {
            return out;
        }
        let Some(s) = user.get(&cur) else {
            return Vec::new();
        };
        cur = s.extends.clone().unwrap_or_else(|| "generic".to_owned());
        out.push(cur.clone());
    }
    Vec::new()
}

/// The profile named `name`: a built-in one with the commands the user added, or one of the
/// user's own.
pub fn resolve(name: &str, user: &BTreeMap<String, Settings>) -> Option<Profile> {
    let own = user.get(name);
    if let Some(mut p) = builtin(name) {
        p.commands
            .extend(own.iter().flat_map(|s| s.commands.iter().cloned()));
        return Some(p);
    }
    let s = own?;
    let chain = chain(name, user);
    let base = chain.last()?;
    let mut p = builtin(base)?;
    let parent = s.extends.as_deref().unwrap_or("generic");
    p.name = name.to_owned();
    p.about = s
        .about
        .clone()
        .unwrap_or_else(|| format!("yours, based on {parent}"));
    p.commands = s.commands.clone();
    p.base = Some(base.clone());
    Some(p)
}

/// The profile whose `commands` in the user's config name `command` (a basename).
pub fn by_command(command: &str, user: &BTreeMap<String, Settings>) -> Option<Profile> {
    let (name, _) = user
        .iter()
        .find(|(_, s)| s.commands.iter().any(|c| c == command))?;
    resolve(name, user)
}

/// The names of the user's own profiles (not the built-in ones it adjusts).
pub fn names(user: &BTreeMap<String, Settings>) -> Vec<String> {
    user.keys()
        .filter(|n| builtin(n).is_none())
        .cloned()
        .collect()
}

/// The profile to use: `--no-profile` (none), `--profile NAME` (built-in or the user's own),
/// else by the command: the user's `commands` first, then the built-in ones.
pub fn choose(
    explicit: Option<&str>,
    none: bool,
    command: &std::ffi::OsStr,
    user: &BTreeMap<String, Settings>,
) -> Result<Profile, crate::error::Fail> {
    match (none, explicit) {
        // No profile at all: not even command exposure.
        (true, _) => Ok(Profile::default()),
        (false, Some(name)) => resolve(name, user).ok_or_else(|| {
            let mut all: Vec<String> = builtin_names().iter().map(|s| (*s).to_owned()).collect();
            all.extend(names(user));
            crate::error::Fail::hint(
                format!("no profile named {name:?}"),
                format!("one of: {}", all.join(", ")),
            )
        }),
        (false, None) => {
            let base = std::path::Path::new(command)
                .file_name()
                .and_then(|b| b.to_str())
                .unwrap_or("");
            Ok(by_command(base, user).unwrap_or_else(|| for_command(command)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(toml: &str) -> BTreeMap<String, Settings> {
        let cfg: super::super::UserConfig = toml::from_str(toml).unwrap();
        cfg.profile
    }

    #[test]
    fn a_profile_of_ones_own_takes_its_base_and_its_own_name() {
        let u = user(
            "[profile.mine]\nextends = \"claude\"\ncommands = [\"myclaude\"]\n\
             [profile.tools]\ncommands = [\"make\"]\n\
             [profile.deep]\nextends = \"mine\"\n\
             [profile.claude]\ncommands = [\"cc\"]\n",
        );
        let p = resolve("mine", &u).unwrap();
        assert_eq!(p.name, "mine");
        assert_eq!(p.base.as_deref(), Some("claude"));
        assert!(p.is_agent());
        assert_eq!(p.commands, ["myclaude"]);
        assert_eq!(p.domains, builtin("claude").unwrap().domains);
        assert_eq!(p.about, "yours, based on claude");
        // Without extends: generic, not an agent.
        let t = resolve("tools", &u).unwrap();
        assert_eq!(t.base.as_deref(), Some("generic"));
        assert!(!t.is_agent());
        assert_eq!(chain("deep", &u), ["deep", "mine", "claude"]);
        assert_eq!(resolve("deep", &u).unwrap().base.as_deref(), Some("claude"));
        // A built-in one keeps its name and gains the commands.
        let c = resolve("claude", &u).unwrap();
        assert!(c.base.is_none() && c.commands.contains(&"cc".to_owned()));
        assert_eq!(by_command("make", &u).unwrap().name, "tools");
        assert_eq!(by_command("cc", &u).unwrap().name, "claude");
        assert!(by_command("ls", &u).is_none());
        assert_eq!(names(&u), ["deep", "mine", "tools"]);
        assert!(resolve("nope", &u).is_none());
    }

    #[test]
    fn a_cycle_resolves_to_nothing() {
        let u = user("[profile.a]\nextends = \"b\"\n[profile.b]\nextends = \"a\"\n");
        assert!(chain("a", &u).is_empty());
        assert!(resolve("a", &u).is_none());
    }
}
